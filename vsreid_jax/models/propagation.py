"""Mask propagation network N_mp: two ResNet+ASPP streams on a crop.

Interface (DESIGN.md):
  model.apply(variables, image[N,S,S,3] in 0..255 (RGB), flow[N,S,S,2] in
  pixels, prob[N,S,S,1] in 0..1, train=False) -> logits[N,S,S,1]

The RGB stream sees the normalised image plus the warped probability
(4 channels); the flow stream sees the scaled flow plus the probability
(3 channels). Each stream predicts one-channel logits at its feature
resolution; the enabled streams are averaged and bilinearly upsampled to the
crop. The original predicted two classes with a softmax and summed the
streams: one logit (sigmoid) is the same model, and a mean rather than a sum
only rescales the logits, which training absorbs.
"""

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vsreid_jax.models import aspp as aspp_lib
from vsreid_jax.models import resnet

STREAMS = ("rgb", "flow")


def resize_bilinear(x, height: int, width: int):
  """Half-pixel bilinear resize of NHWC maps (torch align_corners=False)."""
  n, _, _, c = x.shape
  return jax.image.resize(x, (n, height, width, c), method="bilinear",
                          antialias=False)


class PropagationStream(nn.Module):
  """Backbone + ASPP (+ optional stride-4 skip decoder) -> logits.

  Output: [N, h, w, num_classes] at the backbone's output stride, or at the
  resolution of `skip_feature` when `skip_channels > 0`.
  """
  backbone: Callable[..., nn.Module]
  head: Callable[..., nn.Module]
  num_classes: int = 1
  skip_feature: str = "layer1"
  skip_channels: int = 0  # 0: no skip, classify the ASPP output directly
  decoder_channels: int = 64
  bn_momentum: float = resnet.TORCH_BN_MOMENTUM
  bn_eps: float = resnet.TORCH_BN_EPS
  zero_init_classifier: bool = False  # residual nets start as the identity
  dtype: Any = jnp.float32

  def _conv_bn_relu(self, x, features, kernel_size, name, train):
    return resnet.conv_bn(x, features, kernel_size, 1, 1, name_conv=f"{name}_conv",
                          name_bn=f"{name}_bn", train=train, bn_momentum=self.bn_momentum,
                          bn_eps=self.bn_eps, dtype=self.dtype,
                          kernel_init=nn.linear.default_kernel_init)

  @nn.compact
  def __call__(self, x, train: bool = False):
    use_skip = self.skip_channels > 0
    x, feats = self.backbone(dtype=self.dtype, name="backbone")(
        x, train=train, return_features=True)
    x = self.head(num_classes=None if use_skip else self.num_classes,
                  zero_init_classifier=self.zero_init_classifier,
                  dtype=self.dtype, name="aspp")(x, train=train)
    if not use_skip:
      return x
    # DeepLab v3+ style: fine detail from stride-4 features, cheap channels.
    low = self._conv_bn_relu(feats[self.skip_feature], self.skip_channels, 1,
                             "skip", train)
    x = resize_bilinear(x, low.shape[1], low.shape[2])
    x = jnp.concatenate([x, low], axis=-1)
    x = self._conv_bn_relu(x, self.decoder_channels, 3, "decoder", train)
    init = nn.initializers.zeros if self.zero_init_classifier else nn.linear.default_kernel_init
    return nn.Conv(self.num_classes, (1, 1), dtype=self.dtype, kernel_init=init,
                   name="classifier")(x)


class TwoStreamPropagation(nn.Module):
  """N_mp: RGB(+prob) and flow(+prob) streams, logits averaged, upsampled.

  Attributes:
    stream: constructor of one stream (a PropagationStream partial).
    streams: which streams run, a subset of ("rgb", "flow"); ("rgb",) is the
      single-stream ablation and ignores `flow`.
    rgb_mean, rgb_std: per-channel normalisation in 0..255 units, in the order
      the stream sees the channels (after the optional BGR flip).
    bgr: feed channels as BGR (the original Caffe-style weights).
    flow_scale: multiplies the flow (pixels) before the flow stream.
    prior_residual: > 0 adds logit(clip(prob, c, 1 - c)) with c = prior_residual
      to the upsampled stream logits at full crop resolution. The streams then
      predict a correction of the warped prior: with zero-initialised
      classifiers the untrained net is the warp-only baseline, and the prior's
      full-resolution boundary is kept where the net agrees with it.
  """
  stream: Callable[..., nn.Module]
  streams: Sequence[str] = STREAMS
  rgb_mean: Sequence[float] = (123.675, 116.28, 103.53)
  rgb_std: Sequence[float] = (58.395, 57.12, 57.375)
  bgr: bool = False
  flow_scale: float = 1.0
  prior_residual: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, image, flow, prob, train: bool = False):
    unknown = set(self.streams) - set(STREAMS)
    if unknown or not self.streams:
      raise ValueError(f"streams must be a non-empty subset of {STREAMS}, "
                       f"got {self.streams}.")
    _, s_h, s_w, _ = image.shape
    prob = prob.astype(jnp.float32)
    logits = []
    if "rgb" in self.streams:
      rgb = image.astype(jnp.float32)
      if self.bgr:
        rgb = rgb[..., ::-1]
      rgb = (rgb - jnp.asarray(self.rgb_mean)) / jnp.asarray(self.rgb_std)
      x = jnp.concatenate([rgb, prob], axis=-1)
      logits.append(self.stream(dtype=self.dtype, name="rgb_stream")(
          x, train=train))
    if "flow" in self.streams:
      x = jnp.concatenate([flow.astype(jnp.float32) * self.flow_scale, prob],
                          axis=-1)
      logits.append(self.stream(dtype=self.dtype, name="flow_stream")(
          x, train=train))
    x = sum(l.astype(jnp.float32) for l in logits) / len(logits)
    x = resize_bilinear(x, s_h, s_w)
    if self.prior_residual > 0:
      p = jnp.clip(prob, self.prior_residual, 1 - self.prior_residual)
      x = x + jnp.log(p) - jnp.log1p(-p)
    return x


