"""A DAVIS-layout root: JPEGImages/<res>/<seq>/*.jpg, Annotations/<res>/<seq>/*.png,
ImageSets/2017/<set>.txt (one sequence name per line).

`SequenceFolders` (a folder of frame folders beside a folder of annotation folders) is shared
with the YouTube-VOS / MOSE reader (data/youtube_vos.py)."""
import os
from typing import List

import numpy as np

from vsreid_jax.data.frames import FolderFrames
from vsreid_jax.data.palette import read_mask
from vsreid_jax.errors import InputError


class SequenceFolders:
  """Frames in image_dir/<seq>/*.jpg, id masks in anno_dir/<seq>/<frame>.png."""

  image_dir: str
  anno_dir: str

  def frames(self, seq: str) -> FolderFrames:
    return FolderFrames(os.path.join(self.image_dir, seq))

  def annotation_path(self, seq: str, frame_name: str) -> str:
    return os.path.join(self.anno_dir, seq, frame_name + ".png")

  def annotation(self, seq: str, frame_name: str) -> np.ndarray:
    return read_mask(self.annotation_path(seq, frame_name))


class DavisDataset(SequenceFolders):
  """Reads sequences of a DAVIS 2017 style root; `resolution` is the folder name (480p, 240p, ...)."""

  def __init__(self, root, resolution: str = "480p"):
    self.root = os.fspath(root)
    self.resolution = resolution
    if not os.path.isdir(self.root):
      raise InputError(f"{self.root}: DAVIS root not found")
    self.image_dir = os.path.join(self.root, "JPEGImages", resolution)
    self.anno_dir = os.path.join(self.root, "Annotations", resolution)
    for d in (self.image_dir, self.anno_dir):
      if not os.path.isdir(d):
        have = sorted(os.listdir(os.path.dirname(d))) if os.path.isdir(os.path.dirname(d)) else []
        hint = f" (found resolutions: {', '.join(have)}; pass --resolution)" if have else ""
        raise InputError(f"{d}: folder not found; expected a DAVIS layout root{hint}")

  def sequences(self, subset: str) -> List[str]:
    """Sequence names listed in ImageSets/2017/<subset>.txt."""
    path = os.path.join(self.root, "ImageSets", "2017", f"{subset}.txt")
    if not subset or subset != os.path.basename(subset) or subset in (".", ".."):
      raise InputError(f"--set {subset!r}: not a set name; pass the name of a file ImageSets/2017/<set>.txt")
    if not os.path.isfile(path):
      sets_dir = os.path.dirname(path)
      have = sorted(f[:-4] for f in os.listdir(sets_dir) if f.endswith(".txt")) if os.path.isdir(sets_dir) else []
      raise InputError(f"{path}: set file not found" + (f"; available sets: {', '.join(have)}" if have else ""))
    with open(path) as f:
      names = [line.strip() for line in f if line.strip()]
    if not names:
      raise InputError(f"{path}: set file is empty; list one sequence name per line")
    seen = set()
    for name in names:
      if name in (".", "..") or os.path.isabs(name) or "/" in name or os.sep in name or "\0" in name:
        raise InputError(f"{path}: line {name!r} is not a sequence name (a path or '..'); list plain folder "
                         f"names of {self.image_dir}, one a line")
      if name in seen:
        raise InputError(f"{path}: lists sequence {name!r} twice; list each sequence once")
      seen.add(name)
      if not os.path.isdir(os.path.join(self.image_dir, name)):
        raise InputError(f"{path}: lists sequence {name!r} but {os.path.join(self.image_dir, name)} does not exist")
    return names

  def first_mask(self, seq: str) -> np.ndarray:
    frames = self.frames(seq)
    return self.annotation(seq, frames.names[0])
