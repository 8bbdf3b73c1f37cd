"""Train state (params + BatchNorm statistics + optimiser) and the optimiser built from a config."""
from typing import Any, Callable, Tuple

import flax
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state


class TrainState(train_state.TrainState):
  """flax's TrainState plus the BatchNorm running statistics (flax examples/imagenet)."""
  batch_stats: Any = None


def learning_rate_schedule(opt, total_steps: int) -> Callable:
  """`poly` (DeepLab: lr * (1 - t/T)^power after a linear warmup) or `cosine` (warmup + cosine)."""
  warmup = int(opt.get("warmup_steps", 0))
  end = opt.lr * opt.get("end_lr_factor", 0.0)
  if opt.schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(0.0, opt.lr, warmup, max(total_steps, warmup + 1), end)
  if opt.schedule == "poly":
    decay = optax.polynomial_schedule(opt.lr, end, opt.poly_power, max(total_steps - warmup, 1))
    if not warmup:
      return decay
    return optax.join_schedules([optax.linear_schedule(0.0, opt.lr, warmup), decay], [warmup])
  if opt.schedule == "constant":
    return optax.constant_schedule(opt.lr)
  raise ValueError(f"unknown optimizer.schedule {opt.schedule!r}; use poly, cosine or constant")


def decay_mask(params):
  """Weight decay on conv/dense kernels only, not on biases or BatchNorm scales."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(opt, total_steps: int) -> Tuple[optax.GradientTransformation, Callable]:
  """SGD + momentum with a poly schedule (DeepLab's published recipe, which the original's Caffe-era
  DeepLab nets used; neither the paper's text nor public code gives the original's training
  hyper-parameters, so the values in configs/train_propagation.py are ours) or AdamW (ours, the
  CPU net's), with optional global-norm clipping (ours)."""
  schedule = learning_rate_schedule(opt, total_steps)
  if opt.name == "sgd":
    tx = optax.chain(optax.add_decayed_weights(opt.weight_decay, mask=decay_mask),
                     optax.sgd(schedule, momentum=opt.momentum, nesterov=opt.get("nesterov", False)))
  elif opt.name == "adamw":
    tx = optax.adamw(schedule, b1=opt.get("b1", 0.9), b2=opt.get("b2", 0.999),
                     weight_decay=opt.weight_decay, mask=decay_mask)
  else:
    raise ValueError(f"unknown optimizer.name {opt.name!r}; use sgd or adamw")
  if opt.get("grad_clip_norm", 0):
    tx = optax.chain(optax.clip_by_global_norm(opt.grad_clip_norm), tx)
  return tx, schedule


def init_variables(model, rng, crop_size: int):
  """Model variables from dummy [1, S, S, *] inputs (inference mode: no dropout rng needed)."""
  z = lambda c: jnp.zeros((1, crop_size, crop_size, c), jnp.float32)
  return jax.jit(lambda r: model.init(r, z(3), z(2), z(1), train=False))(rng)


def create_train_state(model, variables, tx) -> TrainState:
  variables = flax.core.unfreeze(variables)
  state = TrainState.create(apply_fn=model.apply, params=variables["params"],
                            batch_stats=variables.get("batch_stats", {}), tx=tx)
  # A strongly typed step, as a restored checkpoint has: a weak-typed 0 would make the resumed
  # run's step function a different signature and compile again.
  return state.replace(step=jnp.zeros((), jnp.int32))
