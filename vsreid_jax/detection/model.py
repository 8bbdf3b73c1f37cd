"""Faster R-CNN with FPN (torchvision `fasterrcnn_resnet50_fpn` semantics) in flax, fixed shapes.

`FasterRCNN` holds the learnt parts (ResNet + FPN, RPN head, box head); the pure functions below
are torchvision's non-learnt steps with masks instead of dropped boxes: `propose` (per-level
top-k, decode, clip, min-size and score masks, NMS per level, first post_nms_top_n) and
`postprocess` (softmax, per-class decode, score threshold, NMS per class, first M detections).
The backbone's BatchNorm always uses its running averages (torchvision's FrozenBatchNorm2d).
"""
import functools
from typing import Any, Dict, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vsreid_jax.detection import boxes as box_ops
from vsreid_jax.detection.roi_align import infer_scales, multiscale_roi_align
from vsreid_jax.models import resnet

RPN_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
# torchvision's FPN convs: kaiming_uniform_(a=1) == variance 1/fan_in, uniform.
FPN_INIT = nn.initializers.variance_scaling(1.0, "fan_in", "uniform")
HEAD_INIT = nn.initializers.normal(0.01)  # RPNHead init in torchvision


def nearest_resize(x: jnp.ndarray, hw: Tuple[int, int]) -> jnp.ndarray:
  """F.interpolate(mode="nearest", size=hw) on [B, H, W, C]: source index floor(dst * in / out)."""
  ys = np.minimum(np.floor(np.arange(hw[0]) * (x.shape[1] / hw[0])), x.shape[1] - 1).astype(np.int32)
  xs = np.minimum(np.floor(np.arange(hw[1]) * (x.shape[2] / hw[1])), x.shape[2] - 1).astype(np.int32)
  return x[:, ys][:, :, xs]


class FPN(nn.Module):
  """FeaturePyramidNetwork + LastLevelMaxPool: maps of layer1..layer4 -> 5 maps of `channels`."""
  channels: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, feats: Sequence[jnp.ndarray]):
    conv = functools.partial(nn.Conv, self.channels, dtype=self.dtype, kernel_init=FPN_INIT)
    n = len(feats)
    last = conv((1, 1), name=f"inner_blocks_{n - 1}")(feats[-1])
    results = [conv((3, 3), padding=((1, 1), (1, 1)), name=f"layer_blocks_{n - 1}")(last)]
    for i in range(n - 2, -1, -1):
      lateral = conv((1, 1), name=f"inner_blocks_{i}")(feats[i])
      last = lateral + nearest_resize(last, lateral.shape[1:3])
      results.insert(0, conv((3, 3), padding=((1, 1), (1, 1)), name=f"layer_blocks_{i}")(last))
    results.append(results[-1][:, ::2, ::2])  # max_pool2d(kernel 1, stride 2)
    return results


class RPNHead(nn.Module):
  """3x3 conv + ReLU, then objectness [B, H*W*A] and deltas [B, H*W*A, 4] (location-major)."""
  num_anchors: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    x = nn.relu(nn.Conv(c, (3, 3), padding=((1, 1), (1, 1)), kernel_init=HEAD_INIT, dtype=self.dtype,
                        name="conv")(x))
    logits = nn.Conv(self.num_anchors, (1, 1), kernel_init=HEAD_INIT, dtype=self.dtype,
                     name="cls_logits")(x)
    deltas = nn.Conv(4 * self.num_anchors, (1, 1), kernel_init=HEAD_INIT, dtype=self.dtype,
                     name="bbox_pred")(x)
    b = x.shape[0]
    return logits.reshape(b, -1), deltas.reshape(b, -1, 4)  # channel a*4+k == torch's view(A, 4)


class BoxHead(nn.Module):
  """TwoMLPHead + FastRCNNPredictor on pooled RoIs [..., S, S, C] (flattened in torch's C, H, W
  order, so imported fc6 weights apply unchanged)."""
  representation_size: int
  num_classes: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, pooled):
    lead = pooled.shape[:-3]
    x = jnp.moveaxis(pooled, -1, -3).reshape(lead + (-1,))
    x = nn.relu(nn.Dense(self.representation_size, dtype=self.dtype, name="fc6")(x))
    x = nn.relu(nn.Dense(self.representation_size, dtype=self.dtype, name="fc7")(x))
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="cls_score")(x)
    deltas = nn.Dense(4 * self.num_classes, dtype=self.dtype, name="bbox_pred")(x)
    return logits, deltas.reshape(lead + (self.num_classes, 4))


