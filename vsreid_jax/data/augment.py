"""Training augmentation for N_mp, in numpy/cv2, deterministic given a `np.random.Generator`.

`deform_mask` simulates the "previous mask" the net is given at test time from a ground-truth
mask (MaskTrack-style): a small affine motion, a smooth (thin-plate-like) elastic deformation,
dilation or erosion, holes and extra blobs near the boundary, soft edges; now and then an empty
or a heavily wrong prior. `jitter_colour` and `hflip` act on the S x S crops of an example.
"""
import dataclasses
from typing import Dict

import cv2
import numpy as np


@dataclasses.dataclass(frozen=True)
class DeformConfig:
  """Strengths are relative to the object's size sqrt(mask area)."""
  translate: float = 0.04  # std of the shift; clipped at 2 std
  scale: float = 0.06  # scale in 1 +- scale (uniform), each axis jittered by a further +-scale/3
  rotate_deg: float = 6.0  # rotation in +- rotate_deg (uniform)
  elastic: float = 0.03  # std of the coarse displacement grid
  elastic_grid: tuple = (3, 6)  # grid cells per side (uniform in the range)
  morph: float = 0.04  # max radius of the dilation/erosion kernel
  # Every strength above is multiplied by a severity drawn per example from [min_severity, 1]:
  # some priors are nearly right (like a good previous mask), some far off.
  min_severity: float = 0.25
  max_blobs: int = 3  # holes and extra blobs, each 0.04..0.18 of the size, on the boundary
  blur_sigma: float = 1.5  # max Gaussian blur (pixels) of the result: soft edges like a warped map
  empty_prob: float = 0.0  # an empty prior
  wrong_prob: float = 0.02  # a prior far from the object (shifted by 0.5..1 of its size)
  # A prior of part of the object (cut by a random straight line, keeping partial_keep of its area):
  # the mask a half-hidden object leaves, from which N_mp must regrow the object once it is back
  # (issue 17: the crop row loses a half-hidden small object). 0: off (no random draw is spent).
  partial_prob: float = 0.0
  partial_keep: tuple = (0.3, 0.7)


def _box(mask):
  ys, xs = np.nonzero(mask)
  return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def _ellipse(canvas, centre, axes, angle, value):
  cv2.ellipse(canvas, (int(round(centre[0])), int(round(centre[1]))),
              (max(int(round(axes[0])), 1), max(int(round(axes[1])), 1)), float(angle), 0, 360,
              float(value), -1)


def _affine(m, rng, cfg: DeformConfig, size, centre, shift_scale=1.0):
  """Small random similarity (+ slight anisotropy) about the object centre."""
  shift = np.clip(rng.normal(0, cfg.translate, 2), -2 * cfg.translate, 2 * cfg.translate) * size * shift_scale
  s = 1 + rng.uniform(-cfg.scale, cfg.scale)
  sx, sy = s * (1 + rng.uniform(-cfg.scale, cfg.scale, 2) / 3)
  a = np.deg2rad(rng.uniform(-cfg.rotate_deg, cfg.rotate_deg))
  rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) @ np.diag([sx, sy])
  mat = np.concatenate([rot, (np.asarray(centre) + shift - rot @ centre)[:, None]], axis=1)
  return cv2.warpAffine(m, mat.astype(np.float32), (m.shape[1], m.shape[0]), flags=cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)


def _elastic(m, rng, cfg: DeformConfig, size):
  """Backward remap with a smooth random displacement (a coarse grid upsampled bicubically)."""
  h, w = m.shape
  g = int(rng.integers(cfg.elastic_grid[0], cfg.elastic_grid[1] + 1))
  disp = rng.normal(0, cfg.elastic * size, (g, g, 2)).astype(np.float32)
  disp = cv2.resize(disp, (w, h), interpolation=cv2.INTER_CUBIC)
  xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
  return cv2.remap(m, xs + disp[..., 0], ys + disp[..., 1], cv2.INTER_LINEAR,
                   borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)


def _morph(m, rng, cfg: DeformConfig, size):
  r = int(round(rng.uniform(0, cfg.morph) * size))
  if r < 1:
    return m
  kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
  return cv2.dilate(m, kernel) if rng.random() < 0.5 else cv2.erode(m, kernel)


def _blobs(m, rng, cfg: DeformConfig, size):
  """Holes and extra blobs centred on boundary pixels (where real propagation errs)."""
  n = int(rng.integers(0, cfg.max_blobs + 1))
  if n == 0:
    return m
  binary = (m > 0.5).astype(np.uint8)
  edge = binary - cv2.erode(binary, np.ones((3, 3), np.uint8))
  ys, xs = np.nonzero(edge)
  if len(xs) == 0:
    return m
  m = m.copy()
  for _ in range(n):
    j = int(rng.integers(len(xs)))
    axes = rng.uniform(0.04, 0.18, 2) * size
    _ellipse(m, (xs[j], ys[j]), axes, rng.uniform(0, 180), 0.0 if rng.random() < 0.5 else 1.0)
  return m


