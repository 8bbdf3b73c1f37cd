"""`paper_r101` from ImageNet ResNet-101 checkpoints: parity of the imported backbones with torch
references on random weights (BN in eval), at a small input.

- `paper_r101_tvstem` <- torchvision's `resnet101` state_dict;
- `paper_r101` (deep stem 64-64-128) <- the PSPNet-style deep-stem ResNet-101, in the semseg key
  layout and in the Caffe PSPNet layer names.
Both torch references are dilated the PSPNet way (every block of layer3 / layer4 at dilation 2 / 4,
stride 1), the original N_mp's output stride 8.
"""
import jax
import numpy as np
import pytest

from vsreid_jax import configs
from vsreid_jax.models import import_torch
from vsreid_jax.models import propagation

torch = pytest.importorskip("torch", reason="torch not installed: pip install torch==2.13.0 torchvision==0.28.0")
try:
  torchvision = import_torch.import_torchvision()
except ImportError:
  pytest.skip("torchvision not installed", allow_module_level=True)

REL_TOL = 1e-4


def _dilate_pspnet_style(model):
  """layer3 / layer4: every 3x3 conv at dilation 2 / 4 and stride 1 (PSPNet, the original N_mp)."""
  for layer, d in ((model.layer3, 2), (model.layer4, 4)):
    for name, m in layer.named_modules():
      if name.endswith("conv2"):
        m.dilation, m.padding, m.stride = (d, d), (d, d), (1, 1)
      elif name.endswith("downsample.0"):
        m.stride = (1, 1)


def _randomise_bn(model):
  """Non-trivial BN statistics; the last BN of each residual branch small, as in trained nets, so
  features of the 33 blocks stay O(1-10)."""
  gen = torch.Generator().manual_seed(1)
  for name, m in model.named_modules():
    if isinstance(m, torch.nn.BatchNorm2d):
      with torch.no_grad():
        lo, hi = (0.2, 0.4) if name.endswith("bn3") and name.startswith("layer") else (0.5, 1.5)
        m.weight.copy_(torch.empty(m.weight.shape).uniform_(lo, hi, generator=gen))
        m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
        m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
        m.running_var.copy_(torch.empty(m.running_var.shape).uniform_(0.5, 2.0, generator=gen))


def _torch_resnet101(deep_stem: bool):
  torch.manual_seed(0)
  model = torchvision.models.resnet101(weights=None)
  if deep_stem:  # semseg's deep_base: conv1 3->64 s2, conv2 64->64, conv3 64->128 (+ BN each)
    conv = lambda i, o, s: torch.nn.Conv2d(i, o, 3, stride=s, padding=1, bias=False)
    model.conv1, model.bn1 = conv(3, 64, 2), torch.nn.BatchNorm2d(64)
    model.conv2, model.bn2 = conv(64, 64, 1), torch.nn.BatchNorm2d(64)
    model.conv3, model.bn3 = conv(64, 128, 1), torch.nn.BatchNorm2d(128)
    model.inplanes = 128
    model.layer1 = model._make_layer(torchvision.models.resnet.Bottleneck, 64, 3)  # pylint: disable=protected-access
  _dilate_pspnet_style(model)
  _randomise_bn(model)
  return model.eval()


def _torch_features(model, x, deep_stem):
  with torch.no_grad():
    y = model.relu(model.bn1(model.conv1(torch.from_numpy(x))))
    if deep_stem:
      y = model.relu(model.bn3(model.conv3(model.relu(model.bn2(model.conv2(y))))))
    y = model.maxpool(y)
    for name in ("layer1", "layer2", "layer3", "layer4"):
      y = getattr(model, name)(y)
  return y.numpy().transpose(0, 2, 3, 1)