class FasterRCNN(nn.Module):
  """The learnt parts; `__call__` (used for init) runs all of them on given RoIs."""
  stage_sizes: Sequence[int] = (3, 4, 6, 3)
  block: str = "bottleneck"
  width: int = 64
  fpn_channels: int = 256
  num_anchors: int = 3
  representation_size: int = 1024
  num_classes: int = 2
  dtype: Any = jnp.float32

  def setup(self):
    self.backbone = resnet.ResNet(stage_sizes=tuple(self.stage_sizes), block_cls=resnet.BLOCKS[self.block],
                                  width=self.width, dtype=self.dtype)
    self.fpn = FPN(self.fpn_channels, dtype=self.dtype)
    self.rpn_head = RPNHead(self.num_anchors, dtype=self.dtype)
    self.box_head = BoxHead(self.representation_size, self.num_classes, dtype=self.dtype)

  def features(self, images):
    """Normalised images [B, H, W, 3] -> 5 FPN maps (strides 4..64)."""
    _, f = self.backbone(images, train=False, return_features=True)  # frozen BN
    return self.fpn([f[f"layer{i}"] for i in range(1, len(self.stage_sizes) + 1)])

  def rpn(self, features):
    outs = [self.rpn_head(f) for f in features]
    return jnp.concatenate([o[0] for o in outs], 1), jnp.concatenate([o[1] for o in outs], 1)

  def roi_head(self, pooled):
    return self.box_head(pooled)

  def __call__(self, images, pooled):
    feats = self.features(images)
    return self.rpn(feats), self.roi_head(pooled)


def build_model(config) -> FasterRCNN:
  m = config.model
  return FasterRCNN(stage_sizes=tuple(m.backbone.stage_sizes), block=m.backbone.block,
                    width=m.backbone.width, fpn_channels=m.fpn_channels,
                    num_anchors=len(m.anchor_sizes[0]) * len(m.aspect_ratios),
                    representation_size=m.representation_size, num_classes=m.num_classes,
                    dtype=jnp.dtype(m.dtype))


@functools.lru_cache(maxsize=8)
def _jitted_init(model: FasterRCNN, image_hw: Tuple[int, int], pool_size: int):
  pooled = (1, 1, pool_size, pool_size, model.fpn_channels)
  return jax.jit(lambda r: model.init(r, jnp.zeros((1,) + image_hw + (3,)), jnp.zeros(pooled)))


def init_variables(model: FasterRCNN, config, rng, image_hw=(64, 64)):
  """Random variables (one compilation per model and size: a resumed run re-initialises)."""
  return _jitted_init(model, tuple(image_hw), config.roi.output_size)(rng)


def normalize(images: jnp.ndarray, config) -> jnp.ndarray:
  """uint8/float RGB 0..255 -> (x - mean) / std (torchvision: x/255 - mean / std, in 0..1 units)."""
  mean = jnp.asarray(config.model.rgb_mean, jnp.float32)
  std = jnp.asarray(config.model.rgb_std, jnp.float32)
  return (images.astype(jnp.float32) - mean) / std


