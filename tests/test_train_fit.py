"""train/fit.py on a tiny trainer (linear regression, one jitted step): exact resume across two
restarts, max_seconds, a checkpoint on SIGINT, the NaN guard."""
import os
import signal
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from vsreid_jax import signals
from vsreid_jax.errors import InputError
from vsreid_jax.train import checkpoint as ckpt_lib
from vsreid_jax.train import fit
from vsreid_jax.train import state as state_lib

DIM, BATCH = 4, 8
TRUE_W = np.arange(1, DIM + 1, dtype=np.float32)


def tiny_config(steps=8, **train):
  c = ml_collections.ConfigDict()
  c.model = dict(dim=DIM)
  c.train = dict(steps=steps, log_every=1, checkpoint_every=2, eval_every=2, plot_every=3, keep_checkpoints=3,
                 max_seconds=0.0)
  c.train.update(train)
  return c


def batch_of(step: int, nan_at=None):
  """Batch of step `step` + 1: a function of the step alone."""
  rng = np.random.default_rng(step)
  x = rng.normal(size=(BATCH, DIM)).astype(np.float32)
  y = x @ TRUE_W + 0.1 * rng.normal(size=BATCH).astype(np.float32)
  if nan_at is not None and step + 1 == nan_at:
    x[0, 0] = np.nan
  return dict(x=x, y=y)


class Model:
  """A stand-in flax module: apply(variables, x) = x @ w + b."""

  @staticmethod
  def apply(variables, x):
    p = variables["params"]
    return x @ p["w"] + p["b"]


tx = optax.sgd(0.2)
schedule = optax.constant_schedule(0.2)


@jax.jit
def _step(state, batch):
  def loss_fn(params):
    pred = Model.apply({"params": params}, batch["x"])
    return jnp.mean((pred - batch["y"]) ** 2)

  loss, grads = jax.value_and_grad(loss_fn)(state.params)
  return state.apply_gradients(grads=grads), dict(loss=loss, grad_norm=optax.tree.norm(grads))


def tiny_trainer(nan_at=None, on_step=None, sleep=0.0, prefetch=1):
  made = []

  def init_state(restoring):
    del restoring
    params = {"w": jnp.zeros((DIM,), jnp.float32), "b": jnp.zeros((), jnp.float32)}
    return state_lib.TrainState.create(apply_fn=Model.apply, params=params, tx=tx, batch_stats={})

  def step_fn(state, batch):
    if sleep:
      time.sleep(sleep)
    if on_step is not None:
      on_step(int(state.step))  # the steps done before this one
    return _step(state, batch)

  def batches(start, position):
    assert position == start * BATCH
    s = start
    while True:
      made.append(s)
      yield batch_of(s, nan_at)
      s += 1

  def eval_fn(state, step):
    del step
    return {"w_error": float(jnp.abs(state.params["w"] - TRUE_W).mean())}

  tr = fit.Trainer(init_state=init_state, step_fn=step_fn, batches=batches, batch_size=BATCH, schedule=schedule,
                   fields=("step", "loss", "grad_norm", "lr", "seconds"), eval_fn=eval_fn, eval_keys=("w_error",),
                   prefetch=prefetch)
  return tr, made


def _leaves(state):
  return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(state))]


def _run(workdir, config=None, **kw):
  opts = {k: kw.pop(k) for k in ("nan_at", "on_step", "sleep", "prefetch") if k in kw}
  tr, _ = tiny_trainer(**opts)
  return fit.fit(tr, config or tiny_config(), str(workdir), progress=False, **kw)


