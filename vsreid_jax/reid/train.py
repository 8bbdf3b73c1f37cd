"""Training the ReID net: SupCon on ReIDBatches, AdamW, orbax checkpoints, CSV/PNG metrics.

Batches and dropout-free steps are functions of the step, so a checkpoint holds everything needed
to continue exactly (`resume=True`): the batches, parameters and logged losses are those of an
uninterrupted run. Files in workdir: checkpoints/, metrics.csv, metrics.png, config.json.
"""
import concurrent.futures
import functools
import json
import os
import time
from typing import Callable, Optional

import jax
import ml_collections
import optax
import tqdm

from vsreid_jax import distributed
from vsreid_jax.models.propagation import numpy_init
from vsreid_jax.reid import losses
from vsreid_jax.reid import model as model_lib
from vsreid_jax.train import checkpoint as ckpt_lib
from vsreid_jax.train import metrics as metrics_lib
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


def train(config, workdir: str, batches, *, resume: bool = False, stop_at: Optional[int] = None,
          progress: bool = True):
  """Trains until config.train.steps (or stop_at, or train.max_seconds); returns the state and rows.

  batches: an object with batch(step) -> {"crops", "labels"} (data.ReIDBatches or a synthetic one).
  """
  t_start = time.perf_counter()
  t = config.train
  workdir = os.path.abspath(workdir)
  ckpt = ckpt_lib.open_workdir(workdir, config, t.keep_checkpoints, resume)
  model = _model(config.model.to_json())
  tx, schedule = _optimizer(config.optimizer.to_json(), t.steps)
  mesh = step_lib.make_mesh()  # every device of every process (vsreid_jax/distributed.py)
  state = jax.device_put(init_state(model, config, tx, t.seed), step_lib.replicated(mesh))
  main = distributed.is_main()  # process 0 alone writes logs and plots
  log = metrics_lib.CsvLog(os.path.join(workdir, "metrics.csv"), TRAIN_FIELDS) if main else distributed.MemoryLog()
  if resume and ckpt.latest_step() is not None:
    state, _ = ckpt.restore(state)
  start = int(jax.device_get(state.step))
  if os.path.isfile(log.path):
    log.truncate(start)  # drop what a killed run logged after its checkpoint
  stop = min(stop_at if stop_at is not None else t.steps, t.steps)
  step_fn = make_train_step(config.loss.temperature, mesh)

  def save(step):
    if ckpt.latest_step() != step:
      ckpt.save(step, state, dict(step=step))

  def plot():
    if main:
      metrics_lib.plot(os.path.join(workdir, "metrics.png"), log.rows(), None, train_keys=("loss",))

  window = metrics_lib.StepWindow(start)
  bar = tqdm.tqdm(total=stop, initial=start, desc="train reid", disable=not (progress and main), dynamic_ncols=True)
  pool = concurrent.futures.ThreadPoolExecutor(1)  # makes the next batch while this step runs
  pending = pool.submit(batches.batch, start)
  try:
    for step in range(start + 1, stop + 1):
      b = pending.result()  # batch i feeds step i + 1: a function of the step alone
      pending = pool.submit(batches.batch, step)
      # Multi-process: every process makes the whole batch (a function of the step) and keeps its rows.
      b = distributed.shard_batch(b, mesh, len(b["labels"]))
      state, m = step_fn(state, b["crops"], b["labels"])
      window.add(step, m)
      bar.update()
      if step % t.log_every == 0 or step == stop:
        row = window.row(step, float(schedule(step - 1)))
        log.append(row)
        bar.set_postfix(loss=f"{row['loss']:.3f}", rank1=f"{row['rank1']:.2f}", s_step=f"{row['seconds']:.2f}")
      with window.paused():
        if step % t.checkpoint_every == 0 or step == stop:
          save(step)
        if step % t.plot_every == 0 or step == stop:
          plot()
      if (t.get("max_seconds", 0) and distributed.agree(time.perf_counter() - t_start > t.max_seconds)
          and step < stop):
        save(step)
        plot()
        tqdm.tqdm.write(f"train.max_seconds={t.max_seconds} reached at step {step}; checkpoint saved")
        break
  finally:
    pool.shutdown(wait=True, cancel_futures=True)
    bar.close()
    ckpt.close()
  return dict(state=state, rows=log.rows())
