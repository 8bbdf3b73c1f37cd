"""Bilinear backward warping W of probability maps, in JAX.

`warp(prob[K,H,W], flow[H,W,2])[k, y, x] = prob[k, y + flow[y,x,1], x + flow[y,x,0]]`, sampled
bilinearly. To carry frame i-1's map onto frame i, pass the backward flow i -> i-1.
Border: sample positions are clamped to the image (replicate border, cv2.BORDER_REPLICATE), so an
object touching the frame edge keeps its edge values instead of fading to zero.
"""
import functools

import jax
import jax.numpy as jnp


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


def warp_single(prob: jnp.ndarray, flow: jnp.ndarray) -> jnp.ndarray:
  """Backward-warps one map prob[H, W] with flow[H, W, 2]."""
  h, w = prob.shape
  ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")
  return bilinear_sample(prob, xs + flow[..., 0], ys + flow[..., 1])


@jax.jit
def warp(prob: jnp.ndarray, flow: jnp.ndarray) -> jnp.ndarray:
  """Backward-warps K maps prob[K, H, W] with one flow[H, W, 2] (vmapped over objects)."""
  return jax.vmap(warp_single, in_axes=(0, None))(prob, flow)
