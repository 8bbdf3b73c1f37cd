"""Loss, data-parallel train step and eval step for N_mp.

Data parallelism is `jax.jit` over a 1-D device mesh ("data"): the state is replicated, the
batch sharded along its first axis, and XLA's SPMD partitioner inserts the all-reduces. (In jax
0.10 `jax.pmap` is documented as the "old way", itself built on jit + shard_map.) The step is
written for the global batch, so BatchNorm in train mode normalises with global-batch statistics
(equivalent to sync BN) and gradients are global-batch means: N devices compute the same update
as one device, up to float summation order. With one device it is the plain jitted step.

Loss: per-pixel sigmoid binary cross-entropy against the (soft, bilinearly cropped) GT, plus
`soft_iou_weight` x soft-IoU loss (1 - sum(p t) / sum(p + t - p t), per crop).
"""
import functools

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

# The device mesh and its shardings are distributed.py's (one place for how work is spread).
from vsreid_jax.distributed import data_sharded, make_mesh, replicated  # pylint: disable=unused-import
from vsreid_jax.distributed import shard_batch_local as shard_batch  # pylint: disable=unused-import


def bce(logits, target):
  return optax.sigmoid_binary_cross_entropy(logits, target).mean()


def soft_iou_loss(logits, target):
  p = jax.nn.sigmoid(logits)
  inter = jnp.sum(p * target, axis=(1, 2, 3))
  union = jnp.sum(p + target - p * target, axis=(1, 2, 3))
  return jnp.mean(1.0 - (inter + 1.0) / (union + 1.0))


def iou(logits_or_prob, target, *, is_prob=False):
  """Per-crop IoU of (prob > 0.5) against (target > 0.5); 1 when both are empty."""
  pred = (logits_or_prob > (0.5 if is_prob else 0.0))
  gt = target > 0.5
  inter = jnp.sum(pred & gt, axis=(1, 2, 3))
  union = jnp.sum(pred | gt, axis=(1, 2, 3))
  return jnp.where(union > 0, inter / jnp.maximum(union, 1), 1.0)


def train_step(state, batch, base_rng, *, soft_iou_weight: float = 0.0, return_logits: bool = False):
  """One SGD step on the global batch; returns the new state and scalar metrics (and, with
  `return_logits`, the train-mode logits [N,S,S,1] of the batch: unrolled training feeds them on)."""
  rng = jax.random.fold_in(base_rng, state.step)  # a function of the step: resumable

  def loss_fn(params):
    logits, updates = state.apply_fn(
        {"params": params, "batch_stats": state.batch_stats}, batch["image"], batch["flow"], batch["prior"],
        train=True, rngs={"dropout": rng}, mutable=["batch_stats"])
    logits = logits.astype(jnp.float32)
    loss_bce = bce(logits, batch["target"])
    loss = loss_bce + soft_iou_weight * soft_iou_loss(logits, batch["target"]) if soft_iou_weight else loss_bce
    return loss, (logits, updates.get("batch_stats", {}), loss_bce)

  (loss, (logits, batch_stats, loss_bce)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  metrics = dict(loss=loss, bce=loss_bce, iou=iou(logits, batch["target"]).mean(),
                 grad_norm=optax.tree.norm(grads))
  if return_logits:
    return state, metrics, logits
  return state, metrics


def make_train_step(mesh: Mesh, base_rng, *, soft_iou_weight: float = 0.0, return_logits: bool = False):
  """jit(train_step) with the state replicated and donated, the batch sharded over `mesh`."""
  step = functools.partial(train_step, base_rng=base_rng, soft_iou_weight=soft_iou_weight,
                           return_logits=return_logits)
  out = (replicated(mesh), replicated(mesh)) + ((data_sharded(mesh),) if return_logits else ())
  return jax.jit(step, in_shardings=(replicated(mesh), data_sharded(mesh)), out_shardings=out, donate_argnums=0)


def eval_step(state, batch):
  """Inference-mode logits on a batch: per-crop IoU of the net and of the prior itself."""
  logits = state.apply_fn({"params": state.params, "batch_stats": state.batch_stats}, batch["image"],
                          batch["flow"], batch["prior"], train=False).astype(jnp.float32)
  return dict(iou=iou(logits, batch["target"]), prior_iou=iou(batch["prior"], batch["target"], is_prob=True),
              bce=optax.sigmoid_binary_cross_entropy(logits, batch["target"]).mean(axis=(1, 2, 3)))


def make_eval_step(mesh: Mesh):
  return jax.jit(eval_step, in_shardings=(replicated(mesh), data_sharded(mesh)),
                 out_shardings=replicated(mesh))
