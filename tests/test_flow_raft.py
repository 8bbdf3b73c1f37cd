"""RAFT in Flax (flow/raft.py): building blocks against direct computations, the scan, the backend."""
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vsreid_jax.configs import raft_large, raft_small
from vsreid_jax import flow as flow_lib
from vsreid_jax.errors import InputError
from vsreid_jax.flow import raft


def tiny_config(num_iters=2):
  """raft_small with a 2-level pyramid, so that 32x48 images are large enough, and a rolled
  scan (one compiled body: faster to compile; the unrolled one is covered by the parity tests)."""
  config = raft_small.get_config()
  config.model.corr_levels = 2
  config.model.unroll_iterations = False
  config.num_iters = num_iters
  return config


@pytest.fixture(scope="module")
def tiny():
  config = tiny_config()
  model = raft.model_from_config(config.model)
  return config, model, raft.init_variables(model, seed=0, height=32, width=48)


def test_parameter_counts_match_torchvision():
  # torchvision's weights meta: raft_small 990162, raft_large 5257536 parameters.
  for module, expected in ((raft_small, 990162), (raft_large, 5257536)):
    model = raft.model_from_config(module.get_config().model)
    z = jax.ShapeDtypeStruct((1, 128, 128, 3), jnp.float32)
    shapes = jax.eval_shape(lambda r, a, b: model.init(r, a, b, 1), jax.random.key(0), z, z)
    assert sum(np.prod(x.shape) for x in jax.tree.leaves(shapes["params"])) == expected


def test_padding_to_multiple_of_8_and_back():
  assert raft.pad_amounts(480, 854) == ((0, 0), (1, 1))  # 854 -> 856, one column each side
  assert raft.pad_amounts(37, 50) == ((1, 2), (3, 3))
  frames = jnp.asarray(np.random.default_rng(0).uniform(0, 255, (2, 37, 50, 3)), jnp.float32)
  padded, pads = raft.pad_frames(frames)
  assert padded.shape == (2, 40, 56, 3)
  np.testing.assert_array_equal(padded[:, :1], padded[:, 1:2])  # replicate border
  np.testing.assert_array_equal(padded[:, :, -3:], jnp.repeat(padded[:, :, -4:-3], 3, axis=2))
  np.testing.assert_array_equal(raft.unpad(padded, pads), frames)


def test_correlation_of_identical_features_peaks_at_zero_displacement():
  f = jax.random.normal(jax.random.key(0), (1, 16, 20, 32))
  f = f / jnp.linalg.norm(f, axis=-1, keepdims=True)  # unit vectors: f.f is the strict maximum
  pyramid = raft.correlation_pyramid(f, f, num_levels=2)
  corr = pyramid[0].reshape(16, 20, 16 * 20)
  np.testing.assert_array_equal(jnp.argmax(corr, -1), np.arange(16 * 20).reshape(16, 20))
  radius = 3
  feats = raft.lookup_pyramid(pyramid, raft.coords_grid(1, 16, 20), radius)
  side = 2 * radius + 1
  assert feats.shape == (1, 16, 20, 2 * side * side)
  level0 = feats[0, ..., :side * side]
  assert (jnp.argmax(level0, -1) == radius * side + radius).all()  # the (dx, dy) = (0, 0) channel
  np.testing.assert_allclose(level0[..., radius * side + radius], 1 / np.sqrt(32), rtol=1e-5)


def test_pyramid_pools_2x2_with_floor():
  v = np.random.default_rng(0).normal(size=(2, 7, 9)).astype(np.float32)
  pooled = raft.avg_pool2x2(jnp.asarray(v))
  assert pooled.shape == (2, 3, 4)  # odd row and column dropped, as avg_pool2d
  for i in range(3):
    for j in range(4):
      np.testing.assert_allclose(pooled[:, i, j], v[:, 2 * i:2 * i + 2, 2 * j:2 * j + 2].mean((1, 2)), rtol=1e-6)
  f = jnp.zeros((1, 2, 3, 4))  # 2x3 feature maps: a 2-level pyramid needs >= 4 a side
  with pytest.raises(ValueError, match="too small"):
    raft.correlation_pyramid(f, f, num_levels=2)


def _lookup_reference(volume, coords, radius):
  """Direct grid_sample(align_corners=True, zeros) at coords + (dx, dy), dx-major channels."""
  _, h, w, hh, ww = volume.shape
  out = np.zeros((1, h, w, (2 * radius + 1) ** 2))

  def at(img, yy, xx):
    return img[yy, xx] if 0 <= yy < hh and 0 <= xx < ww else 0.0

  for i in range(h):
    for j in range(w):
      c = 0
      for dx in range(-radius, radius + 1):
        for dy in range(-radius, radius + 1):
          x, y = coords[0, i, j, 0] + dx, coords[0, i, j, 1] + dy
          x0, y0 = int(np.floor(x)), int(np.floor(y))
          fx, fy = x - x0, y - y0
          img = volume[0, i, j]
          out[0, i, j, c] = ((1 - fy) * ((1 - fx) * at(img, y0, x0) + fx * at(img, y0, x0 + 1))
                             + fy * ((1 - fx) * at(img, y0 + 1, x0) + fx * at(img, y0 + 1, x0 + 1)))
          c += 1
  return out


