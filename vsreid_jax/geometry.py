"""Box and crop geometry, the one module for it: boxes of masks, their IoU, crops and paste-back.

Boxes are continuous pixel rectangles (x0, y0, x1, y1): the mask box covers pixel centres
x0 + 0.5 .. x1 - 0.5, so x0 = first column, x1 = last column + 1. Crops sample a fixed S x S grid
over the box (the cv2.resize half-pixel convention), so the crop shape never depends on the box
and nothing recompiles when an object moves or grows. Paste-back samples the S x S result at every
full-frame pixel inside the box; outside it the map is 0.

The JAX functions (`mask_box`, `enlarge_box`, `scale_box`, `crop_resize`, `crop_flow`, `paste`) run inside
jitted code with static shapes (Algorithm 1, training crops); `mask_box_np` and `box_iou` are their
host (numpy) counterparts for per-frame bookkeeping (the solver, ReID, detection data). The
detector's anchor coding lives with the detector (detection/boxes.py).

This module imports nothing from the package: every layer can use it.
"""
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

# Boxes are never thinner than this (pixels), so a one-pixel object still gets a usable crop.
MIN_BOX_SIDE = 8.0


def bilinear_sample(image: jnp.ndarray, x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
  """Samples image[H, W] at float positions x, y (any equal shapes), replicate border."""
  h, w = image.shape
  x = jnp.clip(x, 0.0, w - 1.0)
  y = jnp.clip(y, 0.0, h - 1.0)
  x0 = jnp.floor(x)
  y0 = jnp.floor(y)
  wx = x - x0
  wy = y - y0
  x0 = x0.astype(jnp.int32)
  y0 = y0.astype(jnp.int32)
  x1 = jnp.minimum(x0 + 1, w - 1)
  y1 = jnp.minimum(y0 + 1, h - 1)
  top = image[y0, x0] * (1 - wx) + image[y0, x1] * wx
  bottom = image[y1, x0] * (1 - wx) + image[y1, x1] * wx
  return top * (1 - wy) + bottom * wy


def mask_box(prob: jnp.ndarray, threshold: float = 0.5):
  """Box of prob[H, W] > threshold as (x0, y0, x1, y1) float32 [4], and whether any pixel is set
  (a bool scalar; the box is meaningless when not). Traceable: for jitted code."""
  m = prob > threshold
  rows = jnp.any(m, axis=1)
  cols = jnp.any(m, axis=0)
  h, w = prob.shape
  y0 = jnp.argmax(rows)
  y1 = h - jnp.argmax(rows[::-1])
  x0 = jnp.argmax(cols)
  x1 = w - jnp.argmax(cols[::-1])
  box = jnp.stack([x0, y0, x1, y1]).astype(jnp.float32)
  return box, jnp.any(rows)


def mask_box_np(mask: np.ndarray) -> Optional[np.ndarray]:
  """Box float32 [4] of mask[H, W] != 0 (host numpy, the same box as `mask_box`), or None when the
  mask is empty."""
  rows = np.flatnonzero(mask.any(axis=1))
  if rows.size == 0:
    return None
  cols = np.flatnonzero(mask.any(axis=0))
  return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.float32)


def _overlap(a: np.ndarray, b: np.ndarray):
  """(intersection [N, M], area_a [N], area_b [M]) of boxes a[N, 4] and b[M, 4]."""
  a = np.asarray(a, np.float32).reshape(-1, 4)
  b = np.asarray(b, np.float32).reshape(-1, 4)
  x0 = np.maximum(a[:, None, 0], b[None, :, 0])
  y0 = np.maximum(a[:, None, 1], b[None, :, 1])
  x1 = np.minimum(a[:, None, 2], b[None, :, 2])
  y1 = np.minimum(a[:, None, 3], b[None, :, 3])
  inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
  area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
  area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
  return inter, area_a, area_b


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """IoU [N, M] of boxes a[N, 4] and b[M, 4] (empty boxes have IoU 0 with everything)."""
  inter, area_a, area_b = _overlap(a, b)
  union = area_a[:, None] + area_b[None, :] - inter
  return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0).astype(np.float32)


