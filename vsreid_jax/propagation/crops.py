"""Boxes, crops and paste-back for Algorithm 1, as pure JAX with static output shapes.

Boxes are continuous pixel rectangles (x0, y0, x1, y1): the mask box covers pixel centres
x0 + 0.5 .. x1 - 0.5. Crops sample a fixed S x S grid over the box (the cv2.resize
half-pixel convention), so the crop shape never depends on the box and nothing recompiles
when an object moves or grows. Paste-back samples the S x S result at every full-frame pixel
inside the box; outside it the map is 0.
"""
import jax
import jax.numpy as jnp

from vsreid_jax.flow.warp import bilinear_sample

# Boxes are never thinner than this (pixels), so a one-pixel object still gets a usable crop.
MIN_BOX_SIDE = 8.0


def mask_box(prob: jnp.ndarray, threshold: float = 0.5):
  """Box of prob[H, W] > threshold as (x0, y0, x1, y1) float32, and whether any pixel is set."""
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
