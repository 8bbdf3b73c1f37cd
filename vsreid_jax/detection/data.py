"""Detector training batches: DAVIS frames with copy-pasted objects, boxes from the id masks.

Each example is one training frame resized to the config's input bucket, horizontally flipped
at random, with 0..max_paste objects cut out of OTHER sequences pasted in front (random scale,
position, partly outside the frame), so that the detector learns objectness rather than the
21 training scenes. The GT boxes are read off the final id mask, so an occluded original object
gets the box of what remains visible. Deterministic given (seed, step): exact resume.
"""
import dataclasses
from typing import Dict, Sequence, Tuple

import cv2
import numpy as np

from vsreid_jax.data.augment import jitter_colour
from vsreid_jax.data.objects import ObjectBank, frame_boxes, paste

PASTE_ID0 = 100  # ids of pasted objects (DAVIS ids are small)


@dataclasses.dataclass(frozen=True)
class PasteConfig:
  max_paste: int = 3
  size_range: Tuple[float, float] = (0.15, 0.7)  # pasted object's longer side / frame height
  outside: float = 0.3  # up to this fraction of the object may lie outside the frame
  min_box_side: float = 4.0  # smaller visible boxes are dropped (and their pixels left unlabelled)
  min_visible_pixels: int = 64
  colour_prob: float = 0.8
  flip_prob: float = 0.5


def resize_to_bucket(image: np.ndarray, ids: np.ndarray, hw: Tuple[int, int]):
  """Resizes to fit inside hw keeping the aspect, top-left aligned; returns (image, ids, scale)."""
  h, w = ids.shape
  scale = min(hw[0] / h, hw[1] / w)
  nh, nw = min(int(round(h * scale)), hw[0]), min(int(round(w * scale)), hw[1])
  out = np.zeros(hw + (3,), np.uint8)
  out_ids = np.zeros(hw, np.uint8)
  out[:nh, :nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
  out_ids[:nh, :nw] = cv2.resize(ids, (nw, nh), interpolation=cv2.INTER_NEAREST)
  return out, out_ids, scale


class CopyPasteData:
  """Batches {"images" uint8 [B, H, W, 3], "boxes" float32 [B, G, 4], "box_valid" bool [B, G]}."""

  def __init__(self, bank: ObjectBank, hw: Tuple[int, int], max_boxes: int, seed: int = 0,
               cfg: PasteConfig = PasteConfig()):
    self.bank, self.hw, self.max_boxes, self.seed, self.cfg = bank, tuple(hw), max_boxes, seed, cfg
    self.frames = [(r, s, t) for r, s in bank.sequences for t in range(bank.num_frames(r, s))]
    if not self.frames or not bank.refs:
      raise ValueError("no training frames/objects")

  def example(self, rng: np.random.Generator) -> Dict[str, np.ndarray]:
    c = self.cfg
    r, seq, t = self.frames[rng.integers(len(self.frames))]
    image, ids = self.bank.frame(r, seq, t)
    image, ids, _ = resize_to_bucket(image, ids, self.hw)
    if rng.random() < c.flip_prob:
      image, ids = image[:, ::-1].copy(), ids[:, ::-1].copy()
    h, w = self.hw
    for k in range(int(rng.integers(0, c.max_paste + 1))):
      ref = self.bank.refs[rng.integers(len(self.bank.refs))]
      if (ref.root, ref.seq) == (r, seq):
        continue  # an object of another scene
      obj = self.bank.cutout(ref)
      side = rng.uniform(*c.size_range) * h
      obj = obj.resized(side / max(obj.alpha.shape))
      if rng.random() < 0.5:
        obj = obj.flipped()
      oh, ow = obj.alpha.shape
      x0 = int(rng.uniform(-c.outside * ow, w - (1 - c.outside) * ow))
      y0 = int(rng.uniform(-c.outside * oh, h - (1 - c.outside) * oh))
      image, ids = paste(image, ids, obj, x0, y0, PASTE_ID0 + k)
    if rng.random() < c.colour_prob:
      image = jitter_colour(image, rng)
    boxes = []
    for k, box in frame_boxes(ids).items():
      if min(box[2] - box[0], box[3] - box[1]) >= c.min_box_side and (ids == k).sum() >= c.min_visible_pixels:
        boxes.append(box)
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)[:self.max_boxes]
    out_boxes = np.zeros((self.max_boxes, 4), np.float32)
    out_boxes[:len(boxes)] = boxes
    valid = np.arange(self.max_boxes) < len(boxes)
    return {"images": image, "boxes": out_boxes, "box_valid": valid}

  def batch(self, step: int, batch_size: int) -> Dict[str, np.ndarray]:
    rng = np.random.default_rng([self.seed, step])
    examples = [self.example(rng) for _ in range(batch_size)]
    return {k: np.stack([e[k] for e in examples]) for k in examples[0]}


def training_bank(data_dir, roots: Sequence[Tuple[str, str]], held_out: Sequence[str]) -> ObjectBank:
  """Objects of the training sequences of every root (held-out sequences never read)."""
  import os  # pylint: disable=g-import-not-at-top
  return ObjectBank([(os.path.join(data_dir, name), res) for name, res in roots], exclude=held_out)