def test_lookup_matches_direct_bilinear_sampling():
  rng = np.random.default_rng(0)
  volume = rng.normal(size=(1, 3, 4, 6, 7)).astype(np.float32)
  # Fractional positions inside, near and far outside the map.
  coords = np.stack([rng.uniform(-4, 11, (1, 3, 4)), rng.uniform(-4, 10, (1, 3, 4))], -1).astype(np.float32)
  coords[0, 0, 0] = (100.0, -50.0)
  got = raft.lookup_level(jnp.asarray(volume), jnp.asarray(coords), radius=2)
  np.testing.assert_allclose(got, _lookup_reference(volume, coords, 2), atol=1e-5)


def test_upsampling_of_constant_and_linear_fields():
  c = jnp.asarray([1.5, -0.25])
  flow = jnp.broadcast_to(c, (1, 5, 6, 2))
  mask = jax.random.normal(jax.random.key(0), (1, 5, 6, 9 * 64)) * 3
  up = raft.upsample_convex(flow, mask)
  assert up.shape == (1, 40, 48, 2)
  # Convex weights sum to 1: constant away from the border (F.unfold zero-pads the border).
  np.testing.assert_allclose(up[0, 8:-8, 8:-8], np.broadcast_to(8 * c, (24, 32, 2)), rtol=1e-5)
  np.testing.assert_allclose(raft.upsample_bilinear(flow)[0], np.broadcast_to(8 * c, (40, 48, 2)), rtol=1e-6)
  # align_corners=True maps coarse column j to fine column j * (8w - 1) / (w - 1).
  ramp = jnp.broadcast_to(jnp.arange(6.0)[None, :, None], (1, 5, 6, 2))
  fine = raft.upsample_bilinear(ramp)[0, 0, :, 0]
  np.testing.assert_allclose(fine, 8 * np.arange(48) * 5 / 47, rtol=1e-5, atol=1e-5)


def test_scan_runs_the_requested_number_of_iterations(tiny):
  config, model, variables = tiny
  rng = np.random.default_rng(0)
  a, b = (jnp.asarray(rng.uniform(-1, 1, (1, 32, 48, 3)), jnp.float32) for _ in range(2))
  every = jax.jit(lambda v, a, b: model.apply(v, a, b, 3, all_predictions=True))(variables, a, b)
  final2 = jax.jit(lambda v, a, b: model.apply(v, a, b, 2))(variables, a, b)
  assert every.shape == (3, 1, 32, 48, 2) and final2.shape == (1, 32, 48, 2)
  np.testing.assert_allclose(every[1], final2, atol=1e-5)  # iteration 2 of 3 == final of 2
  assert float(jnp.abs(every[2] - every[1]).max()) > 1e-4  # a third iteration changes the flow
  assert np.isfinite(np.asarray(every)).all()


def test_raftflow_backend_shapes_name_and_single_compile(tiny):
  config, _, variables = tiny
  backend = raft.RAFTFlow(config, variables)
  assert backend.name == "raft-small-2it"
  rng = np.random.default_rng(1)
  a, b = (rng.integers(0, 256, (37, 50, 3), dtype=np.uint8) for _ in range(2))  # padded to 40x56
  first = backend.flow(a, b)
  assert first.shape == (37, 50, 2) and first.dtype == np.float32
  backend.flow(b, a)
  np.testing.assert_array_equal(backend.flow(a, b), first)
  assert backend.traces == 1  # one compilation for repeated calls of one size


def _train_module():
  import importlib
  import sys
  root = str(pathlib.Path(__file__).resolve().parents[1])
  if root not in sys.path:
    sys.path.insert(0, root)
  return importlib.import_module("experiments.train_raft")


def test_training_resumes_exactly(tmp_path):
  train_raft = _train_module()
  config = tiny_config()
  t = config.train
  t.steps, t.batch_size, t.height, t.width, t.num_iters = 3, 1, 32, 48, 2
  t.eval_samples, t.log_every, t.plot_every = 0, 1, 100
  run = lambda workdir, **kw: train_raft.train(config, str(workdir), davis_root="", progress=False, **kw)
  straight = run(tmp_path / "straight")
  run(tmp_path / "split", stop_at=2)
  resumed = run(tmp_path / "split", resume=True)
  assert int(resumed["state"].step) == int(straight["state"].step) == 3
  jax.tree.map(np.testing.assert_array_equal, resumed["state"].params, straight["state"].params)
  assert [r["loss"] for r in resumed["train_rows"]] == [r["loss"] for r in straight["train_rows"]]
  assert np.isfinite(straight["train_rows"][-1]["loss"])
  # The trained variables load as a flow backend (the RAFT weights file).
  path = tmp_path / "raft.msgpack"
  assert train_raft.export(config, str(tmp_path / "split"), str(path)) == 3
  flow = raft.RAFTFlow.from_weights(path, num_iters=2)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(resumed["state"].params), flow.variables["params"])
  # ... and by name through the flow registry (`--flow raft-<variant> --override flow_weights=FILE`).
  by_name = flow_lib.get(f"raft-{config.variant}", str(path))
  jax.tree.map(np.testing.assert_array_equal, flow.variables["params"], by_name.variables["params"])
  other = "large" if config.variant == "small" else "small"
  with pytest.raises(InputError, match=f"RAFT weights of the {config.variant} variant, not {other}"):
    flow_lib.get(f"raft-{other}", str(path))
