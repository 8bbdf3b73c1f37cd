"""Portable weights files: round trip, loading as the segmenter's N_mp, clear errors."""
import jax
import numpy as np
import pytest

from vsreid_jax.api import build_net, propagation_config
from vsreid_jax.configs import segment as segment_config
from vsreid_jax.errors import InputError
from vsreid_jax.models import weights
from vsreid_jax.models.propagation import build_model, dummy_inputs, numpy_init


@pytest.fixture(scope="module")
def lite_weights(tmp_path_factory):
  cfg = weights.model_config("lite_cpu")
  model = build_model(cfg.model)
  variables = numpy_init(model, *dummy_inputs(33), train=False)
  path = tmp_path_factory.mktemp("w") / "lite.msgpack"
  weights.save_weights(path, variables, "lite_cpu", meta={"step": 7})
  return path, model, variables, cfg


def test_round_trip(lite_weights):
  path, _, variables, _ = lite_weights
  name, meta, loaded = weights.load_weights(path)
  assert name == "lite_cpu" and meta == {"step": 7}
  flat_a = jax.tree_util.tree_leaves_with_path(variables)
  flat_b = dict(jax.tree_util.tree_leaves_with_path(loaded))
  assert len(flat_a) == len(flat_b)
  for key, value in flat_a:
    np.testing.assert_array_equal(np.asarray(flat_b[key]), np.asarray(value))


def test_build_net_from_file_uses_the_nets_crop_and_matches_the_model(lite_weights):
  path, model, variables, cfg = lite_weights
  net, model_cfg = build_net(str(path), flip=False)
  prop = propagation_config(segment_config.get_config(), model_cfg)
  assert prop.scales == ((cfg.crop_margin, cfg.crop_size),) and prop.binarize_prior == cfg.test_binarize_prior
  rng = np.random.default_rng(0)
  s = cfg.crop_size
  image = rng.uniform(0, 255, (1, s, s, 3)).astype(np.float32)
  flow = rng.normal(size=(1, s, s, 2)).astype(np.float32)
  prob = rng.uniform(0, 1, (1, s, s, 1)).astype(np.float32)
  expected = model.apply(variables, image, flow, prob, train=False)
  np.testing.assert_allclose(np.asarray(net(image, flow, prob)), np.asarray(expected), atol=1e-4)


def test_bad_weights_files(tmp_path):
  with pytest.raises(InputError, match="weights file not found"):
    weights.load_weights(tmp_path / "none.msgpack")
  (tmp_path / "bad.msgpack").write_bytes(b"\x81\xa1x\x01")  # a msgpack map without our keys
  with pytest.raises(InputError, match=r"bad\.msgpack: not a vsreid weights file"):
    weights.load_weights(tmp_path / "bad.msgpack")


def test_float16_file_loads_as_float32_within_half_precision(lite_weights, tmp_path):
  path, _, variables, _ = lite_weights
  weights.save_weights(tmp_path / "h.msgpack", variables, "lite_cpu", dtype=np.float16)
  _, _, loaded = weights.load_weights(tmp_path / "h.msgpack")
  for a, b in zip(jax.tree_util.tree_leaves(variables), jax.tree_util.tree_leaves(loaded)):
    assert b.dtype == np.float32
    np.testing.assert_allclose(b, np.asarray(a), rtol=1e-3, atol=1e-4)
  assert (tmp_path / "h.msgpack").stat().st_size < 0.6 * path.stat().st_size