def box_containment(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """[N, M] intersection of boxes a[N, 4] and b[M, 4] over the smaller box's area (1: one box lies
  inside the other; empty boxes 0)."""
  inter, area_a, area_b = _overlap(a, b)
  small = np.minimum(area_a[:, None], area_b[None, :])
  return np.where(small > 0, inter / np.maximum(small, 1e-9), 0.0).astype(np.float32)


def enlarge_box(box: jnp.ndarray, margin: float, height: int, width: int) -> jnp.ndarray:
  """Grows the box by `margin` of its width/height on each side, keeps a minimum side, clips."""
  x0, y0, x1, y1 = box[0], box[1], box[2], box[3]
  bw = x1 - x0
  bh = y1 - y0
  x0, x1 = x0 - margin * bw, x1 + margin * bw
  y0, y1 = y0 - margin * bh, y1 + margin * bh
  # Keep a minimum size around the centre before clipping.
  cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
  half_w = jnp.maximum(x1 - x0, MIN_BOX_SIDE) / 2
  half_h = jnp.maximum(y1 - y0, MIN_BOX_SIDE) / 2
  x0, x1 = jnp.clip(cx - half_w, 0, width), jnp.clip(cx + half_w, 0, width)
  y0, y1 = jnp.clip(cy - half_h, 0, height), jnp.clip(cy + half_h, 0, height)
  return jnp.stack([x0, y0, x1, y1])


def scale_box(box: jnp.ndarray, factor, height: int, width: int) -> jnp.ndarray:
  """Scales the box's sides by `factor` about its centre, then clips it to the image."""
  cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
  half_w, half_h = factor * (box[2] - box[0]) / 2, factor * (box[3] - box[1]) / 2
  return jnp.stack([jnp.clip(cx - half_w, 0, width), jnp.clip(cy - half_h, 0, height),
                    jnp.clip(cx + half_w, 0, width), jnp.clip(cy + half_h, 0, height)])


def _grid(box, size):
  """Sample positions (x[S], y[S]) of an S x S grid over the box, half-pixel centred."""
  t = (jnp.arange(size, dtype=jnp.float32) + 0.5) / size
  xs = box[0] + t * (box[2] - box[0]) - 0.5
  ys = box[1] + t * (box[3] - box[1]) - 0.5
  return xs, ys


def crop_resize(image: jnp.ndarray, box: jnp.ndarray, size: int) -> jnp.ndarray:
  """Crops image[H, W, C] to the box and resizes it bilinearly to [size, size, C]."""
  xs, ys = _grid(box, size)
  gx, gy = jnp.meshgrid(xs, ys, indexing="xy")
  return jax.vmap(lambda ch: bilinear_sample(ch, gx, gy), in_axes=2, out_axes=2)(image)


def crop_flow(flow: jnp.ndarray, box: jnp.ndarray, size: int) -> jnp.ndarray:
  """Crops flow[H, W, 2] like crop_resize and rescales it to crop pixels."""
  crop = crop_resize(flow, box, size)
  scale = jnp.stack([size / (box[2] - box[0]), size / (box[3] - box[1])])
  return crop * scale


def paste(crop: jnp.ndarray, box: jnp.ndarray, height: int, width: int) -> jnp.ndarray:
  """Resizes crop[S, S] back to the box and places it in a zero [height, width] map."""
  size = crop.shape[0]
  xs = jnp.arange(width, dtype=jnp.float32) + 0.5
  ys = jnp.arange(height, dtype=jnp.float32) + 0.5
  u = (xs - box[0]) * size / (box[2] - box[0]) - 0.5
  v = (ys - box[1]) * size / (box[3] - box[1]) - 0.5
  gu, gv = jnp.meshgrid(u, v, indexing="xy")
  values = bilinear_sample(crop, gu, gv)
  inside_x = (xs >= box[0]) & (xs < box[2])
  inside_y = (ys >= box[1]) & (ys < box[3])
  return jnp.where(inside_y[:, None] & inside_x[None, :], values, 0.0)
