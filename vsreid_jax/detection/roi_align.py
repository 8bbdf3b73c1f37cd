"""MultiScaleRoIAlign of torchvision (RoIAlign aligned=False, fixed sampling ratio), in jnp.

All FPN levels are flattened into one [sum H*W, C] table and each RoI gathers its bilinear
samples from its own level, so the cost is one level's work per RoI, not one per level. Samples beyond the map (y < -1 or
y > H) count as 0, as in torchvision's C++/CUDA kernel (its pure-python fallback clamps them).
"""
import math
from typing import Sequence, Tuple

import jax.numpy as jnp
import numpy as np


def infer_scales(feature_hws: Sequence[Tuple[int, int]], image_hw: Tuple[int, int]):
  """MultiScaleRoIAlign._infer_scale: 2 ** round(log2(feature / image)), from the height."""
  out = []
  for fhw in feature_hws:
    approx = float(fhw[0]) / float(image_hw[0])
    out.append(2.0 ** float(round(math.log2(approx))))
  return out


def level_mapper(rois: jnp.ndarray, k_min: int, k_max: int, canonical_scale: float = 224,
                 canonical_level: float = 4, eps: float = 1e-6) -> jnp.ndarray:
  """torchvision LevelMapper: the level index (0 = k_min) of each RoI [R, 4]."""
  s = jnp.sqrt((rois[:, 2] - rois[:, 0]) * (rois[:, 3] - rois[:, 1]))
  lvl = jnp.floor(canonical_level + jnp.log2(s / canonical_scale) + eps)
  lvl = jnp.clip(lvl, k_min, k_max)  # empty padding rois: -inf -> k_min
  return (lvl - k_min).astype(jnp.int32)


def _axis_samples(start, size, bins: int, ratio: int, limit):
  """Sample coordinates along one axis and their bilinear corners (torchvision _roi_align)."""
  bin_size = size / bins
  i = jnp.arange(bins * ratio)
  pos = start[:, None] + (i // ratio)[None] * bin_size[:, None] + \
      ((i % ratio)[None] + 0.5) * (bin_size / ratio)[:, None]
  inside = (pos >= -1.0) & (pos <= limit[:, None])
  pos = jnp.maximum(pos, 0.0)
  low = jnp.floor(pos).astype(jnp.int32)
  at_edge = low >= limit[:, None] - 1
  last = (limit[:, None] - 1).astype(jnp.int32)
  high = jnp.where(at_edge, last, low + 1)
  low = jnp.where(at_edge, last, low)
  pos = jnp.where(at_edge, low.astype(pos.dtype), pos)
  frac = pos - low
  return low, high, frac, inside


def multiscale_roi_align(features: Sequence[jnp.ndarray], rois: jnp.ndarray, scales: Sequence[float],
                         output_size: int, sampling_ratio: int,
                         canonical_scale: float = 224, canonical_level: float = 4) -> jnp.ndarray:
  """Pools [R, S, S, C] from single-image feature maps [H_l, W_l, C] for rois [R, 4] (pixels)."""
  k_min = int(round(-math.log2(scales[0])))
  k_max = int(round(-math.log2(scales[-1])))
  lvl = level_mapper(rois, k_min, k_max, canonical_scale, canonical_level)
  c = features[0].shape[-1]
  table = jnp.concatenate([f.reshape(-1, c) for f in features])
  hs = np.array([f.shape[0] for f in features], np.float32)
  ws = np.array([f.shape[1] for f in features], np.float32)
  offsets = np.cumsum([0] + [f.shape[0] * f.shape[1] for f in features[:-1]]).astype(np.int32)
  scale = jnp.asarray(np.asarray(scales, np.float32))[lvl]
  h, w = jnp.asarray(hs)[lvl], jnp.asarray(ws)[lvl]
  off = jnp.asarray(offsets)[lvl]

  x0, y0 = rois[:, 0] * scale, rois[:, 1] * scale  # aligned=False: no half-pixel offset
  roi_w = jnp.maximum(rois[:, 2] * scale - x0, 1.0)
  roi_h = jnp.maximum(rois[:, 3] * scale - y0, 1.0)
  ylo, yhi, ly, yin = _axis_samples(y0, roi_h, output_size, sampling_ratio, h)
  xlo, xhi, lx, xin = _axis_samples(x0, roi_w, output_size, sampling_ratio, w)

  wi = w.astype(jnp.int32)[:, None, None]
  base = off[:, None, None]

  def gather(yi, xi):  # [R, Sy] x [R, Sx] -> [R, Sy, Sx, C]
    return table[base + yi[:, :, None] * wi + xi[:, None, :]]

  ly, lx = ly[:, :, None, None], lx[:, None, :, None]
  val = ((1 - ly) * (1 - lx) * gather(ylo, xlo) + (1 - ly) * lx * gather(ylo, xhi) +
         ly * (1 - lx) * gather(yhi, xlo) + ly * lx * gather(yhi, xhi))
  val = val * (yin[:, :, None] & xin[:, None, :])[..., None]
  r = rois.shape[0]
  val = val.reshape(r, output_size, sampling_ratio, output_size, sampling_ratio, c)
  return val.mean(axis=(2, 4))