def _imported_stream_features(config_name, state_dict, x_nchw):
  """Both N_mp streams' backbones imported from `state_dict`; the RGB stream's features on
  [RGB, probability] (the probability filters start at zero, so it must not matter)."""
  m = configs.get("propagation", config_name).model
  model = propagation.build_model(m)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), *propagation.dummy_inputs(33))
  variables = import_torch.import_propagation_backbones(shapes, state_dict)
  backbone = propagation.build_backbone(m)()
  sub = {c: variables[c]["rgb_stream"]["backbone"] for c in ("params", "batch_stats")}
  x = x_nchw.transpose(0, 2, 3, 1)
  x4 = np.concatenate([x, np.random.RandomState(2).rand(*x.shape[:3], 1).astype(np.float32)], axis=-1)
  flow_sub = {c: variables[c]["flow_stream"]["backbone"] for c in ("params", "batch_stats")}
  return np.asarray(backbone.apply(sub, x4, train=False)), flow_sub


def _assert_close(got, expected):
  assert got.shape == expected.shape == (1, 5, 5, 2048)  # 33 / 8 rounded up: output stride 8
  scale = np.abs(expected).max()
  assert scale > 0.1  # not a degenerate comparison
  assert np.abs(got - expected).max() / scale < REL_TOL


def _input():
  return np.random.RandomState(0).randn(1, 3, 33, 33).astype(np.float32)


@pytest.fixture(scope="module")
def tv_model():
  return _torch_resnet101(deep_stem=False)


def test_paper_r101_tvstem_imports_torchvision_resnet101(tv_model):
  model = tv_model
  x = _input()
  got, flow = _imported_stream_features("paper_r101_tvstem", model.state_dict(), x)
  _assert_close(got, _torch_features(model, x, deep_stem=False))
  # The flow stream (flow x, flow y, prob) starts from the same 3-channel filters.
  np.testing.assert_array_equal(flow["params"]["conv1"]["kernel"],
                                model.state_dict()["conv1.weight"].numpy().transpose(2, 3, 1, 0))


def test_paper_r101_imports_the_pspnet_deep_stem_resnet101_in_both_namings():
  model = _torch_resnet101(deep_stem=True)
  x = _input()
  expected = _torch_features(model, x, deep_stem=True)
  semseg = {k: v.numpy() for k, v in model.state_dict().items()}
  assert {"conv2.weight", "bn3.running_var", "layer1.0.conv1.weight"} <= set(semseg)
  got, _ = _imported_stream_features("paper_r101", semseg, x)
  _assert_close(got, expected)

  # The same weights under the Caffe PSPNet layer names.
  to_caffe = {"conv1": "conv1_1_3x3_s2", "bn1": "conv1_1_3x3_s2_bn", "conv2": "conv1_2_3x3",
              "bn2": "conv1_2_3x3_bn", "conv3": "conv1_3_3x3", "bn3": "conv1_3_3x3_bn"}
  kinds = {"conv1": "1x1_reduce", "bn1": "1x1_reduce_bn", "conv2": "3x3", "bn2": "3x3_bn",
           "conv3": "1x1_increase", "bn3": "1x1_increase_bn", "downsample.0": "1x1_proj",
           "downsample.1": "1x1_proj_bn"}
  caffe = {}
  for key, value in semseg.items():
    module, leaf = key.rsplit(".", 1)
    if module in to_caffe:
      caffe[f"{to_caffe[module]}.{leaf}"] = value
    elif module.startswith("layer"):
      layer, block, rest = module.split(".", 2)
      caffe[f"conv{int(layer[5:]) + 1}_{int(block) + 1}_{kinds[rest]}.{leaf}"] = value
  caffe["conv5_4.weight"] = np.zeros((512, 4096, 3, 3), np.float32)  # a PSP head layer: ignored
  assert "conv4_23_1x1_increase_bn.running_mean" in caffe and "conv2_1_1x1_proj.weight" in caffe
  got_caffe, _ = _imported_stream_features("paper_r101", caffe, x)
  np.testing.assert_array_equal(got_caffe, got)


def test_torchvision_weights_do_not_fit_the_deep_stem(tv_model):
  m = configs.get("propagation", "paper_r101").model
  model = propagation.build_model(m)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), *propagation.dummy_inputs(33))
  with pytest.raises(ValueError, match="conv1.weight: checkpoint shape"):
    import_torch.import_propagation_backbones(shapes, tv_model.state_dict())