def build_backbone(config: ml_collections.ConfigDict):
  """The `resnet.ResNet` constructor of each stream, from a `config.model` ConfigDict."""
  b = config.backbone
  return functools.partial(
      resnet.ResNet,
      stage_sizes=tuple(b.stage_sizes),
      block_cls=resnet.BLOCKS[b.block],
      width=b.width,
      output_stride=b.output_stride,
      deep_stem=b.deep_stem,
      dilate_first_block=b.dilate_first_block)


def build_model(config: ml_collections.ConfigDict) -> TwoStreamPropagation:
  """Constructs TwoStreamPropagation from a `config.model` ConfigDict."""
  dtype = jnp.dtype(config.get("dtype", "float32"))
  h = config.aspp
  backbone = build_backbone(config)
  head = functools.partial(
      aspp_lib.ASPP,
      rates=tuple(h.rates),
      branch_channels=h.branch_channels,
      out_channels=h.out_channels,
      rate1_kernel_size=h.rate1_kernel_size,
      fuse_kernel_size=h.fuse_kernel_size,
      dropout_rate=h.dropout_rate)
  stream = functools.partial(
      PropagationStream,
      backbone=backbone,
      head=head,
      skip_feature=config.skip.feature,
      skip_channels=config.skip.channels,
      decoder_channels=config.skip.decoder_channels,
      zero_init_classifier=config.get("prior_residual", 0.0) > 0)
  return TwoStreamPropagation(
      stream=stream,
      streams=tuple(config.streams),
      rgb_mean=tuple(config.rgb_mean),
      rgb_std=tuple(config.rgb_std),
      bgr=config.bgr,
      flow_scale=config.flow_scale,
      prior_residual=config.get("prior_residual", 0.0),
      dtype=dtype)


def dummy_inputs(crop_size: int, batch: int = 1):
  """Zero (image, flow, prob) of the interface's shapes."""
  s = crop_size
  return (jnp.zeros((batch, s, s, 3), jnp.float32),
          jnp.zeros((batch, s, s, 2), jnp.float32),
          jnp.zeros((batch, s, s, 1), jnp.float32))


def numpy_init(model: nn.Module, *args, seed: int = 0, **kwargs):
  """Variables filled on the host: He-normal (fan-out) kernels, unit BN.

  For tests and benchmarks. flax's init compiles a threefry sampler per
  parameter shape, which takes 5-25 s even for a tiny net on a loaded 2-core
  CPU (and minutes under jit for ResNet-101); shapes come from
  `jax.eval_shape`, so nothing here is compiled.
  """
  shapes = jax.eval_shape(functools.partial(model.init, **kwargs),
                          jax.random.PRNGKey(0), *args)
  rng = np.random.RandomState(seed)

  def fill(path, leaf):
    name = path[-1].key
    if name == "kernel":
      fan_out = np.prod(leaf.shape[:-2]) * leaf.shape[-1]
      return jnp.asarray(rng.standard_normal(leaf.shape) *
                         np.sqrt(2.0 / fan_out), leaf.dtype)
    return jnp.full(leaf.shape, 1.0 if name in ("scale", "var") else 0.0,
                    leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def make_propagation_fn(model: nn.Module, variables):
  """Returns fn(image, flow, prob) -> logits, inference mode, jitted.

  Variables are an argument of the jitted function (not baked-in constants),
  so it compiles once per input shape and new weights need no recompile:
  `fn.jitted(variables, image, flow, prob)` is the underlying jitted function.
  """

  @jax.jit
  def jitted(variables, image, flow, prob):
    return model.apply(variables, image, flow, prob, train=False)

  def fn(image, flow, prob):
    return jitted(variables, image, flow, prob)

  fn.jitted = jitted
  return fn
