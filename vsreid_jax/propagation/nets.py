"""Propagation nets N_mp as pure jitted functions: (image, flow, prob crops) -> logits.

Every net takes image[N,S,S,3] (RGB, 0..255), flow[N,S,S,2] (crop pixels), prob[N,S,S,1] (0..1)
and returns logits[N,S,S,1]; sigmoid(logits) is the refined probability. N is the object count
padded to a bucket, S the crop size, so each net compiles once per (bucket, S).
"""
from typing import Callable

import jax
import jax.numpy as jnp

NetFn = Callable[[jnp.ndarray, jnp.ndarray, jnp.ndarray], jnp.ndarray]

# Probabilities are clipped to [EPS, 1-EPS] before taking logits so that sigmoid(logit(p)) == p
# up to float error and no logit is infinite.
EPS = 1e-6


def _identity(image, flow, prob):
  del image, flow
  p = jnp.clip(prob, EPS, 1 - EPS)
  return jnp.log(p) - jnp.log1p(-p)


identity_net = jax.jit(_identity)
"""Warp-only baseline: returns the warped probability unchanged (as logits)."""


def with_flip_average(fn: NetFn) -> NetFn:
  """Test-time augmentation: averages logits with those of the horizontally flipped crops.

  Flipping mirrors x, so the flow's x component changes sign.
  """

  def flipped(image, flow, prob):
    flip = lambda a: a[:, :, ::-1, :]
    flow_f = flip(flow) * jnp.array([-1.0, 1.0], flow.dtype)
    return flip(fn(flip(image), flow_f, flip(prob)))

  return jax.jit(lambda image, flow, prob: 0.5 * (fn(image, flow, prob) + flipped(image, flow, prob)))
