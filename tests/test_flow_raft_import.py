"""torchvision RAFT state_dicts -> Flax (flow/import_torch_raft.py), and flow parity on random weights."""
import jax
import numpy as np
import pytest

from vsreid_jax.configs import raft_large, raft_small
from vsreid_jax.flow import import_torch_raft as itr
from vsreid_jax.flow import raft
from vsreid_jax.models.import_torch import import_torchvision

CONFIGS = {"small": raft_small, "large": raft_large}
# torchvision's pyramid needs feature maps >= 16 a side (images >= 128); non-square catches x/y swaps.
PARITY_SIZE = (128, 160)
PARITY_ITERS = 4
PARITY_TOL = 1e-3  # px


def test_state_dict_round_trip_and_unmapped_keys():
  config = raft_small.get_config()
  variables = raft.init_variables(raft.model_from_config(config.model), seed=1)
  state_dict = itr.state_dict_from_variables(variables)
  assert "feature_encoder.layer1.0.convnormrelu1.0.weight" in state_dict
  assert "update_block.recurrent_block.convgru1.convz.weight" in state_dict
  back = itr.variables_from_state_dict(state_dict, config.model)
  jax.tree.map(np.testing.assert_array_equal, back, variables)

  state_dict["update_block.extra.weight"] = np.zeros((2, 2, 1, 1), np.float32)
  del state_dict["update_block.flow_head.conv1.bias"]
  with pytest.raises(ValueError, match="update_block.extra.weight") as err:
    itr.variables_from_state_dict(state_dict, config.model)
  assert "params/update_block/flow_head/conv1/bias" in str(err.value)
  with pytest.raises(ValueError, match="shape mismatches"):  # a small state_dict is not a large one
    itr.variables_from_state_dict(itr.state_dict_from_variables(variables), raft_large.get_config().model)


def _randomise_batch_norm(model, torch):
  """BN at its default (weight 1, bias 0, mean 0, var 1) would not test the BN mapping."""
  g = torch.Generator().manual_seed(1)
  for m in model.modules():
    if isinstance(m, torch.nn.BatchNorm2d):
      m.weight.data = torch.rand(m.weight.shape, generator=g) + 0.5
      m.bias.data = torch.randn(m.bias.shape, generator=g) * 0.1
      m.running_mean = torch.randn(m.running_mean.shape, generator=g) * 0.1
      m.running_var = torch.rand(m.running_var.shape, generator=g) + 0.5


@pytest.mark.parametrize("variant", ["small", "large"])
def test_parity_with_torchvision_on_random_weights(variant):
  torch = pytest.importorskip("torch", reason="parity with torchvision's RAFT needs torch")
  try:
    import_torchvision()
  except ImportError:
    pytest.skip("parity with torchvision's RAFT needs torchvision")
  torch.set_num_threads(2)
  model_t = itr.torchvision_raft(variant, seed=0)
  _randomise_batch_norm(model_t, torch)
  state_dict = model_t.state_dict()
  config = CONFIGS[variant].get_config()
  variables = itr.variables_from_state_dict(state_dict, config.model)
  assert set(itr.state_dict_from_variables(variables)) == set(state_dict)  # every key, both ways

  h, w = PARITY_SIZE
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8)
  with torch.no_grad():
    images = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255 * 2 - 1  # OpticalFlow transform
    expected = model_t(images[:1], images[1:], num_flow_updates=PARITY_ITERS)[-1][0].permute(1, 2, 0).numpy()

  backend = raft.RAFTFlow(config, variables, num_iters=PARITY_ITERS)
  got = backend.flow(frames[0], frames[1])
  diff = np.abs(got - expected).max()
  print(f"raft_{variant}: max |flow| {np.abs(expected).max():.3f} px, max abs diff {diff:.2e} px")
  assert np.abs(expected).max() > 0.1  # a non-trivial flow
  assert diff <= PARITY_TOL
