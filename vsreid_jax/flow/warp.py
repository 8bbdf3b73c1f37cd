"""Bilinear backward warping W of probability maps, in JAX.

`warp(prob[K,H,W], flow[H,W,2])[k, y, x] = prob[k, y + flow[y,x,1], x + flow[y,x,0]]`, sampled
bilinearly. To carry frame i-1's map onto frame i, pass the backward flow i -> i-1.
Border: sample positions are clamped to the image (replicate border, cv2.BORDER_REPLICATE), so an
object touching the frame edge keeps its edge values instead of fading to zero.
"""

import jax
import jax.numpy as jnp

from vsreid_jax.geometry import bilinear_sample


def warp_single(prob: jnp.ndarray, flow: jnp.ndarray) -> jnp.ndarray:
  """Backward-warps one map prob[H, W] with flow[H, W, 2]."""
  h, w = prob.shape
  ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")
  return bilinear_sample(prob, xs + flow[..., 0], ys + flow[..., 1])


@jax.jit
def warp(prob: jnp.ndarray, flow: jnp.ndarray) -> jnp.ndarray:
  """Backward-warps K maps prob[K, H, W] with one flow[H, W, 2] (vmapped over objects)."""
  return jax.vmap(warp_single, in_axes=(0, None))(prob, flow)
