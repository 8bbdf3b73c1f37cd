"""Training the ReID net: SupCon on ReIDBatches, AdamW; its Trainer, run by train/fit.py.

Batches and dropout-free steps are functions of the step, so a checkpoint holds everything needed
to continue exactly (`resume=True`): the batches, parameters and logged losses are those of an
uninterrupted run. Files in workdir: checkpoints/, metrics.csv, metrics.png, config.json.
"""
import functools
import itertools
import json
import time
from typing import Callable, Optional

import jax
import ml_collections
import optax

from vsreid_jax import distributed
from vsreid_jax.models.propagation import numpy_init
from vsreid_jax.reid import losses
from vsreid_jax.reid import model as model_lib
from vsreid_jax.train import fit as fit_lib
from vsreid_jax.train import state as state_lib
from vsreid_jax.train import step as step_lib

TRAIN_FIELDS = ("step", "loss", "rank1", "pos_sim", "neg_sim", "grad_norm", "lr", "seconds")


def init_state(model, config, tx, seed: int = 0) -> state_lib.TrainState:
  """Host-side He init (models/propagation.numpy_init): no per-shape sampler to compile."""
  variables = numpy_init(model, model_lib.dummy_crops(config.crop_size), seed=seed, train=False)
  return state_lib.create_train_state(model, variables, tx)


def train_step(state, crops, labels, *, temperature: float):
  def loss_fn(params):
    emb, updates = state.apply_fn({"params": params, "batch_stats": state.batch_stats}, crops, train=True,
                                  mutable=["batch_stats"])
    return losses.supcon_loss(emb, labels, temperature), (emb, updates["batch_stats"])

  (loss, (emb, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  metrics = dict(loss=loss, grad_norm=optax.tree.norm(grads),
                 **losses.batch_metrics(jax.lax.stop_gradient(emb), labels))
  return state, metrics


# One module and one optimiser object per config: the state's apply_fn and tx are static parts of
# the jitted step's signature, so a second train() in a process (resume, tests) reuses its compile.
@functools.lru_cache(maxsize=None)
def _model(model_json: str):
  return model_lib.build_model(ml_collections.ConfigDict(json.loads(model_json)))


@functools.lru_cache(maxsize=None)
def _optimizer(optimizer_json: str, steps: int):
  return state_lib.make_optimizer(ml_collections.ConfigDict(json.loads(optimizer_json)), steps)


@functools.lru_cache(maxsize=None)
def make_train_step(temperature: float, mesh=None) -> Callable:
  """One jitted step per temperature (and device mesh): a second train() in a process (resume,
  tests) reuses it. Over a mesh the state is replicated and the batch sharded along it: the loss,
  BatchNorm statistics and gradients are those of the global batch (multi-process jobs too)."""
  step = functools.partial(train_step, temperature=temperature)
  if mesh is None:
    return jax.jit(step, donate_argnums=0)
  rep, dat = step_lib.replicated(mesh), step_lib.data_sharded(mesh)
  return jax.jit(step, in_shardings=(rep, dat, dat), out_shardings=(rep, rep), donate_argnums=0)


def trainer(config, batches) -> fit_lib.Trainer:
  """The ReID net's Trainer (train/fit.py). batches: an object with batch(step) -> {"crops",
  "labels"} (data.ReIDBatches or a synthetic one), a function of the step."""
  t = config.train
  model = _model(config.model.to_json())
  tx, schedule = _optimizer(config.optimizer.to_json(), t.steps)
  mesh = step_lib.make_mesh()  # every device of every process (vsreid_jax/distributed.py)
  jitted = make_train_step(config.loss.temperature, mesh)

  def init(restoring):
    del restoring
    return jax.device_put(init_state(model, config, tx, t.seed), step_lib.replicated(mesh))

  def make(start, position):
    del position  # batch i feeds step i + 1: a function of the step alone
    for s in itertools.count(start):
      yield batches.batch(s)

  def step_fn(state, b):
    # Multi-process: every process makes the whole batch (a function of the step) and keeps its rows.
    b = distributed.shard_batch(b, mesh, len(b["labels"]))
    return jitted(state, b["crops"], b["labels"])

  # Examples per step, where the batches say (only for the logged position: batches follow the step).
  batch_size = int(getattr(batches, "batch_size", 0) or 0)
  return fit_lib.Trainer(init_state=init, step_fn=step_fn, batches=make, batch_size=batch_size,
                         schedule=schedule, fields=TRAIN_FIELDS, desc="train reid")


def train(config, workdir: str, batches, *, resume: bool = False, stop_at: Optional[int] = None,
          progress: bool = True):
  """Trains until config.train.steps (or stop_at, or train.max_seconds) with train/fit.py; returns
  {"state", "rows"}.

  batches: an object with batch(step) -> {"crops", "labels"} (data.ReIDBatches or a synthetic one).
  """
  started = time.perf_counter()
  out = fit_lib.fit(trainer(config, batches), config, workdir, resume=resume, stop_at=stop_at,
                    progress=progress, started=started)
  return dict(state=out["state"], rows=out["train_rows"])
