"""Supervised contrastive loss (SupCon, Khosla et al. 2020) over a batch of L2-normalised embeddings.

labels[i] >= 0 is the identity of crop i (one object of one sequence of one root): crops of the same
identity, from other frames or augmented anew, are each other's positives. labels[i] < 0 marks a
crop that is nobody's positive (background and partial boxes): it is never an anchor, only a
negative in every other crop's denominator, so the net learns to push half-objects and scenery away
from every template.
"""
import jax
import jax.numpy as jnp

NO_IDENTITY = -1  # label of background and partial crops


def positive_mask(labels: jnp.ndarray) -> jnp.ndarray:
  """[N, N] bool: same identity, both labelled, not the crop itself."""
  same = labels[:, None] == labels[None, :]
  return same & (labels[:, None] >= 0) & ~jnp.eye(labels.shape[0], dtype=bool)


def supcon_loss(embeddings: jnp.ndarray, labels: jnp.ndarray, temperature: float) -> jnp.ndarray:
  """Mean over anchors with at least one positive of -mean_p log softmax_a(s_ia / t)[p], a != i."""
  n = labels.shape[0]
  logits = embeddings @ embeddings.T / temperature
  logits = jnp.where(jnp.eye(n, dtype=bool), -jnp.inf, logits)
  log_prob = logits - jax.nn.logsumexp(logits, axis=1, keepdims=True)
  pos = positive_mask(labels)
  n_pos = pos.sum(axis=1)
  per_anchor = -jnp.where(pos, log_prob, 0.0).sum(axis=1) / jnp.maximum(n_pos, 1)
  anchors = n_pos > 0
  return jnp.where(anchors, per_anchor, 0.0).sum() / jnp.maximum(anchors.sum(), 1)


def batch_metrics(embeddings: jnp.ndarray, labels: jnp.ndarray) -> dict:
  """In-batch rank-1 (an anchor's most similar other crop is a positive) and mean similarities."""
  n = labels.shape[0]
  sim = embeddings @ embeddings.T
  pos = positive_mask(labels)
  anchors = pos.any(axis=1)
  neg = ~pos & ~jnp.eye(n, dtype=bool) & anchors[:, None]
  nearest = jnp.argmax(jnp.where(jnp.eye(n, dtype=bool), -jnp.inf, sim), axis=1)
  hit = pos[jnp.arange(n), nearest]
  n_anchors = jnp.maximum(anchors.sum(), 1)
  return dict(rank1=jnp.where(anchors, hit, False).sum() / n_anchors,
              pos_sim=jnp.where(pos, sim, 0.0).sum() / jnp.maximum(pos.sum(), 1),
              neg_sim=jnp.where(neg, sim, 0.0).sum() / jnp.maximum(neg.sum(), 1))
