"""A synthetic optical-flow set with exact ground truth: real frames (or generated textures)
warped by known flow fields.

Each sample is (frame_a, frame_b, flow, valid): uint8 RGB frames [H,W,3], flow a -> b [H,W,2]
float32 in pixels with a(x) = b(x + flow(x)) (the FlowBackend convention), and a bool mask of
the pixels where that holds. Frame b is a real (or generated) image, or for `piecewise` a
composite of two; frame a is sampled from b's layers, so the relation is exact up to rounding a
to uint8.

Two kinds:
  smooth:    one random low-frequency field (global translation + a coarse random grid,
             cubic-interpolated) over the whole frame.
  piecewise: a foreground layer (a DAVIS object and its mask, or a textured blob) moving with
             its own affine motion over a background from another frame moving smoothly.
Invalid: pixels whose match falls outside b, background pixels hidden behind the foreground in b
(occluded), and pixels whose bilinear neighbourhood in b straddles the layer boundary.

Deterministic: sample i depends only on (seed, i).
"""
import os
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from vsreid_jax.data.frames import IMAGE_EXTS, read_image
from vsreid_jax.data.palette import read_mask
from vsreid_jax.errors import InputError

KINDS = ("smooth", "piecewise")
# Coarse grid sizes of the smooth fields: a few control points per axis = low frequency.
GRID_RANGE = (2, 5)
# Foreground affine motion: rotation (degrees) and scale change limits.
MAX_ROTATION_DEG = 5.0
MAX_SCALE_CHANGE = 0.05
# Blob masks (no DAVIS annotation): ellipse semi-axes as fractions of the frame size.
BLOB_AXES = (0.12, 0.3)
# Bilinear weights of a binary mask are exactly 0 or 1 when all four neighbours agree.
PURE = 1e-6