def padded_hw(config) -> Tuple[int, int]:
  """The input bucket padded to a multiple of size_divisible (GeneralizedRCNNTransform)."""
  d = config.input.size_divisible
  return (-(-config.input.height // d) * d, -(-config.input.width // d) * d)


def prepare(images: jnp.ndarray, config) -> jnp.ndarray:
  """uint8 [B, h, w, 3] (h, w = the bucket) -> normalised and zero-padded [B, Hp, Wp, 3] float32,
  what training and inference feed the net."""
  hp, wp = padded_hw(config)
  x = normalize(images, config)
  return jnp.pad(x, ((0, 0), (0, hp - x.shape[1]), (0, wp - x.shape[2]), (0, 0)))


def anchor_geometry(config, padded_hw, features):  # pylint: disable=redefined-outer-name
  """(anchors [N, 4], level of each anchor [N], (start, end) of each level) from the map shapes."""
  m = config.model
  hws = [tuple(f.shape[1:3]) for f in features]
  anchors, levels = box_ops.anchors_for(tuple(padded_hw), hws, m.anchor_sizes,
                                        [m.aspect_ratios] * len(hws))
  counts = [h * w * len(m.anchor_sizes[0]) * len(m.aspect_ratios) for h, w in hws]
  ends = np.cumsum(counts)
  return anchors, levels, list(zip(ends - counts, ends))


def propose(config, objectness, deltas, anchors, levels, spans, image_hw, training: bool = False):
  """RegionProposalNetwork.filter_proposals for a batch.

  Args:
    config: the detector config (its `rpn` section: top-n before / after NMS, thresholds).
    objectness: RPN logits [B, N] over all N anchors of all levels.
    deltas: RPN box deltas [B, N, 4].
    anchors: [N, 4] (x0, y0, x1, y1) in padded-input pixels (`anchor_geometry`).
    levels: [N] the feature level of each anchor (NMS runs per level).
    spans: (start, end) of each level's anchors in N.
    image_hw: (H, W) of the content, static: boxes are clipped to it.
    training: the train top-n settings instead of the test ones.

  Returns:
    boxes [B, P, 4], scores (sigmoid) [B, P], valid [B, P] with P = post_nms_top_n.
  """
  r = config.rpn
  pre = r.pre_nms_top_n_train if training else r.pre_nms_top_n_test
  post = r.post_nms_top_n_train if training else r.post_nms_top_n_test
  anchors = jnp.asarray(anchors)
  levels = jnp.asarray(levels)

  def one(obj, dlt):
    idx = jnp.concatenate([jax.lax.top_k(obj[s:e], min(pre, int(e - s)))[1] + s for s, e in spans])
    b = box_ops.clip(box_ops.decode(dlt[idx], anchors[idx], RPN_WEIGHTS), image_hw)
    p = jax.nn.sigmoid(obj[idx])
    valid = box_ops.not_small(b, r.min_size) & (p >= r.score_thresh)
    order, keep = box_ops.nms(b, p, valid, r.nms_thresh, levels[idx])
    sel, v = box_ops.select_top(order, keep, post)
    return b[sel], jnp.where(v, p[sel], 0.0), v

  objectness = jax.lax.stop_gradient(objectness.astype(jnp.float32))
  deltas = jax.lax.stop_gradient(deltas.astype(jnp.float32))
  return jax.vmap(one)(objectness, deltas)


def pool_rois(config, features, rois, image_hw):
  """MultiScaleRoIAlign over the first four FPN maps: rois [B, R, 4] -> [B, R, S, S, C]."""
  feats = features[:4]  # torchvision pools "0".."3", not "pool"
  scales = infer_scales([f.shape[1:3] for f in feats], image_hw)
  fn = functools.partial(multiscale_roi_align, scales=scales, output_size=config.roi.output_size,
                         sampling_ratio=config.roi.sampling_ratio)
  return jax.vmap(lambda fs, r: fn(fs, r))([f.astype(jnp.float32) for f in feats], rois)


def postprocess(config, class_logits, box_deltas, proposals, proposal_valid, image_hw):
  """RoIHeads.postprocess_detections: boxes [B, M, 4], scores [B, M], labels [B, M], valid."""
  c = config.roi

  def one(logits, deltas, props, pvalid):
    k = logits.shape[-1]
    b = box_ops.clip(box_ops.decode(deltas, props[:, None, :], c.bbox_reg_weights), image_hw)
    s = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    b, s = b[:, 1:].reshape(-1, 4), s[:, 1:].reshape(-1)  # background dropped
    labels = jnp.tile(jnp.arange(1, k), props.shape[0])
    valid = jnp.repeat(pvalid, k - 1) & (s > c.score_thresh) & box_ops.not_small(b, c.min_size)
    if s.shape[0] > c.max_candidates:  # many classes: NMS over the best candidates only
      _, top = jax.lax.top_k(jnp.where(valid, s, -1.0), c.max_candidates)
      b, s, labels, valid = b[top], s[top], labels[top], valid[top]
    order, keep = box_ops.nms(b, s, valid, c.nms_thresh, labels)
    sel, v = box_ops.select_top(order, keep, c.detections_per_img)
    return b[sel], jnp.where(v, s[sel], 0.0), jnp.where(v, labels[sel], 0), v

  return jax.vmap(one)(class_logits, box_deltas.astype(jnp.float32), proposals, proposal_valid)


def forward(model: FasterRCNN, config, variables, images, image_hw) -> Dict[str, jnp.ndarray]:
  """Inference on a batch of images.

  Args:
    model: the FasterRCNN module.
    config: its detector config.
    variables: {"params", "batch_stats"}.
    images: normalised, padded images [B, Hp, Wp, 3] float32 (`prepare`).
    image_hw: (H, W) of their content, static.

  Returns:
    {"proposals" [B, P, 4], "proposal_scores" [B, P], "proposal_valid" [B, P], "boxes" [B, M, 4],
    "scores" [B, M], "labels" [B, M], "valid" [B, M]}: the RPN's proposals and the detections
    (M = roi.detections_per_img), boxes (x0, y0, x1, y1) in the pixels of the images' content.
  """
  feats = model.apply(variables, images, method=FasterRCNN.features)
  objectness, deltas = model.apply(variables, feats, method=FasterRCNN.rpn)
  anchors, levels, spans = anchor_geometry(config, images.shape[1:3], feats)
  props, pscores, pvalid = propose(config, objectness, deltas, anchors, levels, spans, image_hw)
  pooled = pool_rois(config, feats, props, image_hw)
  logits, box_deltas = model.apply(variables, pooled.astype(model.dtype), method=FasterRCNN.roi_head)
  boxes, scores, labels, valid = postprocess(config, logits, box_deltas, props, pvalid, image_hw)
  return dict(proposals=props, proposal_scores=pscores, proposal_valid=pvalid,
              boxes=boxes, scores=scores, labels=labels, valid=valid)
