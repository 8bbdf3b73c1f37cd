"""Objects of DAVIS-layout roots as boxes and cut-outs, and compositing them onto other frames.

One module for everything that treats "an object in a frame" as a thing to move around: the
detector's copy-paste augmentation, the ReID net's crops, and the multi-object occlusion
benchmark all read objects through `ObjectBank` and composite them with `paste`.

Boxes are those of `vsreid_jax/geometry.py` (continuous pixel rectangles (x0, y0, x1, y1)).
"""
import dataclasses
import os
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from vsreid_jax.data.davis import DavisDataset
from vsreid_jax.geometry import mask_box_np
from vsreid_jax.data.training_sets import open_root


def frame_boxes(ids: np.ndarray) -> Dict[int, np.ndarray]:
  """{object id: box} of every id present in an id mask (void 255 excluded)."""
  out = {}
  for k in np.unique(ids):
    if k in (0, 255):
      continue
    out[int(k)] = mask_box_np(ids == k)
  return out


@dataclasses.dataclass
class Cutout:
  """An object cut out of a frame: rgb[h, w, 3] uint8 and alpha[h, w] float32 in 0..1 over its box."""
  rgb: np.ndarray
  alpha: np.ndarray
  source: str = ""  # "<sequence>/<frame>/<id>", for logs

  def resized(self, scale: float) -> "Cutout":
    h, w = self.alpha.shape
    nh, nw = max(int(round(h * scale)), 1), max(int(round(w * scale)), 1)
    rgb = cv2.resize(self.rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)
    alpha = cv2.resize(self.alpha, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return Cutout(rgb, alpha, self.source)

  def flipped(self) -> "Cutout":
    return Cutout(self.rgb[:, ::-1].copy(), self.alpha[:, ::-1].copy(), self.source)


def cutout(image: np.ndarray, ids: np.ndarray, obj_id: int, source: str = "") -> Optional[Cutout]:
  """The object `obj_id` of a frame as a Cutout over its box, or None when it is absent."""
  m = ids == obj_id
  box = mask_box_np(m)
  if box is None:
    return None
  x0, y0, x1, y1 = box.astype(int)
  return Cutout(image[y0:y1, x0:x1].copy(), m[y0:y1, x0:x1].astype(np.float32), source)


def paste(image: np.ndarray, ids: np.ndarray, obj: Cutout, x0: int, y0: int, new_id: int,
          alpha_threshold: float = 0.5) -> Tuple[np.ndarray, np.ndarray]:
  """Composites `obj` with its top-left corner at (x0, y0), in front of everything already there.

  The cut-out may lie partly (or wholly) outside the frame: only the visible part is drawn, which
  is how objects leave and re-enter a benchmark clip. Pixels with alpha > alpha_threshold take
  `new_id` in the id mask (occluding what was there); colour is alpha-blended. Returns new arrays.
  """
  image = image.copy()
  ids = ids.copy()
  h, w = ids.shape
  oh, ow = obj.alpha.shape
  fx0, fy0 = max(x0, 0), max(y0, 0)
  fx1, fy1 = min(x0 + ow, w), min(y0 + oh, h)
  if fx1 <= fx0 or fy1 <= fy0:
    return image, ids
  sx0, sy0 = fx0 - x0, fy0 - y0
  a = obj.alpha[sy0:sy0 + fy1 - fy0, sx0:sx0 + fx1 - fx0]
  rgb = obj.rgb[sy0:sy0 + fy1 - fy0, sx0:sx0 + fx1 - fx0].astype(np.float32)
  region = image[fy0:fy1, fx0:fx1].astype(np.float32)
  image[fy0:fy1, fx0:fx1] = np.clip(a[..., None] * rgb + (1 - a[..., None]) * region + 0.5, 0, 255).astype(np.uint8)
  ids[fy0:fy1, fx0:fx1] = np.where(a > alpha_threshold, np.uint8(new_id), ids[fy0:fy1, fx0:fx1])
  return image, ids


@dataclasses.dataclass(frozen=True)
class ObjectRef:
  """One object in one frame of a sequence of a root."""
  root: int  # index into ObjectBank.datasets
  seq: str
  frame: int
  obj_id: int
  box: Tuple[float, float, float, float]


class ObjectBank:
  """Every (sequence, frame, object) of some DAVIS-layout roots, with boxes read once.

  `roots` are (path, resolution folder) pairs, or the root entries of named training datasets
  (data/training_sets.py `open_root`: a YouTube-VOS root too); `sequences` restricts each root to
  some of its sequences (e.g. the training split, so that held-out objects stay unseen), `exclude`
  removes some; `pairs`, (root index, sequence) pairs (training_sets.split), replaces the walk over
  each root's `subset` set file. Frames and masks are read on demand.
  """

  def __init__(self, roots: Sequence[Sequence[str]], subset: str = "train",
               sequences: Optional[Sequence[str]] = None, exclude: Sequence[str] = (),
               pairs: Optional[Sequence[Tuple[int, str]]] = None):
    self.datasets = [open_root(root) for root in roots]
    self.refs: List[ObjectRef] = []
    self.sequences: List[Tuple[int, str]] = []  # (root index, sequence name)
    if pairs is None:
      pairs = [(r, seq) for r, ds in enumerate(self.datasets) for seq in ds.sequences(subset)]
    for r, seq in pairs:
      ds = self.datasets[r]
      if (sequences is not None and seq not in sequences) or seq in exclude:
        continue
      self.sequences.append((r, seq))
      frames = ds.frames(seq)
      for t, name in enumerate(frames.names):
        ids = ds.annotation(seq, name)
        for k, box in frame_boxes(ids).items():
          self.refs.append(ObjectRef(r, seq, t, k, tuple(float(v) for v in box)))

  def frame(self, root: int, seq: str, t: int) -> Tuple[np.ndarray, np.ndarray]:
    """(image [H, W, 3] uint8 RGB, ids [H, W] uint8) of frame t."""
    ds = self.datasets[root]
    frames = ds.frames(seq)
    return frames[t], ds.annotation(seq, frames.names[t])

  def num_frames(self, root: int, seq: str) -> int:
    return len(self.datasets[root].frames(seq))

  def cutout(self, ref: ObjectRef) -> Cutout:
    image, ids = self.frame(ref.root, ref.seq, ref.frame)
    return cutout(image, ids, ref.obj_id, f"{ref.seq}/{ref.frame}/{ref.obj_id}")

  def refs_of(self, root: int, seq: str) -> List[ObjectRef]:
    return [r for r in self.refs if r.root == root and r.seq == seq]

  def label(self, ref: ObjectRef) -> str:
    """Identity of an object across frames: root, sequence and id."""
    return f"{os.path.basename(self.datasets[ref.root].root)}/{ref.seq}/{ref.obj_id}"
