"""Portable weights files: round trip, loading as the segmenter's N_mp, clear errors."""
import re

import flax.traverse_util
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


def _shipped(kind):
  return {"propagation": weights.DEFAULT_WEIGHTS, "detector": weights.DEFAULT_DETECTOR_WEIGHTS,
          "reid": weights.DEFAULT_REID_WEIGHTS}[kind]


def _loader(kind):
  from vsreid_jax.detection.detector import Detector  # pylint: disable=g-import-not-at-top
  from vsreid_jax.reid.embedder import Embedder  # pylint: disable=g-import-not-at-top
  return {"propagation": lambda p: build_net(str(p), flip=False), "detector": Detector.from_weights,
          "reid": Embedder.from_weights}[kind]


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("kind", ["propagation", "detector", "reid"])
def test_all_nan_or_infinite_weights_are_refused_naming_the_file(tmp_path, kind, value):
  name, meta, variables = weights.load_weights(_shipped(kind))
  path = tmp_path / f"{kind}.msgpack"
  weights.save_weights(path, jax.tree.map(lambda x: np.full_like(x, value), variables), name, meta)
  with pytest.raises(InputError, match=rf"^{path}: .* holds \d+ NaN or infinite values of \d+; the weights are corrupt"):
    _loader(kind)(path)


def test_one_nan_in_one_parameter_is_refused_naming_it(lite_weights, tmp_path):
  _, _, variables, _ = lite_weights
  variables = jax.tree.map(np.array, variables)
  variables["params"]["rgb_stream"]["backbone"]["conv1"]["kernel"][0, 0, 0, 0] = np.nan
  weights.save_weights(tmp_path / "one.msgpack", variables, "lite_cpu")
  with pytest.raises(InputError, match="params/rgb_stream/backbone/conv1/kernel holds 1 NaN or infinite values"):
    weights.load_weights(tmp_path / "one.msgpack")


@pytest.mark.parametrize("kind,given", [("reid", "detector"), ("detector", "reid"), ("propagation", "reid"),
                                        ("reid", "propagation")])
def test_weights_of_another_net_name_the_option_that_takes_them(kind, given):
  option = weights.OPTIONS[given]
  with pytest.raises(InputError, match=rf"^{_shipped(given)}: holds {re.escape(weights.NAMES[given])} weights "
                                       rf".* pass it to {option}, and to {weights.OPTIONS[kind]} a"):
    _loader(kind)(_shipped(given))


def _edited(variables, edit):
  flat = flax.traverse_util.flatten_dict(jax.tree.map(np.asarray, variables), sep="/")
  edit(flat)
  return flax.traverse_util.unflatten_dict(flat, sep="/")


@pytest.mark.parametrize("problem,expected", [
    ("shape", r"params/rgb_stream/backbone/conv1/kernel has shape \(7, 7, 4, 16\), the model expects \(7, 7, 4, 32\)"),
    ("missing", r"params/flow_stream/aspp/.* is missing"),
    ("extra", r"params/extra/kernel is not a parameter of the model"),
])
def test_wrong_architecture_names_the_first_mismatching_parameter(lite_weights, tmp_path, problem, expected):
  _, _, variables, _ = lite_weights

  def edit(flat):
    if problem == "shape":
      key = "params/rgb_stream/backbone/conv1/kernel"
      flat[key] = flat[key][..., :16]
    elif problem == "missing":
      del flat[[k for k in flat if k.startswith("params/flow_stream/aspp/")][0]]
    else:
      flat["params/extra/kernel"] = np.zeros((1,), np.float32)

  path = tmp_path / "w.msgpack"
  weights.save_weights(path, _edited(variables, edit), "lite_cpu")
  with pytest.raises(InputError, match=rf"^{path}: weights do not fit the model of config 'lite_cpu' \({expected}"):
    build_net(str(path), flip=False)


@pytest.mark.parametrize("kind", ["detector", "reid"])
def test_detector_and_reid_weights_are_checked_against_their_model(tmp_path, kind):
  name, meta, variables = weights.load_weights(_shipped(kind))
  first = next(iter(flax.traverse_util.flatten_dict(variables["params"], sep="/")))
  path = tmp_path / f"{kind}.msgpack"
  weights.save_weights(path, _edited(variables, lambda flat: flat.pop(f"params/{first}")), name, meta)
  with pytest.raises(InputError, match=rf"^{path}: weights do not fit the model of config '{name}' \(params/{first} "
                                       "is missing"):
    _loader(kind)(path)


def test_net_trained_with_overrides_loads_from_its_recorded_config(tmp_path):
  cfg = weights.model_config("lite_cpu")
  cfg.model.backbone.width = 16  # as `vsreid train --set model.backbone.width=16` records it
  cfg.crop_size = 65
  model = build_model(cfg.model)
  variables = numpy_init(model, *dummy_inputs(33), train=False)
  path = tmp_path / "narrow.msgpack"
  weights.save_weights(path, variables, "lite_cpu", config=cfg)
  net, model_cfg = build_net(str(path), flip=False)
  assert model_cfg.model.backbone.width == 16 and model_cfg.crop_size == 65
  for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(net.base_variables)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert propagation_config(segment_config.get_config(), model_cfg).scales == ((cfg.crop_margin, 65),)
  # Without the recorded config, the name alone builds the width-32 net: refused, not a traceback.
  weights.save_weights(tmp_path / "unrecorded.msgpack", variables, "lite_cpu")
  with pytest.raises(InputError, match="do not fit the model of config 'lite_cpu'"):
    build_net(str(tmp_path / "unrecorded.msgpack"), flip=False)


@pytest.mark.parametrize("option,given", [("--reid", "detector"), ("--detector", "reid"), ("--net", "detector")])
def test_cli_weights_of_another_net_are_a_one_line_error(tmp_path, capsys, option, given):
  from vsreid_jax import cli  # pylint: disable=g-import-not-at-top
  out = tmp_path / "out"
  assert cli.main(["segment", "--demo", "--out", str(out), "--no-progress", option, _shipped(given)]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith(f"vsreid: error: {_shipped(given)}: holds ")
  assert f"pass it to {weights.OPTIONS[given]}" in err[0]
  assert not out.exists()


def test_export_of_a_run_trained_with_overrides_records_its_config(tmp_path):
  from vsreid_jax.configs import train_propagation  # pylint: disable=g-import-not-at-top
  from vsreid_jax.train import checkpoint as ckpt_lib  # pylint: disable=g-import-not-at-top
  from vsreid_jax.train.export import export_checkpoint  # pylint: disable=g-import-not-at-top
  config = train_propagation.get_config("lite_cpu")
  config.model.backbone.width = 16  # `vsreid train --set model.backbone.width=16`
  variables = numpy_init(build_model(config.model), *dummy_inputs(33), train=False)
  ckpt = ckpt_lib.open_workdir(tmp_path, config, 1, resume=False)
  ckpt.save(3, dict(variables, step=np.int32(3)), {"position": 0})
  ckpt.close()
  out = tmp_path / "narrow.msgpack"
  assert export_checkpoint(tmp_path, out) == 3
  _, model_cfg = build_net(str(out), flip=False)
  assert model_cfg.model.backbone.width == 16 and model_cfg.crop_size == config.crop_size
