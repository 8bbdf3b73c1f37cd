"""The data-parallel step on 8 simulated CPU devices equals the 1-device step on the same batch.

BatchNorm runs in train mode on both sides: the step is jit over a device mesh (GSPMD), written
for the global batch, so batch statistics are global-batch statistics on 8 devices too (sync
BN), and the comparison covers BN, dropout (same random bits whatever the sharding) and the
optimiser. The 8-device run needs XLA_FLAGS set before jax starts, so it runs in a subprocess:
this file is also the script (`python tests/test_train_step.py` prints a JSON report).
"""
import json
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

S = 17
BATCH = 16


class TinyNet(nn.Module):
  """Stand-in N_mp with the real apply signature: conv, BatchNorm, dropout, conv + prior logit."""

  @nn.compact
  def __call__(self, image, flow, prob, train: bool = False):
    x = jnp.concatenate([image / 127.5 - 1.0, flow / 8.0, prob], axis=-1)
    x = nn.Conv(8, (3, 3))(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
    x = nn.relu(x)
    x = nn.Dropout(0.25, deterministic=not train)(x)
    return nn.Conv(1, (3, 3))(x) + 4.0 * (prob - 0.5)


def random_batch(seed, n=BATCH, size=S):
  rng = np.random.default_rng(seed)
  prior = rng.random((n, size, size, 1)).astype(np.float32)
  return dict(image=rng.uniform(0, 255, (n, size, size, 3)).astype(np.float32),
              flow=rng.normal(0, 3, (n, size, size, 2)).astype(np.float32), prior=prior,
              target=(prior + rng.normal(0, 0.3, prior.shape) > 0.5).astype(np.float32))


def sgd_config(lr=0.1):
  return ml_collections.ConfigDict(dict(name="sgd", schedule="poly", lr=lr, momentum=0.9, poly_power=0.9,
                                        warmup_steps=0, end_lr_factor=0.0, weight_decay=5e-4,
                                        grad_clip_norm=0.0))


def initial_state(model):
  from vsreid_jax.train import state as state_lib  # pylint: disable=g-import-not-at-top
  tx, _ = state_lib.make_optimizer(sgd_config(), 100)
  return jax.device_get(state_lib.create_train_state(model, state_lib.init_variables(model, jax.random.key(0), S), tx))


def run_steps(devices, state, batches, soft_iou_weight=0.5):
  """Steps from `state` through `batches` on a mesh of `devices`; params, stats, losses, shards."""
  from vsreid_jax.train import step as step_lib  # pylint: disable=g-import-not-at-top
  mesh = step_lib.make_mesh(devices)
  state = jax.device_put(state, step_lib.replicated(mesh))
  step = step_lib.make_train_step(mesh, jax.random.key(1), soft_iou_weight=soft_iou_weight)
  losses, shards = [], set()
  for batch in batches:
    sharded = step_lib.shard_batch(batch, mesh)
    shards.add(len(sharded["image"].sharding.device_set))
    state, metrics = step(state, sharded)
    losses.append(metrics["loss"])
  return jax.device_get(dict(params=state.params, batch_stats=state.batch_stats, loss=losses)), max(shards)


def _max_abs(a, b):
  return max(float(np.max(np.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def worker():
  assert len(jax.devices()) == 8, jax.devices()
  state = initial_state(TinyNet())
  batches = [random_batch(0), random_batch(1)]  # two steps: the second uses the momentum
  multi, n_multi = run_steps(jax.devices(), state, batches)
  single, n_single = run_steps(jax.devices()[:1], state, batches)
  other, _ = run_steps(jax.devices()[:1], state, [random_batch(7), random_batch(1)])
  ok = all(np.allclose(x, y, rtol=1e-5, atol=1e-6) for x, y in zip(jax.tree.leaves(multi), jax.tree.leaves(single)))
  import vsreid_jax  # pylint: disable=g-import-not-at-top
  print(json.dumps(dict(package=os.path.dirname(os.path.abspath(vsreid_jax.__file__)), devices=len(jax.devices()),
                        shards_multi=n_multi, shards_single=n_single, allclose=ok,
                        params_max_abs=_max_abs(multi["params"], single["params"]),
                        stats_max_abs=_max_abs(multi["batch_stats"], single["batch_stats"]),
                        update_max_abs=_max_abs(single["params"], state.params),
                        other_batch_max_abs=_max_abs(other["params"], single["params"]),
                        loss_multi=[float(l) for l in multi["loss"]], loss_single=[float(l) for l in single["loss"]])))


def test_eight_devices_equal_one_device():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  # The checkout's package, not an installed one: the script's own folder (tests/) comes first
  # on its sys.path, so the repo root is put on PYTHONPATH.
  env["PYTHONPATH"] = os.pathsep.join([repo] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
  out = subprocess.run([sys.executable, os.path.abspath(__file__)], env=env, capture_output=True, text=True,
                       timeout=600, cwd=repo)
  assert out.returncode == 0, out.stderr[-3000:]
  report = json.loads(out.stdout.strip().splitlines()[-1])
  assert report["package"] == os.path.join(repo, "vsreid_jax"), report  # the code under test ran
  assert report["devices"] == 8 and report["shards_multi"] == 8 and report["shards_single"] == 1, report
  assert report["allclose"], report
  np.testing.assert_allclose(report["loss_multi"], report["loss_single"], rtol=1e-6)
  # The difference is float summation order, far below the update itself and the effect of a batch.
  assert report["params_max_abs"] < 1e-3 * report["update_max_abs"], report
  assert report["other_batch_max_abs"] > 100 * max(report["params_max_abs"], 1e-7), report


def test_single_device_step_learns():
  """A few steps on one batch lower the loss (the step really optimises)."""
  from vsreid_jax.train import state as state_lib  # pylint: disable=g-import-not-at-top
  from vsreid_jax.train import step as step_lib  # pylint: disable=g-import-not-at-top
  mesh = step_lib.make_mesh(jax.devices()[:1])
  model = TinyNet()
  tx, _ = state_lib.make_optimizer(sgd_config(0.05), 100)
  state = state_lib.create_train_state(model, state_lib.init_variables(model, jax.random.key(0), S), tx)
  stats0 = jax.device_get(state.batch_stats)
  state = jax.device_put(state, step_lib.replicated(mesh))
  step = step_lib.make_train_step(mesh, jax.random.key(1))
  batch = step_lib.shard_batch(random_batch(0), mesh)
  losses = []
  for _ in range(8):
    state, m = step(state, batch)
    losses.append(float(m["loss"]))
  assert losses[-1] < losses[0], losses
  # BN statistics are carried from step to step and updated: after 8 steps at momentum 0.9 the
  # running mean has moved 1 - 0.9^8 = 57% of the way from its initial 0 to the batch means.
  stats = jax.device_get(state.batch_stats)
  assert jax.tree.structure(stats) == jax.tree.structure(stats0) and jax.tree.leaves(stats0)
  mean0, mean = stats0["BatchNorm_0"]["mean"], stats["BatchNorm_0"]["mean"]
  np.testing.assert_array_equal(mean0, 0.0)
  assert np.all(np.isfinite(mean)) and np.abs(mean).max() > 1e-2, mean
  assert not np.allclose(stats["BatchNorm_0"]["var"], stats0["BatchNorm_0"]["var"])


if __name__ == "__main__":
  worker()
