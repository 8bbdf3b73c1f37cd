"""torchvision ResNet -> flax ResNet parity (random weights, BN in eval)."""

import jax
import numpy as np
import pytest

from vsreid_jax.models import import_torch
from vsreid_jax.models import resnet

torch = pytest.importorskip(
    "torch", reason="torch not installed: pip install torch==2.13.0 "
    "torchvision==0.28.0 (see import_torch.import_torchvision)")
try:
  torchvision = import_torch.import_torchvision()
except ImportError:
  pytest.skip("torchvision not installed", allow_module_level=True)

TOL = 1e-4


def _random_torch_resnet(arch, **kwargs):
  torch.manual_seed(0)
  model = getattr(torchvision.models, arch)(weights=None, **kwargs)
  # Non-trivial BN so that a wrong mapping of scale/bias/mean/var shows. The
  # last BN of each residual branch is kept small, as in trained networks, so
  # features stay O(1-10) and 1e-4 absolute stays above float32 rounding.
  last_bns = {"bn2"} if arch in ("resnet18", "resnet34") else {"bn3"}
  for name, m in model.named_modules():
    if isinstance(m, torch.nn.BatchNorm2d):
      with torch.no_grad():
        if name.rsplit(".", 1)[-1] in last_bns:
          m.weight.uniform_(0.3, 0.6)
        else:
          m.weight.uniform_(0.5, 1.5)
        m.bias.normal_(0.0, 0.1)
        m.running_mean.normal_(0.0, 0.1)
        m.running_var.uniform_(0.5, 2.0)
  return model.eval()


def _torch_features(model, x):
  with torch.no_grad():
    y = model.maxpool(model.relu(model.bn1(model.conv1(torch.from_numpy(x)))))
    for name in ("layer1", "layer2", "layer3", "layer4"):
      y = getattr(model, name)(y)
  return y.numpy().transpose(0, 2, 3, 1)  # NCHW -> NHWC


def _flax_features(flax_resnet, state_dict, x_nhwc, **import_kwargs):
  # Shapes only: a random init costs seconds and is overwritten anyway.
  variables = jax.eval_shape(flax_resnet.init, jax.random.PRNGKey(0), x_nhwc)
  variables = import_torch.import_resnet(variables, state_dict,
                                         **import_kwargs)
  return np.asarray(flax_resnet.apply(variables, x_nhwc, train=False))


def _input(channels=3):
  return np.random.RandomState(0).randn(2, channels, 64, 64).astype(np.float32)


@pytest.mark.parametrize("arch,flax_cls", [
    ("resnet18", resnet.ResNet18),
    ("resnet50", resnet.ResNet50),
])
def test_parity_output_stride_32(arch, flax_cls):
  model = _random_torch_resnet(arch)
  x = _input()
  expected = _torch_features(model, x)
  got = _flax_features(flax_cls(), model.state_dict(), x.transpose(0, 2, 3, 1))
  assert got.shape == expected.shape == (2, 2, 2, model.fc.in_features)
  assert np.abs(expected).max() > 0.1  # not a degenerate comparison
  np.testing.assert_array_less(np.abs(got - expected).max(), TOL)


def test_parity_dilated_output_stride_8():
  model = _random_torch_resnet("resnet50",
                               replace_stride_with_dilation=[False, True, True])
  x = _input()
  expected = _torch_features(model, x)
  flax_model = resnet.ResNet50(output_stride=8, dilate_first_block=False)
  got = _flax_features(flax_model, model.state_dict(), x.transpose(0, 2, 3, 1))
  assert got.shape == expected.shape == (2, 8, 8, 2048)
  np.testing.assert_array_less(np.abs(got - expected).max(), TOL)


def test_widened_first_conv_zeros_ignores_extra_channel():
  model = _random_torch_resnet("resnet18")
  x = _input()
  expected = _torch_features(model, x)
  x4 = np.concatenate([x, _input(1) * 5.0], axis=1).transpose(0, 2, 3, 1)
  got = _flax_features(resnet.ResNet18(), model.state_dict(), x4,
                       extra_channel_init="zeros")
  np.testing.assert_array_less(np.abs(got - expected).max(), TOL)


def test_widened_first_conv_mean_init_and_prefix():
  model = _random_torch_resnet("resnet18")
  flax_model = resnet.ResNet18()
  variables = {"params": {}, "batch_stats": {}}
  inner = jax.eval_shape(flax_model.init, jax.random.PRNGKey(0),
                         np.zeros((1, 32, 32, 4)))
  for col in variables:
    variables[col] = {"stream": {"backbone": inner[col]}}
  state_dict = {k: v.numpy() for k, v in model.state_dict().items()}
  out = import_torch.import_resnet(variables, state_dict,
                                   prefix=("stream", "backbone"),
                                   extra_channel_init="mean")
  kernel = out["params"]["stream"]["backbone"]["conv1"]["kernel"]
  rgb = state_dict["conv1.weight"].transpose(2, 3, 1, 0)
  assert kernel.shape == (7, 7, 4, 64)
  np.testing.assert_allclose(kernel[:, :, :3], rgb)
  np.testing.assert_allclose(kernel[:, :, 3], rgb.mean(axis=2), rtol=1e-6)
  np.testing.assert_allclose(
      out["batch_stats"]["stream"]["backbone"]["layer4_1"]["bn2"]["var"],
      state_dict["layer4.1.bn2.running_var"])


def test_shape_mismatch_raises():
  model = _random_torch_resnet("resnet18")
  flax_model = resnet.ResNet18(width=32)
  variables = jax.eval_shape(flax_model.init, jax.random.PRNGKey(0),
                             np.zeros((1, 32, 32, 3)))
  with pytest.raises(ValueError, match="shape"):
    import_torch.import_resnet(variables, model.state_dict())


def test_load_state_dict_from_pth(tmp_path):
  model = _random_torch_resnet("resnet18")
  path = tmp_path / "r18.pth"
  torch.save(model.state_dict(), str(path))
  loaded = import_torch.load_state_dict(str(path))
  np.testing.assert_array_equal(loaded["layer1.0.conv1.weight"],
                                model.state_dict()["layer1.0.conv1.weight"])


def test_import_into_both_propagation_streams():
  from vsreid_jax.configs import propagation_lite_cpu  # pylint: disable=g-import-not-at-top
  from vsreid_jax.models import propagation  # pylint: disable=g-import-not-at-top
  m = propagation_lite_cpu.get_config().model
  m.backbone.width = 64  # torchvision resnet18 layout
  model = propagation.build_model(m)
  variables = propagation.numpy_init(model, *propagation.dummy_inputs(33))
  torch_model = _random_torch_resnet("resnet18")
  out = import_torch.import_propagation_backbones(
      variables, torch_model.state_dict())
  rgb = torch_model.state_dict()["conv1.weight"].numpy().transpose(2, 3, 1, 0)
  rgb_kernel = out["params"]["rgb_stream"]["backbone"]["conv1"]["kernel"]
  flow_kernel = out["params"]["flow_stream"]["backbone"]["conv1"]["kernel"]
  np.testing.assert_array_equal(rgb_kernel[:, :, :3], rgb)
  np.testing.assert_array_equal(rgb_kernel[:, :, 3], 0.0)
  np.testing.assert_array_equal(flow_kernel, rgb)
  # The head is untouched.
  np.testing.assert_array_equal(
      out["params"]["rgb_stream"]["classifier"]["kernel"],
      variables["params"]["rgb_stream"]["classifier"]["kernel"])