def _steps(workdir):
  return sorted(ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints")).manager.all_steps())


def test_resume_across_two_restarts_is_exact(tmp_path):
  full = _run(tmp_path / "full")
  assert full["train_rows"][-1]["loss"] < 0.5 * full["train_rows"][0]["loss"]  # it learns
  first = _run(tmp_path / "w", stop_at=3, prefetch=0)
  assert int(first["state"].step) == 3
  again = _run(tmp_path / "w", resume=True, stop_at=5, prefetch=3)
  assert int(again["state"].step) == 5
  resumed = _run(tmp_path / "w", resume=True)
  for a, b in zip(_leaves(full["state"]), _leaves(resumed["state"])):
    np.testing.assert_array_equal(a, b)
  curve = lambda rows: [(r["step"], r["loss"], r["grad_norm"], r["lr"]) for r in rows]
  assert curve(full["train_rows"]) == curve(resumed["train_rows"])
  assert [r["step"] for r in full["eval_rows"]] == [2, 4, 6, 8]
  assert [r["step"] for r in resumed["eval_rows"]] == [2, 3, 4, 5, 6, 8]  # each stop evaluates too
  for f in ("metrics.csv", "eval.csv", "metrics.png", "config.json"):
    assert os.path.isfile(tmp_path / "w" / f)
  assert _steps(tmp_path / "w") == [5, 6, 8]  # keep_checkpoints 3: each stop saved too (3, 5)
  with pytest.raises(InputError, match="--resume"):  # a workdir with checkpoints is not overwritten
    _run(tmp_path / "w")


def test_max_seconds_stops_with_a_checkpoint_and_resume_finishes_the_run(tmp_path):
  config = tiny_config(steps=40, checkpoint_every=100, max_seconds=0.6)
  out = _run(tmp_path / "w", config, sleep=0.1)
  stopped = int(out["state"].step)
  assert 1 <= stopped < 40
  assert _steps(tmp_path / "w") == [stopped]  # none periodic (every 100): saved because time ran out
  config.train.max_seconds = 0.0
  done = _run(tmp_path / "w", config, resume=True)
  full = _run(tmp_path / "full", config)
  for a, b in zip(_leaves(full["state"]), _leaves(done["state"])):
    np.testing.assert_array_equal(a, b)


def test_sigint_saves_a_checkpoint_of_the_last_whole_step(tmp_path):
  def interrupt(done):
    if done == 5:
      os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in step 6, after 5 whole steps (checkpoints every 2)

  with signals.handled():
    with pytest.raises(signals.Interrupted):
      _run(tmp_path / "w", on_step=interrupt)
  saved = _steps(tmp_path / "w")
  assert saved[-1] == 5, saved
  resumed = _run(tmp_path / "w", resume=True)
  full = _run(tmp_path / "full")
  for a, b in zip(_leaves(full["state"]), _leaves(resumed["state"])):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("log_every", [1, 4])
def test_nan_guard_stops_and_keeps_the_last_good_checkpoint(tmp_path, log_every):
  # NaN at step 5; checkpoints every 2. Logged every 4 steps, the NaN is seen only when step 6 would
  # be saved: that checkpoint must not be written either.
  config = tiny_config(log_every=log_every)
  with pytest.raises(fit.Diverged, match=r"/w: step 5 gave non-finite .*loss=nan.*the last good checkpoint is step 4"):
    _run(tmp_path / "w", config, nan_at=5)
  assert _steps(tmp_path / "w") == [2, 4]
  ckpt = ckpt_lib.Checkpointer(tmp_path / "w" / "checkpoints")
  tr, _ = tiny_trainer()
  state, data = ckpt.restore(tr.init_state(True))
  ckpt.close()
  assert int(state.step) == 4 and data["position"] == 4 * BATCH
  assert all(np.isfinite(x).all() for x in _leaves(state))
  # Resumed without the bad batch, the run finishes as if it had never diverged.
  resumed = _run(tmp_path / "w", config, resume=True)
  full = _run(tmp_path / "full", config)
  for a, b in zip(_leaves(full["state"]), _leaves(resumed["state"])):
    np.testing.assert_array_equal(a, b)


def test_due_runs_every_n_steps_and_at_the_stop():
  assert [s for s in range(1, 11) if fit.due(s, 3, 10)] == [3, 6, 9, 10]
  assert [s for s in range(1, 11) if fit.due(s, 0, 10)] == [10]
