"""ReID net: crops [M, S, S, 3] RGB (0..255) -> L2-normalised embeddings [M, D].

A ResNet trunk (models/resnet.py), global average pooling and a linear projection. Cosine
similarity of two embeddings is their dot product. `crop_boxes` is the one crop used in training
and at run time (geometry.py: box grown by a margin, bilinear S x S).
"""
import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from vsreid_jax.models import resnet
from vsreid_jax import geometry

NORM_EPS = 1e-12  # guards the L2 normalisation of an all-zero feature


def l2_normalize(x, axis: int = -1):
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=axis, keepdims=True), NORM_EPS))


class ReIDNet(nn.Module):
  """Backbone -> global average pool -> Dense(embed_dim) -> L2 normalisation."""
  backbone: Callable[..., nn.Module]
  embed_dim: int = 128
  rgb_mean: Sequence[float] = (123.675, 116.28, 103.53)
  rgb_std: Sequence[float] = (58.395, 57.12, 57.375)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, crops, train: bool = False):
    x = (crops.astype(jnp.float32) - jnp.asarray(self.rgb_mean)) / jnp.asarray(self.rgb_std)
    x = self.backbone(dtype=self.dtype, name="backbone")(x, train=train)
    x = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    x = nn.Dense(self.embed_dim, name="projection")(x)
    return l2_normalize(x)


def build_model(config: ml_collections.ConfigDict) -> ReIDNet:
  """ReIDNet from a `config.model` ConfigDict."""
  b = config.backbone
  backbone = functools.partial(
      resnet.ResNet,
      stage_sizes=tuple(b.stage_sizes),
      block_cls=resnet.BLOCKS[b.block],
      width=b.width,
      output_stride=b.output_stride)
  return ReIDNet(backbone=backbone, embed_dim=config.embed_dim, rgb_mean=tuple(config.rgb_mean),
                 rgb_std=tuple(config.rgb_std), dtype=jnp.dtype(config.get("dtype", "float32")))


def dummy_crops(crop_size: int, batch: int = 1):
  return jnp.zeros((batch, crop_size, crop_size, 3), jnp.float32)


def crop_boxes(image: jnp.ndarray, boxes: jnp.ndarray, size: int, margin: float) -> jnp.ndarray:
  """Crops image[H, W, 3] (any dtype) at boxes[M, 4] grown by `margin` -> float32 [M, S, S, 3]."""
  h, w = image.shape[:2]
  image = image.astype(jnp.float32)

  def one(box):
    return geometry.crop_resize(image, geometry.enlarge_box(box, margin, h, w), size)

  return jax.vmap(one)(boxes.astype(jnp.float32))
