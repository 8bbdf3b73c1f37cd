"""RAFT optical flow (Teed & Deng, ECCV 2020) in Flax, layer for layer as torchvision's
`torchvision.models.optical_flow.raft` (raft_small / raft_large), so that its state_dicts load
with `import_torch_raft.py` and give the same flow.

Layout is NHWC. Module and attribute names follow torchvision's so that a state_dict key maps to a
Flax path by rule: `feature_encoder.layer1.0.convnormrelu1.0.weight` is
`feature_encoder/layer1_0/convnormrelu1/conv/kernel` (a Conv2dNormActivation's `.0` is `conv`, its
`.1` is `norm`; an nn.Sequential's index is `_k`).

Input: RGB in [0, 255], normalised as torchvision's OpticalFlow transform does (2 * x / 255 - 1).
torchvision's RAFT only accepts sizes divisible by 8 and its transforms do not pad; its reference
evaluation pads with InputPadder ("sintel" mode: replicate border, split evenly between the two
sides). `RAFTFlow` does the same and crops the flow back.
"""
import functools
import os
from typing import Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# The encoders downsample by 2**3; the flow is estimated at 1/8 and upsampled by this factor.
DOWNSAMPLE = 8
# torch's norm layers default eps.
NORM_EPS = 1e-5
# torch BatchNorm momentum 0.1 means running = 0.9 * running + 0.1 * batch.
BN_MOMENTUM = 0.9
# Convex upsampling mixes each coarse pixel's 3x3 neighbourhood.
CONVEX_TAPS = 9

# torchvision initialises the encoders' convs with kaiming_normal_(fan_out, relu) and leaves the
# others at torch's default (kaiming_uniform_(a=sqrt(5)) = U(+-1/sqrt(fan_in))). Biases: zeros.
ENCODER_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
TORCH_DEFAULT_INIT = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def _pair(k):
  return (k, k) if isinstance(k, int) else tuple(k)


