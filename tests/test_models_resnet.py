"""ResNet backbone: shapes per output stride, deep stem, frozen BN."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vsreid_jax.models import propagation
from vsreid_jax.models import resnet

# Tiny nets: one block per stage, width 8, so every test takes about a second.
TINY = dict(stage_sizes=(1, 1, 1, 1), width=8)


def _init(model, x):
  return propagation.numpy_init(model, x)


def _apply(model, variables, x, **kwargs):
  # One compiled program: cheaper here than compiling op by op (eager).
  return jax.jit(functools.partial(model.apply, **kwargs))(variables, x)


def _init_apply(model, x, **kwargs):
  variables = _init(model, x)
  return variables, _apply(model, variables, x, **kwargs)


@pytest.mark.parametrize("block", ["basic", "bottleneck"])
@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_output_shape_per_output_stride(block, output_stride):
  model = resnet.ResNet(block_cls=resnet.BLOCKS[block],
                        output_stride=output_stride, **TINY)
  x = jnp.zeros((2, 64, 64, 3))
  _, y = _init_apply(model, x)
  expansion = resnet.BLOCKS[block].expansion
  s = 64 // output_stride
  assert y.shape == (2, s, s, 8 * 8 * expansion)


def test_odd_input_rounds_up_like_torch():
  # 65 -> conv s2: 33 -> maxpool: 17 -> 9 at stride 8.
  model = resnet.ResNet(output_stride=8, **TINY)
  _, y = _init_apply(model, jnp.zeros((1, 65, 65, 3)))
  assert y.shape[1:3] == (9, 9)


def test_intermediate_features():
  model = resnet.ResNet(output_stride=8, **TINY)
  variables = _init(model, jnp.zeros((1, 64, 64, 3)))
  y, feats = _apply(model, variables, jnp.zeros((1, 64, 64, 3)),
                    return_features=True)
  assert sorted(feats) == ["layer1", "layer2", "layer3", "layer4", "stem"]
  sizes = {k: v.shape[1] for k, v in feats.items()}
  assert sizes == {"stem": 16, "layer1": 16, "layer2": 8, "layer3": 8,
                   "layer4": 8}
  chex.assert_trees_all_equal(y, feats["layer4"])


def test_deep_stem():
  model = resnet.ResNet(deep_stem=True, output_stride=8, **TINY)
  variables, y = _init_apply(model, jnp.zeros((1, 48, 48, 4)))
  params = variables["params"]
  assert params["conv1"]["kernel"].shape == (3, 3, 4, 8)  # stride 2
  assert params["conv2"]["kernel"].shape == (3, 3, 8, 8)
  assert params["conv3"]["kernel"].shape == (3, 3, 8, 16)
  assert y.shape == (1, 6, 6, 8 * 8 * 4)


def test_first_conv_takes_extra_channels():
  model = resnet.ResNet(**TINY)
  variables, _ = _init_apply(model, jnp.zeros((1, 32, 32, 4)))
  assert variables["params"]["conv1"]["kernel"].shape == (7, 7, 4, 8)


def test_stage_strides_and_dilations_match_original():
  # Original N_mp: strides [1, 2, 1, 1], dilations [1, 1, 2, 4].
  assert resnet.stage_strides_and_dilations(4, 8) == ([1, 2, 1, 1],
                                                      [1, 1, 2, 4])
  assert resnet.stage_strides_and_dilations(4, 16) == ([1, 2, 2, 1],
                                                       [1, 1, 1, 2])
  assert resnet.stage_strides_and_dilations(4, 32) == ([1, 2, 2, 2],
                                                       [1, 1, 1, 1])
  for unreachable in (12, 64):
    with pytest.raises(ValueError):
      resnet.stage_strides_and_dilations(4, unreachable)


def test_dilation_conventions_share_params_but_differ():
  x = jax.random.normal(jax.random.PRNGKey(1), (1, 64, 64, 3))
  torchvision_style = resnet.ResNet(output_stride=8, **TINY)
  original_style = resnet.ResNet(output_stride=8, dilate_first_block=True,
                                 **TINY)
  variables = _init(torchvision_style, x)
  a = _apply(torchvision_style, variables, x)
  b = _apply(original_style, variables, x)
  assert a.shape == b.shape
  assert not np.allclose(a, b)


def test_batchnorm_frozen_at_test_and_updated_in_training():
  model = resnet.ResNet(**TINY)
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 32, 32, 3)) * 3.0 + 1.0
  variables = _init(model, x)
  stats = variables["batch_stats"]
  y1, upd1 = _apply(model, variables, x, train=False, mutable=["batch_stats"])
  y2, upd2 = _apply(model, variables, x, train=False, mutable=["batch_stats"])
  chex.assert_trees_all_equal(upd1["batch_stats"], stats)
  chex.assert_trees_all_equal(upd2["batch_stats"], stats)
  chex.assert_trees_all_equal(y1, y2)
  _, upd = _apply(model, variables, x, train=True, mutable=["batch_stats"])
  mean_before = stats["bn1"]["mean"]
  mean_after = upd["batch_stats"]["bn1"]["mean"]
  assert not np.allclose(mean_before, mean_after)
  # torch momentum 0.1: new = 0.9 * old + 0.1 * batch.
  assert resnet.TORCH_BN_MOMENTUM == 0.9


def test_dtype_bfloat16():
  model = resnet.ResNet(dtype=jnp.bfloat16, **TINY)
  variables, y = _init_apply(model, jnp.zeros((1, 32, 32, 3)))
  assert y.dtype == jnp.bfloat16
  assert variables["params"]["conv1"]["kernel"].dtype == jnp.float32


def test_named_partials():
  assert resnet.ResNet101.keywords["stage_sizes"] == (3, 4, 23, 3)
  assert resnet.ResNet18.keywords["block_cls"] is resnet.BasicBlock
  y = jax.eval_shape(
      lambda x: resnet.ResNet50().init_with_output(jax.random.PRNGKey(0), x),
      jnp.zeros((1, 64, 64, 3)))[0]
  assert y.shape == (1, 2, 2, 2048)
