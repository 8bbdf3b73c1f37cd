"""Merging K per-object probability maps into one id mask (the paper's final step).

"argmax": the paper's. "occlusion": where several objects claim a pixel (P > 0.5), the object of
highest priority takes it (the solver's: newest from its checkpoint, then most ReID evidence);
elsewhere the argmax.
"""
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np


@jax.jit
def merge_probs(prob: jnp.ndarray) -> jnp.ndarray:
  """prob[K,H,W] -> index[H,W] in 0..K: argmax of [prod_k(1 - P_k), P_1, ..., P_K].

  The normalisation of the K+1 scores by their sum does not change the argmax but is kept so the
  scores are the probabilities the paper describes. Index 0 is background, k the k-th object.
  """
  bg = jnp.prod(1.0 - prob, axis=0, keepdims=True)
  scores = jnp.concatenate([bg, prob], axis=0)
  scores = scores / jnp.maximum(jnp.sum(scores, axis=0, keepdims=True), 1e-12)
  return jnp.argmax(scores, axis=0)


MERGES = ("argmax", "occlusion")


@jax.jit
def merge_probs_priority(prob: jnp.ndarray, priority: jnp.ndarray, threshold: float = 0.5) -> jnp.ndarray:
  """prob[K,H,W], priority[K] -> index[H,W] in 0..K: merge_probs, except that a pixel claimed
  (P > threshold) by two or more objects goes to the claimant of highest priority."""
  claimed = prob > threshold
  contested = jnp.sum(claimed, axis=0) >= 2
  winner = jnp.argmax(jnp.where(claimed, priority[:, None, None], -jnp.inf), axis=0) + 1
  return jnp.where(contested, winner, merge_probs(prob))


def merge_to_ids(prob, object_ids, priority: Optional[jnp.ndarray] = None) -> np.ndarray:
  """Merges prob[Kb,H,W] (first len(object_ids) real, the rest padding) into a uint8 id mask;
  with priority[Kb], contested pixels go by priority (merge_probs_priority)."""
  k = len(object_ids)
  if priority is None:
    index = np.asarray(merge_probs(prob[:k]))
  else:
    index = np.asarray(merge_probs_priority(prob[:k], priority[:k]))
  lut = np.concatenate([[0], np.asarray(object_ids)]).astype(np.uint8)
  return lut[index]