def conv2d(features: int, kernel_size=3, stride: int = 1, kernel_init=TORCH_DEFAULT_INIT, name=None):
  """torch.nn.Conv2d with padding (k - 1) // 2 (the only padding RAFT uses) and a bias.

  Explicit symmetric padding: Flax's "SAME" pads (0, 1) for stride 2 on even sizes, torch (1, 1).
  """
  k = _pair(kernel_size)
  return nn.Conv(features, k, strides=stride, padding=[((s - 1) // 2,) * 2 for s in k],
                 kernel_init=kernel_init, name=name)


class ConvNormAct(nn.Module):
  """torchvision.ops.Conv2dNormActivation as RAFT builds it: conv (with bias), norm, ReLU.

  norm: "instance" (InstanceNorm2d, affine=False: no parameters), "batch" (BatchNorm2d) or "none".
  """
  features: int
  kernel_size: object = 3
  stride: int = 1
  norm: str = "none"
  relu: bool = True
  kernel_init: object = TORCH_DEFAULT_INIT

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = conv2d(self.features, self.kernel_size, self.stride, self.kernel_init, name="conv")(x)
    # Two-pass variances (use_fast_variance=False): torch computes E[(x - mean)^2].
    if self.norm == "instance":
      x = nn.InstanceNorm(epsilon=NORM_EPS, use_bias=False, use_scale=False, use_fast_variance=False)(x)
    elif self.norm == "batch":
      x = nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM, epsilon=NORM_EPS,
                       use_fast_variance=False, name="norm")(x)
    elif self.norm != "none":
      raise ValueError(f"unknown norm {self.norm!r}; use instance, batch or none")
    return nn.relu(x) if self.relu else x


class ResidualBlock(nn.Module):
  """torchvision's ResidualBlock (raft_large): two 3x3 conv-norm-relu, projected shortcut if strided."""
  features: int
  norm: str
  stride: int = 1

  @nn.compact
  def __call__(self, x, train: bool = False):
    cna = functools.partial(ConvNormAct, norm=self.norm, kernel_init=ENCODER_INIT)
    y = cna(self.features, 3, self.stride, name="convnormrelu1")(x, train)
    y = cna(self.features, 3, name="convnormrelu2")(y, train)
    if self.stride != 1:
      x = cna(self.features, 1, self.stride, relu=False, name="downsample")(x, train)
    return nn.relu(x + y)


class BottleneckBlock(nn.Module):
  """torchvision's BottleneckBlock (raft_small): 1x1 -> 3x3 (strided) -> 1x1 at features // 4."""
  features: int
  norm: str
  stride: int = 1

  @nn.compact
  def __call__(self, x, train: bool = False):
    cna = functools.partial(ConvNormAct, norm=self.norm, kernel_init=ENCODER_INIT)
    y = cna(self.features // 4, 1, name="convnormrelu1")(x, train)
    y = cna(self.features // 4, 3, self.stride, name="convnormrelu2")(y, train)
    y = cna(self.features, 1, name="convnormrelu3")(y, train)
    if self.stride != 1:
      x = cna(self.features, 1, self.stride, relu=False, name="downsample")(x, train)
    return nn.relu(x + y)


BLOCKS = {"residual": ResidualBlock, "bottleneck": BottleneckBlock}


class FeatureEncoder(nn.Module):
  """Feature / context encoder: 7x7 stem, three stages of two blocks, 1x1 projection; stride 8."""
  layers: Sequence[int]
  block: str
  norm: str
  strides: Sequence[int] = (2, 1, 2, 2)

  @nn.compact
  def __call__(self, x, train: bool = False):
    block = BLOCKS[self.block]
    x = ConvNormAct(self.layers[0], 7, self.strides[0], norm=self.norm, kernel_init=ENCODER_INIT,
                    name="convnormrelu")(x, train)
    for stage in range(1, 4):
      x = block(self.layers[stage], self.norm, self.strides[stage], name=f"layer{stage}_0")(x, train)
      x = block(self.layers[stage], self.norm, 1, name=f"layer{stage}_1")(x, train)
    return conv2d(self.layers[4], 1, kernel_init=ENCODER_INIT, name="conv")(x)


# --- correlation ------------------------------------------------------------------------------

def pyramid_min_size(num_levels: int) -> int:
  """Smallest feature map the pyramid takes: its coarsest level must keep >= 2 pixels a side
  (torchvision: grid_sample gives NaN otherwise)."""
  return 2 * 2 ** (num_levels - 1)


def avg_pool2x2(volume):
  """2x2 average pool over the last two axes, dropping an odd last row/column (avg_pool2d)."""
  *lead, h, w = volume.shape
  return volume[..., :h // 2 * 2, :w // 2 * 2].reshape(*lead, h // 2, 2, w // 2, 2).mean(axis=(-3, -1))


def correlation_pyramid(fmap1, fmap2, num_levels: int):
  """All-pairs correlation fmap1[b,i,j] . fmap2[b,k,l] / sqrt(C), shape [B,h,w,h,w], and its
  2x2 average pools over the last two axes (floor for odd sizes, as avg_pool2d)."""
  if fmap1.shape != fmap2.shape:
    raise ValueError(f"feature maps differ in shape: {fmap1.shape} != {fmap2.shape}")
  _, h, w, c = fmap1.shape
  if min(h, w) < pyramid_min_size(num_levels):
    raise ValueError(f"feature maps {h}x{w} are too small for a {num_levels}-level correlation pyramid "
                     f"(need >= {pyramid_min_size(num_levels)} a side, i.e. images >= "
                     f"{DOWNSAMPLE * pyramid_min_size(num_levels)} px)")
  corr = jnp.einsum("bijc,bklc->bijkl", fmap1, fmap2) / jnp.sqrt(jnp.float32(c))
  pyramid = [corr]
  for _ in range(num_levels - 1):
    pyramid.append(avg_pool2x2(pyramid[-1]))
  return pyramid


def lookup_level(volume, coords, radius: int):
  """Bilinear samples of volume[b,i,j] (an [H,W] map) at coords[b,i,j] + (dx, dy), |d|_inf <= radius.

  Zero outside the map (grid_sample's padding_mode="zeros", align_corners=True on absolute
  pixel coordinates). Channel order is torchvision's: dx-major, i.e. channel (dx+r)*(2r+1)+(dy+r).
  The offsets are integers, so all samples of a pixel share its fractional weights: gather one
  (2r+2)^2 integer window and blend it, instead of 4 * (2r+1)^2 gathers.
  """
  b, h, w, hh, ww = volume.shape
  side = 2 * radius + 1
  # Far outside the map every tap is zero anyway; clipping keeps the int cast finite.
  x = jnp.clip(coords[..., 0], -radius - 2.0, ww + radius + 1.0)
  y = jnp.clip(coords[..., 1], -radius - 2.0, hh + radius + 1.0)
  x0, y0 = jnp.floor(x), jnp.floor(y)
  fx, fy = (x - x0)[..., None, None], (y - y0)[..., None, None]
  taps = jnp.arange(-radius, radius + 2)
  xs = x0.astype(jnp.int32)[..., None] + taps  # [b,h,w,side+1]
  ys = y0.astype(jnp.int32)[..., None] + taps
  inside = ((ys >= 0) & (ys < hh))[..., :, None] & ((xs >= 0) & (xs < ww))[..., None, :]
  index = jnp.clip(ys, 0, hh - 1)[..., :, None] * ww + jnp.clip(xs, 0, ww - 1)[..., None, :]
  window = jnp.take_along_axis(volume.reshape(b, h, w, hh * ww), index.reshape(b, h, w, -1), axis=-1)
  window = jnp.where(inside, window.reshape(index.shape), 0.0)  # [b,h,w,y,x]
  out = ((1 - fy) * ((1 - fx) * window[..., :-1, :-1] + fx * window[..., :-1, 1:])
         + fy * ((1 - fx) * window[..., 1:, :-1] + fx * window[..., 1:, 1:]))
  return jnp.swapaxes(out, -1, -2).reshape(b, h, w, side * side)


def lookup_pyramid(pyramid, coords, radius: int):
  """Correlation features [B,h,w,levels*(2r+1)^2]; level l is looked up at coords / 2^l."""
  feats = [lookup_level(vol, coords / 2 ** level, radius) for level, vol in enumerate(pyramid)]
  return jnp.concatenate(feats, axis=-1)


def coords_grid(batch: int, h: int, w: int):
  """Pixel coordinates (x, y) [B,h,w,2]."""
  ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")
  return jnp.broadcast_to(jnp.stack([xs, ys], -1), (batch, h, w, 2))


# --- upsampling -------------------------------------------------------------------------------

def _align_corners_matrix(n_in: int, n_out: int) -> np.ndarray:
  """[n_out, n_in] linear interpolation weights with align_corners=True."""
  src = np.arange(n_out) * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
  i0 = np.clip(np.floor(src).astype(int), 0, n_in - 1)
  i1 = np.minimum(i0 + 1, n_in - 1)
  frac = src - i0
  m = np.zeros((n_out, n_in), np.float32)
  np.add.at(m, (np.arange(n_out), i0), 1 - frac)
  np.add.at(m, (np.arange(n_out), i1), frac)
  return m


def upsample_bilinear(flow, factor: int = DOWNSAMPLE):
  """factor * F.interpolate(flow, scale x factor, bilinear, align_corners=True) (raft_small)."""
  _, h, w, _ = flow.shape
  my = jnp.asarray(_align_corners_matrix(h, h * factor))
  mx = jnp.asarray(_align_corners_matrix(w, w * factor))
  return factor * jnp.einsum("Yy,byxc,Xx->bYXc", my, flow, mx, precision=jax.lax.Precision.HIGHEST)


def upsample_convex(flow, mask, factor: int = DOWNSAMPLE):
  """Each fine pixel is a softmax-weighted (convex) mix of its coarse pixel's 3x3 neighbourhood
  of factor * flow (zero padded, as F.unfold); mask [B,h,w,9*factor*factor] is ordered
  (tap, sub-row, sub-column) like torchvision's view(B, 1, 9, f, f, h, w)."""
  b, h, w, c = flow.shape
  mask = jax.nn.softmax(mask.reshape(b, h, w, CONVEX_TAPS, factor, factor), axis=3)
  padded = jnp.pad(factor * flow, ((0, 0), (1, 1), (1, 1), (0, 0)))
  taps = jnp.stack([padded[:, dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)], axis=3)
  up = jnp.einsum("bhwkyx,bhwkc->bhywxc", mask, taps, precision=jax.lax.Precision.HIGHEST)
  return up.reshape(b, h * factor, w * factor, c)


# --- update block -----------------------------------------------------------------------------

class MotionEncoder(nn.Module):
  """Encodes the current flow and the correlation features; the flow is appended to the output."""
  corr_layers: Sequence[int]
  flow_layers: Sequence[int]
  out_channels: int

  @nn.compact
  def __call__(self, flow, corr):
    corr = ConvNormAct(self.corr_layers[0], 1, name="convcorr1")(corr)
    if len(self.corr_layers) == 2:
      corr = ConvNormAct(self.corr_layers[1], 3, name="convcorr2")(corr)
    f = ConvNormAct(self.flow_layers[0], 7, name="convflow1")(flow)
    f = ConvNormAct(self.flow_layers[1], 3, name="convflow2")(f)
    # out_channels - 2: the flow itself is concatenated at the end.
    x = ConvNormAct(self.out_channels - flow.shape[-1], 3, name="conv")(jnp.concatenate([corr, f], -1))
    return jnp.concatenate([x, flow], -1)


class ConvGRU(nn.Module):
  """Convolutional GRU cell."""
  hidden_size: int
  kernel_size: object

  @nn.compact
  def __call__(self, h, x):
    hx = jnp.concatenate([h, x], -1)
    z = nn.sigmoid(conv2d(self.hidden_size, self.kernel_size, name="convz")(hx))
    r = nn.sigmoid(conv2d(self.hidden_size, self.kernel_size, name="convr")(hx))
    q = jnp.tanh(conv2d(self.hidden_size, self.kernel_size, name="convq")(jnp.concatenate([r * h, x], -1)))
    return (1 - z) * h + z * q


class RecurrentBlock(nn.Module):
  """One GRU per kernel: (3,) for small; separable ((1, 5), (5, 1)) for large."""
  hidden_size: int
  kernel_sizes: Sequence

  @nn.compact
  def __call__(self, h, x):
    for i, k in enumerate(self.kernel_sizes):
      h = ConvGRU(self.hidden_size, k, name=f"convgru{i + 1}")(h, x)
    return h


class FlowHead(nn.Module):
  hidden_size: int

  @nn.compact
  def __call__(self, h):
    return conv2d(2, 3, name="conv2")(nn.relu(conv2d(self.hidden_size, 3, name="conv1")(h)))


class UpdateBlock(nn.Module):
  """One RAFT iteration (the body of the scan): look up correlations at the current estimate,
  update the hidden state, add the predicted delta. `emit` returns (hidden, flow) per iteration
  (for the sequence loss and per-iteration upsampling) instead of nothing."""
  corr_radius: int
  corr_layers: Sequence[int]
  flow_layers: Sequence[int]
  motion_out: int
  hidden_size: int
  gru_kernels: Sequence
  flow_head_hidden: int
  emit: bool = False

  @nn.compact
  def __call__(self, carry, context, pyramid, coords0):
    hidden, coords1 = carry
    coords1 = jax.lax.stop_gradient(coords1)  # as torchvision: no gradient through past estimates
    corr = lookup_pyramid(pyramid, coords1, self.corr_radius)
    flow = coords1 - coords0
    motion = MotionEncoder(self.corr_layers, self.flow_layers, self.motion_out, name="motion_encoder")(flow, corr)
    hidden = RecurrentBlock(self.hidden_size, self.gru_kernels, name="recurrent_block")(
        hidden, jnp.concatenate([context, motion], -1))
    coords1 = coords1 + FlowHead(self.flow_head_hidden, name="flow_head")(hidden)
    return (hidden, coords1), ((hidden, coords1 - coords0) if self.emit else None)


class MaskPredictor(nn.Module):
  """Convex-upsampling weights from the hidden state (raft_large only)."""
  hidden_size: int
  multiplier: float  # torchvision scales by 0.25 to "downweight the gradients" of this branch

  @nn.compact
  def __call__(self, h):
    x = ConvNormAct(self.hidden_size, 3, name="convrelu")(h)
    return self.multiplier * conv2d(CONVEX_TAPS * DOWNSAMPLE ** 2, 1, name="conv")(x)


class RAFT(nn.Module):
  """RAFT on normalised images [B,H,W,3] in [-1, 1], H and W multiples of 8.

  Returns the flow [B,H,W,2] after `num_iters` updates, or every iteration's [iters,B,H,W,2]
  with `all_predictions` (training). Iterations run in `nn.scan` (one compiled body).
  """
  feature_layers: Sequence[int]
  feature_block: str
  feature_norm: str
  context_layers: Sequence[int]
  context_block: str
  context_norm: str
  corr_levels: int
  corr_radius: int
  motion_corr_layers: Sequence[int]
  motion_flow_layers: Sequence[int]
  motion_out: int
  hidden_size: int
  gru_kernels: Sequence
  flow_head_hidden: int
  mask_hidden: int  # 0: bilinear upsampling (raft_small)
  mask_multiplier: float = 0.25
  # Unroll the scan into straight-line code (one traced body, num_iters compiled copies). On
  # XLA:CPU the while loop of a rolled scan ran 1.5x slower at inference (raft_small, 854x480,
  # 12 iterations) and 7x slower in training (value_and_grad at 128x192): measured on 2 cores.
  unroll: bool = False

  @nn.compact
  def __call__(self, image1, image2, num_iters: int = 12, train: bool = False, all_predictions: bool = False):
    b, h, w, _ = image1.shape
    if image2.shape != image1.shape:
      raise ValueError(f"images differ in shape: {image1.shape} != {image2.shape}")
    if h % DOWNSAMPLE or w % DOWNSAMPLE:
      raise ValueError(f"image size {h}x{w} is not a multiple of {DOWNSAMPLE}; pad it (RAFTFlow does)")
    # One encoder pass for both images, as torchvision (instance norm is per image anyway).
    fmaps = FeatureEncoder(self.feature_layers, self.feature_block, self.feature_norm, name="feature_encoder")(
        jnp.concatenate([image1, image2], 0), train)
    fmap1, fmap2 = jnp.split(fmaps, 2, axis=0)
    pyramid = correlation_pyramid(fmap1, fmap2, self.corr_levels)

    ctx = FeatureEncoder(self.context_layers, self.context_block, self.context_norm, name="context_encoder")(
        image1, train)
    hidden, context = jnp.tanh(ctx[..., :self.hidden_size]), nn.relu(ctx[..., self.hidden_size:])
    coords0 = coords_grid(b, h // DOWNSAMPLE, w // DOWNSAMPLE)

    scan = nn.scan(UpdateBlock, variable_broadcast="params", split_rngs={"params": False},
                   in_axes=(nn.broadcast, nn.broadcast, nn.broadcast), length=num_iters,
                   unroll=num_iters if self.unroll else 1)
    step = scan(self.corr_radius, self.motion_corr_layers, self.motion_flow_layers, self.motion_out,
                self.hidden_size, self.gru_kernels, self.flow_head_hidden, emit=all_predictions,
                name="update_block")
    (hidden, coords1), emitted = step((hidden, coords0), context, pyramid, coords0)
    if all_predictions:
      hiddens, flows = emitted  # [iters,B,h,w,*]: upsample all iterations as one batch
      hiddens, flows = hiddens.reshape(-1, *hiddens.shape[2:]), flows.reshape(-1, *flows.shape[2:])
    else:
      hiddens, flows = hidden, coords1 - coords0
    if self.mask_hidden:
      up = upsample_convex(flows, MaskPredictor(self.mask_hidden, self.mask_multiplier, name="mask_predictor")(hiddens))
    else:
      up = upsample_bilinear(flows)
    return up.reshape(num_iters, b, h, w, 2) if all_predictions else up


def model_from_config(model_config) -> RAFT:
  """RAFT from a config's `model` section (configs/raft_small.py, configs/raft_large.py)."""
  m = model_config
  return RAFT(
      feature_layers=tuple(m.feature_layers), feature_block=m.feature_block, feature_norm=m.feature_norm,
      context_layers=tuple(m.context_layers), context_block=m.context_block, context_norm=m.context_norm,
      corr_levels=m.corr_levels, corr_radius=m.corr_radius,
      motion_corr_layers=tuple(m.motion_corr_layers), motion_flow_layers=tuple(m.motion_flow_layers),
      motion_out=m.motion_out, hidden_size=m.hidden_size,
      gru_kernels=tuple(_pair(k) for k in m.gru_kernels), flow_head_hidden=m.flow_head_hidden,
      mask_hidden=m.mask_hidden, mask_multiplier=m.get("mask_multiplier", 0.25),
      unroll=m.get("unroll_iterations", False))


def normalize(frames):
  """uint8 RGB -> [-1, 1], as torchvision's OpticalFlow transform."""
  return 2.0 * (jnp.asarray(frames, jnp.float32) / 255.0) - 1.0


def pad_amounts(h: int, w: int, multiple: int = DOWNSAMPLE) -> Tuple[Tuple[int, int], Tuple[int, int]]:
  """InputPadder "sintel" mode: pad to a multiple, split evenly (extra pixel after)."""
  ph, pw = -h % multiple, -w % multiple
  return (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)


def pad_frames(frames, multiple: int = DOWNSAMPLE):
  """[..., H, W, C] replicate-padded to multiples of `multiple`; returns it and the pads."""
  (top, bottom), (left, right) = pads = pad_amounts(frames.shape[-3], frames.shape[-2], multiple)
  widths = [(0, 0)] * (frames.ndim - 3) + [(top, bottom), (left, right), (0, 0)]
  return jnp.pad(frames, widths, mode="edge"), pads


def unpad(x, pads):
  (top, bottom), (left, right) = pads
  return x[..., top:x.shape[-3] - bottom, left:x.shape[-2] - right, :]


def init_variables(model: RAFT, seed: int = 0, height: int = 128, width: int = 128):
  """Random variables with torchvision's initialisers, drawn in numpy, deterministic by seed.

  Same distributions as the modules' kernel_init (encoder kernels kaiming_normal(fan_out),
  other kernels U(+-1/sqrt(fan_in)), biases zero, BatchNorm at identity), but only the shapes
  are traced: compiling `model.init` costs 15-30 s on 2 CPU cores, this under 2 s.
  """
  z = jax.ShapeDtypeStruct((1, height, width, 3), jnp.float32)
  shapes = jax.eval_shape(lambda r, a, b: model.init(r, a, b, 1), jax.random.key(0), z, z)
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    names = [getattr(k, "key", str(k)) for k in path]
    shape, last = leaf.shape, names[-1]
    if last == "kernel":
      kh, kw, cin, cout = shape
      if names[1] in ("feature_encoder", "context_encoder"):
        return rng.normal(0.0, np.sqrt(2.0 / (kh * kw * cout)), shape).astype(np.float32)
      bound = 1.0 / np.sqrt(kh * kw * cin)
      return rng.uniform(-bound, bound, shape).astype(np.float32)
    return np.full(shape, 1.0 if last in ("scale", "var") else 0.0, np.float32)

  return jax.tree.map(jnp.asarray, jax.tree_util.tree_map_with_path(draw, shapes))


class RAFTFlow:
  """`FlowBackend` on RAFT: uint8 RGB frames in, flow (H, W, 2) float32 in pixels out.

  One jitted function per frame size and batch (padding, normalisation and unpadding inside);
  repeated calls on frames of one size compile once.
  """

  def __init__(self, config, variables, num_iters: Optional[int] = None, tag: str = ""):
    self.config = config
    self.model = model_from_config(config.model)
    self.variables = variables
    self.num_iters = int(num_iters or config.num_iters)
    # Weights are part of the identity: flow caches must not mix random and trained flows.
    self.name = f"raft-{config.variant}-{self.num_iters}it" + (f"-{tag}" if tag else "")
    self.traces = 0  # how many times the forward was traced (compiled), for tests and benches
    self._forward = jax.jit(self._batched)

  @classmethod
  def from_weights(cls, path, num_iters: Optional[int] = None) -> "RAFTFlow":
    """The RAFT of a weights file (`models.weights.save_weights(..., kind="raft")`, written by
    experiments/train_raft.py --export); InputError when it is not RAFT weights or does not fit
    the model its config builds. The file's name tags the flows (cache keys)."""
    from vsreid_jax import configs  # pylint: disable=g-import-not-at-top
    from vsreid_jax.errors import InputError  # pylint: disable=g-import-not-at-top
    from vsreid_jax.models import weights  # pylint: disable=g-import-not-at-top
    w = weights.load_net_weights(path, "raft")
    try:
      config = w.config or configs.get("raft", w.name)
    except InputError as e:
      raise InputError(f"{w.path}: weights name an unknown RAFT config: {e}") from None
    model, z = model_from_config(config.model), jax.ShapeDtypeStruct((1, 128, 128, 3), jnp.float32)
    weights.check_variables(w.path, w.variables, jax.eval_shape(
        lambda a, b: model.init(jax.random.key(0), a, b, 1), z, z), w.name)
    tag = os.path.splitext(os.path.basename(w.path))[0]
    return cls(config, jax.tree.map(jnp.asarray, w.variables), num_iters, tag=tag)

  def _batched(self, variables, frames_a, frames_b):
    self.traces += 1
    (a, pads), (b, _) = pad_frames(normalize(frames_a)), pad_frames(normalize(frames_b))
    return unpad(self.model.apply(variables, a, b, self.num_iters), pads)

  def flow_pairs(self, frames_a: np.ndarray, frames_b: np.ndarray) -> np.ndarray:
    """Flows [N,H,W,2] for frames [N,H,W,3] (one batched forward)."""
    if frames_a.shape != frames_b.shape or frames_a.ndim != 4:
      raise ValueError(f"expected two [N,H,W,3] frame batches of one shape, got {frames_a.shape} and {frames_b.shape}")
    return np.asarray(self._forward(self.variables, frames_a, frames_b), np.float32)

  def flow(self, frame_a: np.ndarray, frame_b: np.ndarray) -> np.ndarray:
    return self.flow_pairs(np.asarray(frame_a)[None], np.asarray(frame_b)[None])[0]
