"""Atrous spatial pyramid pooling head (DeepLab v2/v3 style, as in N_mp).

The original N_mp head: parallel 3x3 convs at dilations 6, 12, 18, 24 and 1
(512 channels each), concatenated, a 3x3 conv to 512 + BN + ReLU, dropout 0.1
and a 1x1 classifier. Every width, rate and kernel size is an attribute so a
lite config can shrink it.
"""

from typing import Any, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from vsreid_jax.models import resnet


class ASPP(nn.Module):
  """[N, h, w, C] -> logits [N, h, w, num_classes] (or fused features).

  Attributes:
    rates: dilation of each parallel branch.
    branch_channels: channels of each branch.
    out_channels: channels after the fusing conv.
    num_classes: classifier outputs; None returns the fused features (for a
      decoder that adds a skip before classifying).
    rate1_kernel_size: kernel of the rate-1 branch (3 in the original, 1 in
      DeepLab v3).
    fuse_kernel_size: kernel of the conv that fuses the concatenated branches.
    dropout_rate: dropout before the classifier (active only with train=True,
      needs a 'dropout' rng).
  """
  rates: Sequence[int] = (6, 12, 18, 24, 1)
  branch_channels: int = 512
  out_channels: int = 512
  num_classes: Optional[int] = 1
  rate1_kernel_size: int = 3
  fuse_kernel_size: int = 3
  dropout_rate: float = 0.1
  bn_momentum: float = resnet.TORCH_BN_MOMENTUM
  bn_eps: float = resnet.TORCH_BN_EPS
  zero_init_classifier: bool = False  # residual nets start as the identity
  dtype: Any = jnp.float32

  def _conv_bn_relu(self, x, features, kernel_size, dilation, name, train):
    return resnet.conv_bn(x, features, kernel_size, 1, dilation, name_conv=f"{name}_conv",
                          name_bn=f"{name}_bn", train=train, bn_momentum=self.bn_momentum,
                          bn_eps=self.bn_eps, dtype=self.dtype,
                          kernel_init=nn.linear.default_kernel_init)

  @nn.compact
  def __call__(self, x, train: bool = False):
    branches = []
    for i, rate in enumerate(self.rates):
      k = self.rate1_kernel_size if rate == 1 else 3
      branches.append(self._conv_bn_relu(x, self.branch_channels, k, rate,
                                         f"branch{i}", train))
    x = jnp.concatenate(branches, axis=-1)
    x = self._conv_bn_relu(x, self.out_channels, self.fuse_kernel_size, 1,
                           "fuse", train)
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    if self.num_classes is None:
      return x
    init = nn.initializers.zeros if self.zero_init_classifier else nn.linear.default_kernel_init
    return nn.Conv(self.num_classes, (1, 1), dtype=self.dtype, kernel_init=init,
                   name="classifier")(x)