def _wrong(mask, rng, cfg: DeformConfig, size, centre):
  """The object's own shape moved away by 0.5..1 of its size (a drifted, wrong prior)."""
  h, w = mask.shape
  a = rng.uniform(0, 2 * np.pi)
  d = rng.uniform(0.5, 1.0) * size
  mat = np.array([[1, 0, d * np.cos(a)], [0, 1, d * np.sin(a)]], np.float32)
  return cv2.warpAffine(mask, mat, (w, h), flags=cv2.INTER_LINEAR)


def _partial(m, rng, cfg: DeformConfig):
  """The object's pixels on one side of a random line through it, partial_keep of its area."""
  ys, xs = np.nonzero(m > 0.5)
  a = rng.uniform(0, 2 * np.pi)
  proj = xs * np.cos(a) + ys * np.sin(a)
  cut = np.quantile(proj, rng.uniform(*cfg.partial_keep))
  out = np.zeros_like(m)
  keep = proj <= cut
  out[ys[keep], xs[keep]] = 1.0
  return out


def deform_mask(mask: np.ndarray, rng: np.random.Generator, cfg: DeformConfig = DeformConfig()) -> np.ndarray:
  """A simulated previous-frame probability [H, W] float32 in [0, 1] from a binary GT mask."""
  m = (np.asarray(mask) > 0).astype(np.float32)
  h, w = m.shape
  if not m.any() or rng.random() < cfg.empty_prob:
    return np.zeros((h, w), np.float32)
  x0, y0, x1, y1 = _box(m)
  # The object's area, not its box: a thin object (a person, a kite line) gets gentler moves.
  size = float(np.sqrt(m.sum()))
  centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2], np.float64)
  if rng.random() < cfg.wrong_prob:
    return np.clip(_wrong(m, rng, cfg, size, centre), 0, 1)
  if cfg.partial_prob > 0 and rng.random() < cfg.partial_prob:
    m = _partial(m, rng, cfg)  # the window, size and centre stay the whole object's
  severity = rng.uniform(cfg.min_severity, 1.0)
  cfg = dataclasses.replace(cfg, translate=cfg.translate * severity, scale=cfg.scale * severity,
                            rotate_deg=cfg.rotate_deg * severity, elastic=cfg.elastic * severity,
                            morph=cfg.morph * severity)
  # Work in a window around the object: the deformations stay within half its size.
  pad = int(np.ceil(0.5 * size)) + 8
  wx0, wy0, wx1, wy1 = max(x0 - pad, 0), max(y0 - pad, 0), min(x1 + pad, w), min(y1 + pad, h)
  win = m[wy0:wy1, wx0:wx1].copy()
  win = _affine(win, rng, cfg, size, centre - [wx0, wy0])
  win = _elastic(win, rng, cfg, size)
  win = _morph((win > 0.5).astype(np.float32), rng, cfg, size)
  win = _blobs(win, rng, cfg, size)
  sigma = rng.uniform(0, cfg.blur_sigma)
  if sigma > 0.3:
    win = cv2.GaussianBlur(win, (0, 0), sigma)
  out = np.zeros((h, w), np.float32)
  out[wy0:wy1, wx0:wx1] = np.clip(win, 0, 1)
  return out


def jitter_colour(image: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
  """Brightness, contrast, saturation and per-channel gain jitter of an RGB uint8 image."""
  x = image.astype(np.float32)
  grey = x.mean(axis=-1, keepdims=True)
  x = grey + (x - grey) * (1 + strength * rng.uniform(-0.25, 0.25))  # saturation
  x = x * (1 + strength * rng.uniform(-0.05, 0.05, 3))  # white balance
  mean = x.mean()
  x = mean + (x - mean) * (1 + strength * rng.uniform(-0.2, 0.2))  # contrast
  x = x + strength * rng.uniform(-20, 20)  # brightness
  return np.clip(np.round(x), 0, 255).astype(np.uint8)


def hflip(example: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
  """Mirrors every [..., S, S, C] crop in x; the flow's x component changes sign."""
  out = {k: np.ascontiguousarray(v[..., :, ::-1, :]) for k, v in example.items()}
  if "flow" in out:
    out["flow"] = out["flow"] * np.array([-1, 1], out["flow"].dtype)
  return out


def augment_crops(example: Dict[str, np.ndarray], rng: np.random.Generator, colour_prob: float = 0.8,
                  flip_prob: float = 0.5) -> Dict[str, np.ndarray]:
  """Online photometric + flip augmentation of one example's crops (image uint8)."""
  out = dict(example)
  if rng.random() < colour_prob:
    out["image"] = jitter_colour(out["image"], rng)
  if rng.random() < flip_prob:
    out = hflip(out)
  return out
