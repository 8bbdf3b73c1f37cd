"""Every net package loads the same way: `from_weights(path)` -> a net that owns its config and
variables, and runs other (per-video) variables of the same shapes when given them."""
import jax
import numpy as np
import pytest

from vsreid_jax import configs
from vsreid_jax.errors import InputError
from vsreid_jax.models import weights
from vsreid_jax.models.propagation import dummy_inputs


def _scaled(variables, factor):
  return jax.tree.map(lambda x: np.asarray(x) * factor, variables)


def test_propagation_net_from_weights_owns_config_and_variables_and_takes_other_variables():
  from vsreid_jax.propagation.nets import PropagationNet  # pylint: disable=g-import-not-at-top
  net = PropagationNet.from_weights(weights.DEFAULT_WEIGHTS, flip=False)
  name, _, stored = weights.load_weights(weights.DEFAULT_WEIGHTS)
  assert net.config_name == name == "lite_cpu"
  assert net.config.crop_size == configs.get("propagation", "lite_cpu").crop_size
  for a, b in zip(jax.tree.leaves(stored), jax.tree.leaves(net.variables)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  image, flow, prob = dummy_inputs(net.config.crop_size, batch=1)
  image, prob = image + 100.0, prob + 0.5
  base = np.asarray(net.apply(None, image, flow, prob))
  np.testing.assert_array_equal(base, np.asarray(net(image, flow, prob)))  # the NetFn Propagator calls
  other = _scaled(net.variables, 0.5)
  assert not np.allclose(np.asarray(net.apply(other, image, flow, prob)), base)
  net.use(other)
  np.testing.assert_array_equal(np.asarray(net(image, flow, prob)), np.asarray(net.apply(other, image, flow, prob)))
  net.use(None)
  np.testing.assert_array_equal(np.asarray(net(image, flow, prob)), base)
  assert net.scales == ((float(net.config.crop_margin), int(net.config.crop_size)),)


def test_propagation_net_from_weights_refuses_detector_weights():
  from vsreid_jax.propagation.nets import PropagationNet  # pylint: disable=g-import-not-at-top
  with pytest.raises(InputError, match="holds detector weights .* pass it to --detector"):
    PropagationNet.from_weights(weights.DEFAULT_DETECTOR_WEIGHTS)


def test_detector_and_reid_from_weights_own_config_and_variables():
  from vsreid_jax.detection.detector import Detector  # pylint: disable=g-import-not-at-top
  from vsreid_jax.reid.embedder import Embedder  # pylint: disable=g-import-not-at-top
  for cls, path, kind in ((Detector, weights.DEFAULT_DETECTOR_WEIGHTS, "detector"),
                          (Embedder, weights.DEFAULT_REID_WEIGHTS, "reid")):
    net = cls.from_weights(path)
    name, _, stored = weights.load_weights(path)
    assert net.config_name == name and name in configs.names(kind)
    assert net.config is not None
    leaves = jax.tree.leaves(net.variables)
    assert len(leaves) == len(jax.tree.leaves(stored))
    for a, b in zip(jax.tree.leaves(stored), leaves):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_raft_from_weights_owns_config_and_variables_and_refuses_other_kinds(tmp_path):
  from vsreid_jax.flow import raft  # pylint: disable=g-import-not-at-top
  config = configs.get("raft", "small")
  model = raft.model_from_config(config.model)
  variables = raft.init_variables(model, seed=3)
  path = tmp_path / "raft_small.msgpack"
  weights.save_weights(path, variables, "small", config=config, kind="raft")
  flow = raft.RAFTFlow.from_weights(path, num_iters=2)
  assert flow.config.variant == "small" and flow.num_iters == 2
  assert flow.name == "raft-small-2it-raft_small"
  for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(flow.variables)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  with pytest.raises(InputError, match="holds propagation .* weights"):
    raft.RAFTFlow.from_weights(weights.DEFAULT_WEIGHTS)
  weights.save_weights(tmp_path / "cut.msgpack", {"params": {"feature_encoder": variables["params"]["feature_encoder"]}},
                       "small", kind="raft")
  with pytest.raises(InputError, match="weights do not fit the model of config 'small'"):
    raft.RAFTFlow.from_weights(tmp_path / "cut.msgpack")
