"""Datasets to train on, named on the command line or in a config, read by the inference readers.

A dataset is one string:

  davis:ROOT[:RES[:SET]]   a DAVIS-2017-layout root (data/davis.py): the sequences of
                           ImageSets/2017/<SET>.txt at resolution folder RES (default 480p; SET
                           defaults to `train` for training and `val` for validation); multi-object
                           masks (every id of a frame is one object)
  youtube-vos:ROOT         a YouTube-VOS-layout split folder (data/youtube_vos.py) with a mask at
                           every frame, as in the YouTube-VOS `train` split: each video's frames
                           are those with an annotation PNG (in the train split every 5th frame,
                           which is what JPEGImages holds there)

`vsreid train --dataset SPEC [--dataset SPEC ...] --val-dataset SPEC [...]` sets
`config.data.datasets` / `config.data.val_datasets`; when those are empty the trainer keeps its
default, the DAVIS-2016 roots of data/splits.py with their held-out split.

In an example spec (train/propagation_examples.py `make_spec`) a root is `[path, resolution]` for
the DAVIS layout (as before, so the hashes naming cached examples do not change) and
`[path, "", "youtube-vos"]` for the YouTube-VOS layout; `open_root` reads either.
"""
import dataclasses
import hashlib
import os
from typing import List, Sequence, Tuple

from vsreid_jax.data.davis import DavisDataset
from vsreid_jax.data.frames import FolderFrames
from vsreid_jax.data.youtube_vos import YouTubeVOSDataset
from vsreid_jax.errors import InputError

LAYOUTS = ("davis", "youtube-vos")
DEFAULT_RESOLUTION = "480p"
USAGE = "davis:ROOT[:RES[:SET]] or youtube-vos:ROOT"


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  layout: str  # one of LAYOUTS
  root: str  # absolute path
  resolution: str = ""  # DAVIS resolution folder; "" for YouTube-VOS
  subset: str = ""  # DAVIS set file name; "" for YouTube-VOS (every video)

  def __str__(self) -> str:
    """The canonical string (absolute root, every field): what a config stores."""
    if self.layout == "davis":
      return f"davis:{self.root}:{self.resolution}:{self.subset}"
    return f"{self.layout}:{self.root}"

  def root_entry(self) -> list:
    """The root as an example spec stores it (see the module docstring)."""
    return [self.root, self.resolution] if self.layout == "davis" else [self.root, "", self.layout]


def parse(text: str, default_subset: str, flag: str = "--dataset") -> DatasetSpec:
  """`davis:ROOT[:RES[:SET]]` or `youtube-vos:ROOT` -> DatasetSpec; InputError naming `flag` otherwise."""
  layout, sep, rest = str(text).partition(":")
  if not sep or layout not in LAYOUTS or not rest:
    raise InputError(f"{flag} {text!r}: not a dataset; pass {USAGE} (layouts: {', '.join(LAYOUTS)})")
  if layout == "youtube-vos":
    return DatasetSpec(layout, os.path.abspath(rest))
  parts = rest.split(":")
  if len(parts) > 3 or not all(parts):
    raise InputError(f"{flag} {text!r}: expected davis:ROOT[:RES[:SET]] with no empty field "
                     f"(e.g. davis:DAVIS:480p:{default_subset})")
  parts += [DEFAULT_RESOLUTION, default_subset][len(parts) - 1:]
  return DatasetSpec(layout, os.path.abspath(parts[0]), parts[1], parts[2])


class YouTubeVOSTraining:
  """A YouTube-VOS root seen as training data: a video's frames are those with an annotation."""

  def __init__(self, root):
    self.reader = YouTubeVOSDataset(root)
    self.root = self.reader.root

  def sequences(self) -> List[str]:
    return self.reader.videos()

  def frames(self, video: str) -> FolderFrames:
    frames = self.reader.frames(video)
    annotated = set(self.reader.annotated_frames(video))
    return FolderFrames(frames.folder, [os.path.basename(frames.path(i)) for i, name in enumerate(frames.names)
                                        if name in annotated])

  def annotation(self, video: str, frame_name: str):
    return self.reader.annotation(video, frame_name)

  def flow_key(self, video: str) -> str:
    """The video's folder in the flow cache: YouTube-VOS and MOSE split folders share names
    (`train`), so the key holds a hash of the root's path."""
    tag = hashlib.sha1(os.path.abspath(self.root).encode()).hexdigest()[:8]
    return os.path.join("youtube-vos", f"{os.path.basename(os.path.normpath(self.root))}-{tag}", video)


def flow_key(dataset, seq: str) -> str:
  """Where a sequence's flows are cached (under the cache's flow/ folder)."""
  if isinstance(dataset, YouTubeVOSTraining):
    return dataset.flow_key(seq)
  return os.path.join(os.path.basename(os.path.normpath(dataset.root)), dataset.resolution, seq)


def open_root(entry: Sequence[str]):
  """A root of an example spec -> its reader (DavisDataset, or YouTubeVOSTraining)."""
  layout = entry[2] if len(entry) > 2 else "davis"
  if layout == "youtube-vos":
    return YouTubeVOSTraining(entry[0])
  return DavisDataset(entry[0], entry[1])


def sequences(spec: DatasetSpec) -> List[str]:
  """The sequences (videos) `spec` names."""
  if spec.layout == "youtube-vos":
    return YouTubeVOSTraining(spec.root).sequences()
  return DavisDataset(spec.root, spec.resolution).sequences(spec.subset)


def split(datasets: Sequence[str], val_datasets: Sequence[str]) -> Tuple[list, list, list]:
  """(roots, train pairs, validation pairs) of named datasets (strings of `parse`): the root entries
  (`DatasetSpec.root_entry`, each once) and (root index, sequence) lists; a validation sequence that
  is also a training one is an InputError. Shared by every trainer (N_mp examples, detector, ReID)."""
  roots, lists = [], ([], [])
  for which, texts, default_subset, flag in ((0, datasets, "train", "--dataset"),
                                             (1, val_datasets, "val", "--val-dataset")):
    for text in texts:
      spec = parse(text, default_subset, flag)
      entry = spec.root_entry()
      if entry not in roots:
        roots.append(entry)
      i = roots.index(entry)
      lists[which].extend((i, seq) for seq in sequences(spec) if (i, seq) not in lists[which])
  both = sorted(set(lists[0]) & set(lists[1]))
  if both:
    names = ", ".join(f"{roots[i][0]}:{seq}" for i, seq in both[:5])
    raise InputError(f"--val-dataset: {len(both)} validation sequence(s) are also training sequences ({names}); "
                     "validate on sequences never trained on (e.g. davis:ROOT:480p:val)")
  return roots, lists[0], lists[1]