def texture(rng, h: int, w: int, octaves: int = 4) -> np.ndarray:
  """uint8 RGB multi-scale noise (detail at several frequencies, so flow is trackable)."""
  out = np.zeros((h, w, 3), np.float32)
  for k in range(octaves):
    cell = 2 ** (octaves - k + 1)
    small = rng.uniform(-1, 1, (max(h // cell, 2), max(w // cell, 2), 3)).astype(np.float32)
    out += cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC) / (k + 1)
  out = (out - out.min()) / max(np.ptp(out), 1e-6)
  return (out * 255).astype(np.uint8)


def bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """image[H,W(,C)] sampled at float x, y (float64 weights; positions clamped to the image)."""
  h, w = image.shape[:2]
  x = np.clip(x, 0, w - 1)
  y = np.clip(y, 0, h - 1)
  x0 = np.minimum(np.floor(x).astype(np.int64), w - 2) if w > 1 else np.zeros_like(x, np.int64)
  y0 = np.minimum(np.floor(y).astype(np.int64), h - 2) if h > 1 else np.zeros_like(y, np.int64)
  fx, fy = x - x0, y - y0
  x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
  if image.ndim == 3:
    fx, fy = fx[..., None], fy[..., None]
  img = image.astype(np.float64)
  return ((1 - fy) * ((1 - fx) * img[y0, x0] + fx * img[y0, x1])
          + fy * ((1 - fx) * img[y1, x0] + fx * img[y1, x1]))


def _grid(h: int, w: int):
  ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
  return xs, ys


def _inside(x, y, h, w):
  return (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)


def smooth_field(rng, h: int, w: int, max_flow: float) -> np.ndarray:
  """Global translation up to max_flow plus a coarse random deformation up to max_flow / 2."""
  gh, gw = rng.integers(GRID_RANGE[0], GRID_RANGE[1] + 1, 2)
  coarse = rng.uniform(-0.5, 0.5, (gh, gw, 2)).astype(np.float32) * max_flow
  field = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
  return (field + rng.uniform(-1, 1, 2) * max_flow).astype(np.float32)


def affine_field(rng, h: int, w: int, centre: Tuple[float, float], max_flow: float) -> np.ndarray:
  """A rigid-ish layer motion: rotation, scale about `centre` (x, y) and a translation."""
  angle = np.deg2rad(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG))
  scale = 1 + rng.uniform(-MAX_SCALE_CHANGE, MAX_SCALE_CHANGE)
  t = rng.uniform(-1, 1, 2) * max_flow
  xs, ys = _grid(h, w)
  dx, dy = xs - centre[0], ys - centre[1]
  c, s = scale * np.cos(angle), scale * np.sin(angle)
  u = centre[0] + c * dx - s * dy + t[0] - xs
  v = centre[1] + s * dx + c * dy + t[1] - ys
  return np.stack([u, v], -1).astype(np.float32)


def blob_mask(rng, h: int, w: int) -> np.ndarray:
  """A random filled ellipse (a foreground when no object mask is at hand)."""
  mask = np.zeros((h, w), np.uint8)
  centre = (int(rng.uniform(0.3, 0.7) * w), int(rng.uniform(0.3, 0.7) * h))
  axes = (max(int(rng.uniform(*BLOB_AXES) * w), 1), max(int(rng.uniform(*BLOB_AXES) * h), 1))
  cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
  return mask


def _as_uint8(x):
  return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def smooth_pair(frame_b: np.ndarray, flow: np.ndarray):
  """a(x) = b(x + flow(x)); valid where x + flow(x) lies in b."""
  h, w = frame_b.shape[:2]
  xs, ys = _grid(h, w)
  x, y = xs + flow[..., 0], ys + flow[..., 1]
  return _as_uint8(bilinear(frame_b, x, y)), frame_b, flow.astype(np.float32), _inside(x, y, h, w)


def layered_pair(background: np.ndarray, foreground: np.ndarray, mask: np.ndarray,
                 flow_bg: np.ndarray, flow_fg: np.ndarray):
  """Frame b: `foreground` where `mask` (both in b's coordinates) over `background`.
  Frame a: each layer sampled from b along its own flow; a pixel of a is foreground where the
  foreground flow lands inside the mask."""
  h, w = background.shape[:2]
  m = (mask > 0).astype(np.float64)
  frame_b = np.where(m[..., None] > 0, foreground, background)
  xs, ys = _grid(h, w)
  xf, yf = xs + flow_fg[..., 0], ys + flow_fg[..., 1]
  xb, yb = xs + flow_bg[..., 0], ys + flow_bg[..., 1]
  m_fg = np.where(_inside(xf, yf, h, w), bilinear(m, xf, yf), 0.0)
  is_fg = m_fg > 0.5
  frame_a = np.where(is_fg[..., None], bilinear(foreground, xf, yf), bilinear(background, xb, yb))
  flow = np.where(is_fg[..., None], flow_fg, flow_bg).astype(np.float32)
  # Valid: inside b and the whole bilinear neighbourhood in b on the pixel's own layer
  # (a background pixel landing on the foreground is occluded in b).
  valid_fg = _inside(xf, yf, h, w) & (m_fg >= 1 - PURE)
  valid_bg = _inside(xb, yb, h, w) & (bilinear(m, xb, yb) <= PURE)
  valid = np.where(is_fg, valid_fg, valid_bg)
  return _as_uint8(frame_a), frame_b.astype(np.uint8), flow, valid


def epe(flow: np.ndarray, flow_gt: np.ndarray, valid: Optional[np.ndarray] = None) -> float:
  """Mean endpoint error |flow - flow_gt|_2 over valid pixels (all when valid is None)."""
  err = np.linalg.norm(np.asarray(flow, np.float64) - np.asarray(flow_gt, np.float64), axis=-1)
  if valid is None:
    return float(err.mean())
  valid = np.asarray(valid, bool)
  return float(err[valid].mean()) if valid.any() else float("nan")


class DavisSource:
  """Random (frame, object mask) picks from a DAVIS-layout root (JPEGImages/<res>/<seq>/*.jpg,
  Annotations/<res>/<seq>/*.png where present); every sequence folder is used."""

  def __init__(self, root, resolution: str = "480p", sequences: Optional[Sequence[str]] = None):
    self.image_dir = os.path.join(os.fspath(root), "JPEGImages", resolution)
    self.anno_dir = os.path.join(os.fspath(root), "Annotations", resolution)
    if not os.path.isdir(self.image_dir):
      raise InputError(f"{self.image_dir}: folder not found; expected a DAVIS layout root")
    names = sequences or sorted(d for d in os.listdir(self.image_dir) if os.path.isdir(os.path.join(self.image_dir, d)))
    self.files: List[Tuple[str, List[str]]] = []
    for name in names:
      files = sorted(f for f in os.listdir(os.path.join(self.image_dir, name)) if f.lower().endswith(IMAGE_EXTS))
      if files:
        self.files.append((name, files))
    if not self.files:
      raise InputError(f"{self.image_dir}: no sequences with frames")

  def pick(self, rng, exclude: Optional[str] = None):
    """(sequence, RGB frame, binary object mask or None) of a random frame."""
    choices = [i for i, (n, _) in enumerate(self.files) if n != exclude] or list(range(len(self.files)))
    seq, files = self.files[choices[int(rng.integers(len(choices)))]]
    name = files[int(rng.integers(len(files)))]
    frame = read_image(os.path.join(self.image_dir, seq, name))
    mask_path = os.path.join(self.anno_dir, seq, os.path.splitext(name)[0] + ".png")
    mask = (read_mask(mask_path) > 0).astype(np.uint8) if os.path.isfile(mask_path) else None
    return seq, frame, mask


def _fit(rng, image: np.ndarray, mask: Optional[np.ndarray], h: int, w: int, crop_scale=(0.5, 1.0)):
  """A random crop with the target aspect ratio, resized to h x w. Its side is a fraction in
  `crop_scale` of the largest such crop (small fractions: little downscaling, native motions)."""
  ih, iw = image.shape[:2]
  if (ih, iw) == (h, w):
    return image, mask
  scale = min(ih / h, iw / w) * rng.uniform(*crop_scale)
  ch, cw = max(int(h * scale), 1), max(int(w * scale), 1)
  y0, x0 = int(rng.integers(ih - ch + 1)), int(rng.integers(iw - cw + 1))
  image = cv2.resize(image[y0:y0 + ch, x0:x0 + cw], (w, h), interpolation=cv2.INTER_AREA)
  if mask is not None:
    mask = cv2.resize(mask[y0:y0 + ch, x0:x0 + cw], (w, h), interpolation=cv2.INTER_NEAREST)
  return image, mask


class SyntheticFlowSet:
  """Indexable set of (frame_a, frame_b, flow, valid) samples.

  davis_root: DAVIS-layout root for real frames and object masks; None: generated textures.
  height, width: sample size (None with DAVIS: the frames' own size, e.g. 854x480).
  max_flow: largest translation in pixels (default 3% of the width); kinds alternate by index.
  crop_scale: with DAVIS frames of another size, the crop side as a fraction of the largest crop.
  """

  def __init__(self, davis_root=None, height: Optional[int] = None, width: Optional[int] = None,
               kinds: Sequence[str] = KINDS, max_flow: Optional[float] = None, seed: int = 0,
               size: int = 1000, resolution: str = "480p", sequences: Optional[Sequence[str]] = None,
               crop_scale: Tuple[float, float] = (0.5, 1.0)):
    for kind in kinds:
      if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; use {', '.join(KINDS)}")
    self.source = DavisSource(davis_root, resolution, sequences) if davis_root is not None else None
    if self.source is None and (height is None or width is None):
      raise ValueError("height and width are required without a DAVIS root")
    self.height, self.width = height, width
    self.kinds, self.seed, self.size = tuple(kinds), seed, size
    self.max_flow = max_flow
    self.crop_scale = tuple(crop_scale)

  def __len__(self):
    return self.size

  def _image(self, rng, h, w, exclude=None):
    if self.source is None:
      return None, texture(rng, h, w), blob_mask(rng, h, w)
    seq, frame, mask = self.source.pick(rng, exclude)
    frame, mask = _fit(rng, frame, mask, h or frame.shape[0], w or frame.shape[1], self.crop_scale)
    return seq, frame, mask

  def __getitem__(self, index: int):
    if not 0 <= index < self.size:
      raise IndexError(index)
    rng = np.random.default_rng([self.seed, index])
    kind = self.kinds[index % len(self.kinds)]
    seq, frame_b, mask = self._image(rng, self.height, self.width)
    h, w = frame_b.shape[:2]
    max_flow = self.max_flow if self.max_flow is not None else 0.03 * w
    if kind == "smooth":
      return smooth_pair(frame_b, smooth_field(rng, h, w, max_flow))
    if mask is None or mask.sum() < 0.01 * h * w:  # no usable object: a blob of the same frame
      mask = blob_mask(rng, h, w)
    _, background, _ = self._image(rng, h, w, exclude=seq)
    ys, xs = np.nonzero(mask)
    flow_fg = affine_field(rng, h, w, (xs.mean(), ys.mean()), max_flow)
    flow_bg = smooth_field(rng, h, w, max_flow / 2)
    return layered_pair(background, frame_b, mask, flow_bg, flow_fg)

  def batch(self, indices: Sequence[int]):
    """Stacked samples: frames_a, frames_b [N,H,W,3], flows [N,H,W,2], valid [N,H,W]."""
    samples = [self[int(i)] for i in indices]
    return tuple(np.stack(x) for x in zip(*samples))
