"""Training batches for the ReID net: P identities x K crops, plus background and partial crops.

Composites (issue 20, `composites_per_batch`, 0 in the shipped config): an object of the batch's
identities cut out of its frame and pasted over ANOTHER sequence's object, its crop labelled with
the pasted identity: the occluder seen where the target was, in the target's context, must embed as
the occluder. Hard negatives of the kind the occlusion benchmark's retrievals fail on (a box on the
occluder scored 0.97 against the hidden target's template).

Every batch is a function of (seed, step) only, so a resumed run sees the batches of an
uninterrupted one. Frames of the training split are cached in memory at `frame_height` (480p
halved: the 240p and 480p roots then share one frame size) and padded to one canvas, so the
jitted crop (`model.crop_boxes`, the same as at run time) compiles once.

Box samplers work in pixels (x0, y0, x1, y1) and are plain numpy, shared with experiments/eval_reid.py.
"""
import os
from typing import Dict, List, Tuple

import cv2
import jax
import numpy as np

from vsreid_jax.data import augment
from vsreid_jax.data.objects import Cutout, ObjectBank, paste
from vsreid_jax.geometry import box_iou
from vsreid_jax.geometry import MIN_BOX_SIDE
from vsreid_jax.reid import losses
from vsreid_jax.reid import model as model_lib

KIND_OBJECT, KIND_BACKGROUND, KIND_PARTIAL, KIND_INSTANCE, KIND_COMPOSITE = 0, 1, 2, 3, 4
SAMPLER_TRIES = 30  # rejection sampling attempts before the best box so far is taken


def _clip_box(box, width, height):
  x0, y0, x1, y1 = box
  x0, x1 = np.clip([x0, x1], 0, width)
  y0, y1 = np.clip([y0, y1], 0, height)
  x1, y1 = max(x1, min(x0 + MIN_BOX_SIDE, width)), max(y1, min(y0 + MIN_BOX_SIDE, height))
  return np.array([x0, y0, x1, y1], np.float32)


def _box_from(cx, cy, w, h, width, height):
  return _clip_box((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), width, height)


def jitter_box(box, rng: np.random.Generator, shift: float, scale: float, width: int, height: int):
  """A positive: the box shifted (std `shift` of its size) and rescaled (exp(+-scale), per axis +-scale/2)."""
  x0, y0, x1, y1 = box
  w, h = x1 - x0, y1 - y0
  cx, cy = (x0 + x1) / 2 + rng.normal(0, shift) * w, (y0 + y1) / 2 + rng.normal(0, shift) * h
  s = np.exp(rng.uniform(-scale, scale))
  sx, sy = s * np.exp(rng.uniform(-scale / 2, scale / 2, 2))
  return _box_from(cx, cy, w * sx, h * sy, width, height)


def background_box(box, rng: np.random.Generator, max_iou: float, width: int, height: int):
  """A box of about the object's size (0.5-1.5x per axis) anywhere, with IoU < max_iou if found."""
  x0, y0, x1, y1 = box
  bw, bh = max(x1 - x0, MIN_BOX_SIDE), max(y1 - y0, MIN_BOX_SIDE)
  best, best_iou = None, np.inf
  for _ in range(SAMPLER_TRIES):
    w, h = min(bw * rng.uniform(0.5, 1.5), width), min(bh * rng.uniform(0.5, 1.5), height)
    cx, cy = rng.uniform(w / 2, width - w / 2), rng.uniform(h / 2, height - h / 2)
    cand = _box_from(cx, cy, w, h, width, height)
    iou = box_iou(cand, box)[0, 0]
    if iou < best_iou:
      best, best_iou = cand, iou
    if iou < max_iou:
      break
  return best


