"""ResNet backbones (torchvision layout, optional deep stem and dilation).

With `deep_stem=False` and `output_stride=32` the module is numerically the same
network as torchvision's `resnet18/34/50/101` (explicit symmetric padding, BN
eps 1e-5 and momentum 0.1, stride on the 3x3 conv of the bottleneck: "v1.5"),
and parameter names follow torchvision's state_dict (`layer3_2/conv1`, ...), so
`import_torch.py` is a plain rename and transpose.

`output_stride` 8 or 16 replaces the stride of the last stages by dilation
(DeepLab). `dilate_first_block` picks which convention is used for the first
block of a dilated stage: False is torchvision's `replace_stride_with_dilation`
(the first block keeps the previous dilation); True is the original N_mp /
DeepLab code, where every block of the stage is dilated.
"""

import functools
from typing import Any, Callable, Optional, Sequence, Tuple

import flax.linen as nn
import jax.numpy as jnp

# torchvision.models.resnet hyper-parameters that weights depend on.
TORCH_BN_EPS = 1e-5
TORCH_BN_MOMENTUM = 0.9  # torch momentum 0.1 == flax momentum 0.9


def torch_padding(kernel_size: int, dilation: int) -> Tuple[Tuple[int, int], ...]:
  # torch pads symmetrically by dilation * (k // 2); flax "SAME" would not for stride 2.
  p = dilation * (kernel_size // 2)
  return ((p, p), (p, p))


# torchvision's kaiming_normal_ (fan out) for ResNet convs.
KAIMING_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def conv_bn(x, features, kernel_size, strides, dilation, *, name_conv, name_bn,
            train, bn_momentum, bn_eps, dtype, relu=True, zero_init_scale=False,
            kernel_init=KAIMING_INIT):
  """Conv + BN (+ ReLU) declared in the calling compact module's scope (the
  backbone, the ASPP head and the skip decoder all build their layers with it)."""
  x = nn.Conv(features, (kernel_size, kernel_size), strides=(strides, strides),
              padding=torch_padding(kernel_size, dilation),
              kernel_dilation=(dilation, dilation), use_bias=False, dtype=dtype,
              kernel_init=kernel_init, name=name_conv)(x)
  x = nn.BatchNorm(use_running_average=not train, momentum=bn_momentum,
                   epsilon=bn_eps, dtype=dtype,
                   scale_init=(nn.initializers.zeros if zero_init_scale
                               else nn.initializers.ones),
                   name=name_bn)(x)
  return nn.relu(x) if relu else x


class BasicBlock(nn.Module):
  """Two 3x3 convs (ResNet-18/34). Dilation supported, unlike torchvision."""
  planes: int
  strides: int = 1
  dilation: int = 1
  first_dilation: Optional[int] = None  # dilation of conv1; default `dilation`
  bn_momentum: float = TORCH_BN_MOMENTUM
  bn_eps: float = TORCH_BN_EPS
  zero_init_residual: bool = False
  dtype: Any = jnp.float32
  expansion = 1

  @nn.compact
  def __call__(self, x, train: bool = False):
    cb = functools.partial(conv_bn, train=train, bn_momentum=self.bn_momentum,
                           bn_eps=self.bn_eps, dtype=self.dtype)
    d1 = self.dilation if self.first_dilation is None else self.first_dilation
    y = cb(x, self.planes, 3, self.strides, d1, name_conv="conv1",
           name_bn="bn1")
    y = cb(y, self.planes, 3, 1, self.dilation, name_conv="conv2",
           name_bn="bn2", relu=False, zero_init_scale=self.zero_init_residual)
    if self.strides != 1 or x.shape[-1] != self.planes * self.expansion:
      x = cb(x, self.planes * self.expansion, 1, self.strides, 1,
             name_conv="downsample_conv", name_bn="downsample_bn", relu=False)
    return nn.relu(x + y)


class Bottleneck(nn.Module):
  """1x1 -> 3x3 (stride, dilation) -> 1x1 x4 (ResNet-50/101, torchvision v1.5)."""
  planes: int
  strides: int = 1
  dilation: int = 1
  first_dilation: Optional[int] = None  # dilation of the 3x3 conv if set
  bn_momentum: float = TORCH_BN_MOMENTUM
  bn_eps: float = TORCH_BN_EPS
  zero_init_residual: bool = False
  dtype: Any = jnp.float32
  expansion = 4

  @nn.compact
  def __call__(self, x, train: bool = False):
    cb = functools.partial(conv_bn, train=train, bn_momentum=self.bn_momentum,
                           bn_eps=self.bn_eps, dtype=self.dtype)
    d = self.dilation if self.first_dilation is None else self.first_dilation
    y = cb(x, self.planes, 1, 1, 1, name_conv="conv1", name_bn="bn1")
    y = cb(y, self.planes, 3, self.strides, d, name_conv="conv2", name_bn="bn2")
    y = cb(y, self.planes * self.expansion, 1, 1, 1, name_conv="conv3",
           name_bn="bn3", relu=False, zero_init_scale=self.zero_init_residual)
    if self.strides != 1 or x.shape[-1] != self.planes * self.expansion:
      x = cb(x, self.planes * self.expansion, 1, self.strides, 1,
             name_conv="downsample_conv", name_bn="downsample_bn", relu=False)
    return nn.relu(x + y)


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


def stage_strides_and_dilations(num_stages: int, output_stride: int):
  """Per-stage (stride, dilation): stages past `output_stride` get dilation.

  The stem reduces by 4 and every stage after the first by 2, so stage i has
  nominal stride 4 * 2**i; once that would exceed `output_stride` the stride
  becomes 1 and the dilation doubles instead.
  """
  strides, dilations = [], []
  current, dilation = 4, 1
  for i in range(num_stages):
    s = 1 if i == 0 else 2
    if current * s > output_stride:
      dilation *= s
      s = 1
    current *= s
    strides.append(s)
    dilations.append(dilation)
  if current != output_stride:
    raise ValueError(f"output_stride {output_stride} not reachable with "
                     f"{num_stages} stages (got {current}).")
  return strides, dilations


class ResNet(nn.Module):
  """ResNet trunk without avgpool/fc.

  Input: [N, H, W, C] with any C (the first conv adapts; import_torch widens
  ImageNet weights to extra channels). Output: features [N, H/os, W/os, F]
  (ceil-rounded as in torch), plus a dict {"stem", "layer1".."layer4"} of
  intermediate maps when `return_features=True`.
  """
  stage_sizes: Sequence[int]
  block_cls: Callable[..., nn.Module] = Bottleneck
  width: int = 64
  output_stride: int = 32
  deep_stem: bool = False
  dilate_first_block: bool = False
  bn_momentum: float = TORCH_BN_MOMENTUM
  bn_eps: float = TORCH_BN_EPS
  zero_init_residual: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False, return_features: bool = False):
    cb = functools.partial(conv_bn, train=train, bn_momentum=self.bn_momentum,
                           bn_eps=self.bn_eps, dtype=self.dtype)
    x = x.astype(self.dtype)
    if self.deep_stem:
      # Original N_mp / PSPNet stem: three 3x3 convs, width-width-2*width.
      x = cb(x, self.width, 3, 2, 1, name_conv="conv1", name_bn="bn1")
      x = cb(x, self.width, 3, 1, 1, name_conv="conv2", name_bn="bn2")
      x = cb(x, 2 * self.width, 3, 1, 1, name_conv="conv3", name_bn="bn3")
    else:
      x = cb(x, self.width, 7, 2, 1, name_conv="conv1", name_bn="bn1")
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    features = {"stem": x}

    strides, dilations = stage_strides_and_dilations(len(self.stage_sizes),
                                                     self.output_stride)
    prev_dilation = 1
    for i, num_blocks in enumerate(self.stage_sizes):
      for j in range(num_blocks):
        first_dilation = None
        if j == 0 and not self.dilate_first_block:
          first_dilation = prev_dilation  # torchvision convention
        x = self.block_cls(
            planes=self.width * 2**i,
            strides=strides[i] if j == 0 else 1,
            dilation=dilations[i],
            first_dilation=first_dilation,
            bn_momentum=self.bn_momentum,
            bn_eps=self.bn_eps,
            zero_init_residual=self.zero_init_residual,
            dtype=self.dtype,
            name=f"layer{i + 1}_{j}")(x, train=train)
      prev_dilation = dilations[i]
      features[f"layer{i + 1}"] = x
    return (x, features) if return_features else x


ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2),
                             block_cls=BasicBlock)
ResNet34 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3),
                             block_cls=BasicBlock)
ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3),
                             block_cls=Bottleneck)
ResNet101 = functools.partial(ResNet, stage_sizes=(3, 4, 23, 3),
                              block_cls=Bottleneck)
