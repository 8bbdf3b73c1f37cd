"""Merging K per-object probability maps into one id mask (the paper's final step)."""
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


def merge_to_ids(prob, object_ids) -> np.ndarray:
  """Merges prob[Kb,H,W] (first len(object_ids) real, the rest padding) into a uint8 id mask."""
  k = len(object_ids)
  index = np.asarray(merge_probs(prob[:k]))
  lut = np.concatenate([[0], np.asarray(object_ids)]).astype(np.uint8)
  return lut[index]