def partial_box(box, rng: np.random.Generator, iou_range: Tuple[float, float], width: int, height: int):
  """A box overlapping the object partly (IoU in iou_range if found): a part of it or it plus scenery."""
  x0, y0, x1, y1 = box
  w, h = x1 - x0, y1 - y0
  lo, hi = iou_range
  best, best_gap = None, np.inf
  for _ in range(SAMPLER_TRIES):
    sx, sy = np.exp(rng.uniform(-0.9, 0.9, 2))
    cx, cy = (x0 + x1) / 2 + rng.uniform(-0.8, 0.8) * w, (y0 + y1) / 2 + rng.uniform(-0.8, 0.8) * h
    cand = _box_from(cx, cy, w * sx, h * sy, width, height)
    iou = box_iou(cand, box)[0, 0]
    gap = max(lo - iou, iou - hi, 0.0)
    if gap < best_gap:
      best, best_gap = cand, gap
    if gap == 0:
      break
  return best


def data_bank(d, data_dir: str) -> ObjectBank:
  """The training split's objects (held-out sequences excluded)."""
  roots = [(os.path.join(data_dir, name), res) for name, res in d.roots]
  return ObjectBank(roots, d.subset, exclude=tuple(d.held_out))


class ReIDBatches:
  """batch(step) -> {"crops": uint8 [N, S, S, 3], "labels": int32 [N], "kinds": int32 [N]}.

  N = P * K + 2 * instance pairs + background + partial. Labels index `identities`
  (root/sequence/id), instance pairs follow them; background and partial crops have
  losses.NO_IDENTITY.
  """

  def __init__(self, bank: ObjectBank, config):
    self.bank, self.config, self.d = bank, config, config.data
    self.identities: List[str] = sorted({bank.label(r) for r in bank.refs})
    self.refs_by_identity: Dict[str, List[int]] = {k: [] for k in self.identities}
    for i, r in enumerate(bank.refs):
      self.refs_by_identity[bank.label(r)].append(i)
    if len(self.identities) < self.d.identities_per_batch:
      raise ValueError(f"{len(self.identities)} identities < identities_per_batch {self.d.identities_per_batch}")
    self._root_scale: Dict[int, float] = {}
    self._cache: Dict[Tuple[int, str, int], np.ndarray] = {}
    self._cutouts: Dict[int, Cutout] = {}
    self.canvas_width = 0  # frames are padded to the widest seen (all roots are 16:9 here: one shape)
    size, margin = config.crop_size, config.crop_margin
    self._crop = jax.jit(jax.vmap(lambda im, b: model_lib.crop_boxes(im, b[None], size, margin)[0]))

  def _frame(self, ref) -> Tuple[np.ndarray, float]:
    """(frame resized to frame_height, the scale applied to boxes), cached."""
    key = (ref.root, ref.seq, ref.frame)
    if key not in self._cache:
      image, _ = self.bank.frame(ref.root, ref.seq, ref.frame)
      s = self.d.frame_height / image.shape[0]
      if s != 1.0:
        image = cv2.resize(image, (int(round(image.shape[1] * s)), self.d.frame_height),
                           interpolation=cv2.INTER_AREA)
      self._root_scale[ref.root] = s
      self._cache[key] = image
    return self._cache[key], self._root_scale[ref.root]

  def _cutout(self, ref_index: int) -> Cutout:
    """The object of refs[ref_index] cut out at frame_height scale, cached."""
    if ref_index not in self._cutouts:
      ref = self.bank.refs[ref_index]
      _, s = self._frame(ref)
      obj = self.bank.cutout(ref)
      self._cutouts[ref_index] = obj.resized(s) if s != 1.0 else obj
    return self._cutouts[ref_index]

  def _composite(self, obj: Cutout, host_index: int, rng: np.random.Generator):
    """(frame, box): obj pasted centred on the box of refs[host_index]'s object, its size kept
    (the host object shows around it where it is larger), the box that of the pasted pixels."""
    host = self.bank.refs[host_index]
    image, s = self._frame(host)
    hb = np.asarray(host.box, np.float32) * s
    oh, ow = obj.alpha.shape
    cx, cy = (hb[0] + hb[2]) / 2, (hb[1] + hb[3]) / 2
    x0, y0 = int(round(cx - ow / 2)), int(round(cy - oh / 2))
    image, ids = paste(image, np.zeros(image.shape[:2], np.uint8), obj, x0, y0, 1)
    ys, xs = np.nonzero(ids)
    if xs.size == 0:
      return None
    box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
    h, w = image.shape[:2]
    return image, jitter_box(box, rng, self.d.box_shift, self.d.box_scale, w, h)

  def _canvas(self, frames: List[np.ndarray]) -> np.ndarray:
    self.canvas_width = max([self.canvas_width] + [f.shape[1] for f in frames])
    out = np.zeros((len(frames), self.d.frame_height, self.canvas_width, 3), np.uint8)
    for i, f in enumerate(frames):
      out[i, :f.shape[0], :f.shape[1]] = f
    return out

  def batch(self, step: int) -> Dict[str, np.ndarray]:
    d = self.d
    rng = np.random.default_rng([d.seed, step])
    frames, boxes, labels, kinds = [], [], [], []

    def add(ref_index, kind, label):
      ref = self.bank.refs[ref_index]
      image, s = self._frame(ref)
      h, w = image.shape[:2]
      box = np.asarray(ref.box, np.float32) * s
      if kind == KIND_OBJECT:
        box = jitter_box(box, rng, d.box_shift, d.box_scale, w, h)
      elif kind == KIND_BACKGROUND:
        box = background_box(box, rng, d.background_max_iou, w, h)
      else:
        box = partial_box(box, rng, tuple(d.partial_iou), w, h)
      frames.append(image)
      boxes.append(box)
      labels.append(label)
      kinds.append(kind)

    chosen = rng.choice(len(self.identities), d.identities_per_batch, replace=False)
    for label in chosen:
      refs = self.refs_by_identity[self.identities[label]]
      for i in rng.choice(len(refs), d.crops_per_identity, replace=True):
        add(refs[i], KIND_OBJECT, int(label))
    n_refs = len(self.bank.refs)
    # Instance pairs (SimCLR-style): one scenery box (IoU < background_max_iou with the object)
    # cropped twice with independent jitter and colour, a positive pair of its own; this gives the
    # net many more identities to tell apart than the 21 training objects.
    for j, i in enumerate(rng.integers(0, n_refs, d.get("instance_pairs_per_batch", 0))):
      ref = self.bank.refs[int(i)]
      image, s = self._frame(ref)
      h, w = image.shape[:2]
      box = background_box(np.asarray(ref.box, np.float32) * s, rng, d.background_max_iou, w, h)
      for _ in range(2):
        frames.append(image)
        boxes.append(jitter_box(box, rng, d.box_shift, d.box_scale, w, h))
        labels.append(len(self.identities) + j)
        kinds.append(KIND_INSTANCE)
    # Composites: one of the batch's identities pasted over another sequence's object (docstring).
    for _ in range(d.get("composites_per_batch", 0)):
      label = int(rng.choice(chosen))
      ref_index = int(rng.choice(self.refs_by_identity[self.identities[label]]))
      obj = self._cutout(ref_index)
      host = int(rng.integers(0, n_refs))
      while self.bank.label(self.bank.refs[host]) == self.identities[label]:
        host = int(rng.integers(0, n_refs))
      made = self._composite(obj, host, rng)
      if made is None:  # nothing left of it at this scale: the object itself (the batch keeps its size)
        add(ref_index, KIND_OBJECT, label)
        continue
      frames.append(made[0])
      boxes.append(made[1])
      labels.append(label)
      kinds.append(KIND_COMPOSITE)
    for i in rng.integers(0, n_refs, d.background_per_batch):
      add(int(i), KIND_BACKGROUND, losses.NO_IDENTITY)
    for i in rng.integers(0, n_refs, d.partial_per_batch):
      add(int(i), KIND_PARTIAL, losses.NO_IDENTITY)

    crops = np.asarray(self._crop(self._canvas(frames), np.stack(boxes)))
    crops = np.clip(np.round(crops), 0, 255).astype(np.uint8)
    for i in range(len(crops)):
      if rng.random() < d.colour_prob:
        crops[i] = augment.jitter_colour(crops[i], rng)
      if rng.random() < d.flip_prob:
        crops[i] = crops[i, :, ::-1]
    return dict(crops=crops, labels=np.asarray(labels, np.int32), kinds=np.asarray(kinds, np.int32))
