"""The train loop: a run killed after N steps and resumed for M more ends exactly where an
uninterrupted N+M-step run ends (same params bit for bit, same logged losses)."""
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vsreid_jax.configs import train_propagation
from vsreid_jax.errors import InputError
from vsreid_jax.train import checkpoint as ckpt_lib
from vsreid_jax.train import loop

S = 17


class TinyNet(nn.Module):
  """Stand-in N_mp (real apply signature) with BatchNorm and dropout, so both are resumed."""

  @nn.compact
  def __call__(self, image, flow, prob, train: bool = False):
    x = jnp.concatenate([image / 127.5 - 1.0, flow / 8.0, prob], axis=-1)
    x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(nn.Conv(8, (3, 3))(x)))
    x = nn.Dropout(0.25, deterministic=not train)(x)
    return nn.Conv(1, (3, 3))(x) + 4.0 * (prob - 0.5)


@pytest.fixture(scope="module")
def config(two_clip_dir, tmp_path_factory):
  c = train_propagation.get_config("paper_r101")
  d = c.data
  d.source = "python"  # the tfds source is covered in test_train_propagation_examples
  d.data_dir, d.roots, d.held_out = str(two_clip_dir), (("davis", "480p"),), ("b",)
  d.crop_size, d.batch_size, d.batch_per_device, d.num_val_examples = S, 4, 0, 6
  d.prior_probs = (1.0, 1.0, 1.0)
  d.cache_dir = str(tmp_path_factory.mktemp("cache"))
  c.optimizer.name, c.optimizer.schedule, c.optimizer.lr, c.optimizer.warmup_steps = "adamw", "cosine", 3e-3, 2
  c.optimizer.grad_clip_norm = 1.0
  c.train.update(steps=10, log_every=1, checkpoint_every=2, eval_every=2, plot_every=3, keep_checkpoints=2)
  return c


def _run(config, workdir, **kw):
  return loop.train(config, str(workdir), model=TinyNet(), progress=False, **kw)


def test_resume_continues_exactly(config, tmp_path):
  n, m, r = 3, 3, 2
  full = _run(config, tmp_path / "full", stop_at=n + m + r)
  first = _run(config, tmp_path / "killed", stop_at=n)
  assert int(first["state"].step) == n
  # A fresh loop that knows only the workdir (and the same config), killed again after m steps
  # and resumed once more: the second resume starts from a checkpoint a resumed run wrote.
  again = _run(config, tmp_path / "killed", resume=True, stop_at=n + m)
  assert int(again["state"].step) == n + m
  resumed = _run(config, tmp_path / "killed", resume=True, stop_at=n + m + r)
  assert int(resumed["state"].step) == n + m + r
  for a, b in zip(jax.tree.leaves(jax.device_get(full["state"])), jax.tree.leaves(jax.device_get(resumed["state"]))):
    np.testing.assert_array_equal(a, b)  # bit for bit: same batches, dropout bits and XLA program
  curve = lambda rows: [(r["step"], r["loss"], r["bce"], r["iou"], r["grad_norm"], r["lr"]) for r in rows]
  assert [r["step"] for r in full["train_rows"]] == list(range(1, n + m + r + 1))
  assert curve(full["train_rows"]) == curve(resumed["train_rows"])
  # Eval runs every 2 steps and at each stop: the killed run also evaluated its last step, 3.
  assert [r["step"] for r in full["eval_rows"]] == [2, 4, 6, 8]
  assert [r["step"] for r in resumed["eval_rows"]] == [2, 3, 4, 6, 8]
  assert full["eval_rows"] == [r for r in resumed["eval_rows"] if r["step"] != 3]
  for f in ("metrics.csv", "eval.csv", "metrics.png", "config.json"):
    assert os.path.isfile(tmp_path / "killed" / f)
  # Only the last `keep_checkpoints` remain.
  assert sorted(ckpt_lib.Checkpointer(tmp_path / "killed" / "checkpoints").manager.all_steps()) == [6, 8]


def test_resume_rewrites_the_logged_tail_and_calls_the_eval_hook(config, tmp_path):
  """A run killed between checkpoints logged steps it will redo: the resumed CSV has no duplicates.
  Also: a user eval hook (the end-to-end J&F slot) runs every eval_every steps and at each stop."""
  calls = []

  def eval_fn(state, step):
    del state
    calls.append(step)
    return {"j_and_f": 0.5 + step / 100}

  _run(config, tmp_path / "w", stop_at=3, eval_fn=eval_fn)
  with pytest.raises(InputError, match="--resume"):  # a workdir with checkpoints is not overwritten
    _run(config, tmp_path / "w", stop_at=5)
  metrics = loop.metrics_lib.CsvLog(tmp_path / "w" / "metrics.csv")
  metrics.append(dict(step=4, loss=9.0))  # as if killed after logging step 4, before its checkpoint
  out = _run(config, tmp_path / "w", resume=True, stop_at=5, eval_fn=eval_fn)
  assert [r["step"] for r in out["train_rows"]] == [1, 2, 3, 4, 5]
  assert out["train_rows"][3]["loss"] != 9.0
  assert calls == [2, 3, 4, 5]
  assert [r["j_and_f"] for r in out["eval_rows"]] == [0.52, 0.53, 0.54, 0.55]
