"""YouTube-VOS / MOSE layout roots, and their results as the evaluation servers take them.

  ROOT/JPEGImages/<video>/<frame>.jpg   frames (YouTube-VOS valid: every 5th, 00000, 00005, ...)
  ROOT/Annotations/<video>/<frame>.png  sparse palette masks: one at each frame where objects first
                                        appear, holding those objects (MOSE valid: frame 0 only)
  ROOT/meta.json                        {"videos": {<video>: {"objects": {"<id>": {"category": ...,
                                        "frames": [<frame>, ...]}}}}}: the frames of each object, the
                                        first being where it appears; optional (MOSE has none), the
                                        objects are then read from the annotation PNGs

ROOT is the split folder (e.g. `youtube-vos/valid`). Results go to OUT/Annotations/<video>/<frame>.png,
a palette PNG for every frame of JPEGImages/<video> (frames before the first annotation are
background); `write_submission` zips them as OUT/submission.zip (entries
`Annotations/<video>/<frame>.png`), what the YouTube-VOS and MOSE CodaLab servers take.
"""
import dataclasses
import json
import os
import zipfile
from typing import Dict, List

import numpy as np

from vsreid_jax.data.davis import SequenceFolders
from vsreid_jax.data.frames import FolderFrames, natural_key
from vsreid_jax.data.palette import VOID_ID
from vsreid_jax.errors import InputError

RESULTS_DIR = "Annotations"  # OUT/Annotations/<video>/<frame>.png
SUBMISSION = "submission.zip"


@dataclasses.dataclass
class Prompt:
  """Where a video is segmented from: its first annotated frame, and the objects that come later."""
  frame_index: int  # index of the prompt frame among the video's frames
  frame_name: str
  mask_path: str  # Annotations/<video>/<frame>.png: the objects present there
  later: Dict[int, str]  # {object id: first frame name} of objects first annotated after it (added there)


class YouTubeVOSDataset(SequenceFolders):
  """Reads a YouTube-VOS (2018/2019) or MOSE split folder (see the module docstring)."""

  def __init__(self, root):
    self.root = os.fspath(root)
    if not os.path.isdir(self.root):
      raise InputError(f"{self.root}: YouTube-VOS / MOSE root not found")
    self.image_dir = os.path.join(self.root, "JPEGImages")
    self.anno_dir = os.path.join(self.root, "Annotations")
    for d in (self.image_dir, self.anno_dir):
      if not os.path.isdir(d):
        raise InputError(f"{d}: folder not found; pass the split folder holding JPEGImages/ and Annotations/ "
                         "(e.g. youtube-vos/valid)")
    self.meta_path = os.path.join(self.root, "meta.json")
    self.meta = self._read_meta() if os.path.isfile(self.meta_path) else None

  def _read_meta(self) -> dict:
    try:
      with open(self.meta_path) as f:
        meta = json.load(f)
      videos = meta["videos"]
      for video, entry in videos.items():
        for oid, obj in entry["objects"].items():
          int(oid)
          if not obj["frames"]:
            raise ValueError(f"object {oid} of {video} has no frames")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
      raise InputError(f"{self.meta_path}: not a YouTube-VOS meta.json ({e.__class__.__name__}: {e}); expected "
                       '{"videos": {VIDEO: {"objects": {ID: {"frames": [FRAME, ...]}}}}}') from None
    return videos

  def videos(self) -> List[str]:
    """The videos: meta.json's, else the folders of JPEGImages; in natural order."""
    if self.meta is not None:
      names = sorted(self.meta, key=natural_key)
    else:
      names = sorted((d for d in os.listdir(self.image_dir)
                      if not d.startswith(".") and os.path.isdir(os.path.join(self.image_dir, d))), key=natural_key)
    if not names:
      raise InputError(f"{self.image_dir}: no videos (one folder of frames per video)")
    for name in names:
      if not os.path.isdir(os.path.join(self.image_dir, name)):
        raise InputError(f"{self.meta_path}: lists video {name!r} but {os.path.join(self.image_dir, name)} "
                         "does not exist")
    return names

  def annotated_frames(self, video: str) -> List[str]:
    """Names of the frames with an annotation PNG, in natural order."""
    folder = os.path.join(self.anno_dir, video)
    if not os.path.isdir(folder):
      return []
    return sorted((f[:-4] for f in os.listdir(folder) if f.endswith(".png") and not f.startswith(".")),
                  key=natural_key)

  def first_frames(self, video: str) -> Dict[int, str]:
    """{object id: name of the frame where it first appears}: from meta.json, else the PNGs."""
    if self.meta is not None:
      objects = self.meta[video]["objects"]
      return {int(oid): min(obj["frames"], key=natural_key) for oid, obj in objects.items()}
    first = {}
    for name in self.annotated_frames(video):
      for oid in np.unique(self.annotation(video, name)):
        if oid not in (0, VOID_ID):
          first.setdefault(int(oid), name)
    return first

  def prompt(self, video: str) -> Prompt:
    """The first frame where any object appears, and the objects introduced after it."""
    names = self.frames(video).names
    first = self.first_frames(video)
    if not first:
      raise InputError(f"{os.path.join(self.anno_dir, video)}: no annotated object for video {video!r}; "
                       "every video needs a mask where its objects first appear")
    for oid, name in first.items():
      if name not in names:
        raise InputError(f"{self.meta_path if self.meta is not None else self.anno_dir}: object {oid} of {video!r} "
                         f"first appears at frame {name!r}, which is not among {os.path.join(self.image_dir, video)}")
    start = min(first.values(), key=names.index)
    path = self.annotation_path(video, start)
    if not os.path.isfile(path):
      raise InputError(f"{path}: annotation not found; objects of {video!r} first appear at frame {start!r} "
                       "(meta.json), so their mask must be there")
    later = {oid: name for oid, name in sorted(first.items()) if names.index(name) > names.index(start)}
    return Prompt(names.index(start), start, path, later)

  def frames_from(self, video: str, start: int) -> FolderFrames:
    """The video's frames from index `start` on (the prompt frame first)."""
    frames = self.frames(video)
    return FolderFrames(frames.folder, [os.path.basename(frames.path(i)) for i in range(start, len(frames))])


def write_submission(out_dir, videos: List[str], dataset: YouTubeVOSDataset, folder: str = RESULTS_DIR) -> str:
  """Zips OUT/<folder>/<video>/<frame>.png of `videos` as OUT/submission.zip (entries named from OUT),
  checking that every frame of each video is there (what the servers require); written to a
  temporary name first. `folder` "" with a DavisDataset: the DAVIS challenge layout."""
  out_dir = os.fspath(out_dir)
  path = os.path.join(out_dir, SUBMISSION)
  tmp = path + ".partial"
  try:
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
      for video in videos:
        for name in dataset.frames(video).names:
          entry = "/".join(([folder] if folder else []) + [video, name + ".png"])
          png = os.path.join(out_dir, *entry.split("/"))
          if not os.path.isfile(png):
            raise InputError(f"{png}: result missing; segment every video before zipping")
          z.write(png, entry)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return path


def later_objects_note(video: str, prompt: Prompt) -> str:
  """The note printed for objects that first appear after the prompt frame (each is added there)."""
  objects = ", ".join(f"{oid} from frame {name}" for oid, name in prompt.later.items())
  return (f"note: {video}: segmented from frame {prompt.frame_name} with the objects present there; object(s) "
          f"{objects} join at their first annotated frame (empty before it)")
