"""Box utilities of torchvision's detection code, in jnp with fixed shapes.

Boxes are (x0, y0, x1, y1) in pixels, areas without the "+1" (torchvision.ops.box_area). Every
function that would drop boxes in torchvision returns a `valid` mask instead, so that shapes stay
static under jit; `select_top` turns a mask plus an order into the first K survivors.
"""
import math
from typing import Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

# torchvision.models.detection._utils.BoxCoder: exp() of a width delta is clipped at log(1000/16).
BBOX_XFORM_CLIP = math.log(1000.0 / 16)


def base_anchors(sizes: Sequence[float], aspect_ratios: Sequence[float]) -> np.ndarray:
  """torchvision AnchorGenerator.generate_anchors: [len(ratios) * len(sizes), 4], rounded."""
  scales = np.asarray(sizes, np.float32)
  ratios = np.asarray(aspect_ratios, np.float32)
  h_ratios = np.sqrt(ratios)
  w_ratios = np.float32(1) / h_ratios
  ws = (w_ratios[:, None] * scales[None, :]).reshape(-1)
  hs = (h_ratios[:, None] * scales[None, :]).reshape(-1)
  return np.round(np.stack([-ws, -hs, ws, hs], axis=1) / 2).astype(np.float32)


def grid_anchors(image_hw: Tuple[int, int], feature_hw: Tuple[int, int],
                 cell_anchors: np.ndarray) -> np.ndarray:
  """Anchors of one level, location-major ([H, W, A] flattened) like torchvision.

  The stride is image_size // feature_size of the padded batch image, as torchvision has it.
  """
  stride_h = image_hw[0] // feature_hw[0]
  stride_w = image_hw[1] // feature_hw[1]
  shift_y, shift_x = np.meshgrid(np.arange(feature_hw[0], dtype=np.float32) * stride_h,
                                 np.arange(feature_hw[1], dtype=np.float32) * stride_w, indexing="ij")
  shifts = np.stack([shift_x, shift_y, shift_x, shift_y], axis=-1).reshape(-1, 1, 4)
  return (shifts + cell_anchors[None]).reshape(-1, 4).astype(np.float32)


def anchors_for(image_hw, feature_hws, sizes, aspect_ratios):
  """All levels' anchors [N, 4] and each anchor's level [N] (numpy, static under jit)."""
  out, levels = [], []
  for lvl, (fhw, s, r) in enumerate(zip(feature_hws, sizes, aspect_ratios)):
    a = grid_anchors(image_hw, fhw, base_anchors(s, r))
    out.append(a)
    levels.append(np.full((len(a),), lvl, np.int32))
  return np.concatenate(out), np.concatenate(levels)


def encode(gt: jnp.ndarray, ref: jnp.ndarray, weights) -> jnp.ndarray:
  """BoxCoder.encode_single: regression targets of gt boxes w.r.t. reference boxes [..., 4]."""
  wx, wy, ww, wh = weights
  ref_w = ref[..., 2] - ref[..., 0]
  ref_h = ref[..., 3] - ref[..., 1]
  ref_x = ref[..., 0] + 0.5 * ref_w
  ref_y = ref[..., 1] + 0.5 * ref_h
  gt_w = gt[..., 2] - gt[..., 0]
  gt_h = gt[..., 3] - gt[..., 1]
  gt_x = gt[..., 0] + 0.5 * gt_w
  gt_y = gt[..., 1] + 0.5 * gt_h
  return jnp.stack([wx * (gt_x - ref_x) / ref_w, wy * (gt_y - ref_y) / ref_h,
                    ww * jnp.log(gt_w / ref_w), wh * jnp.log(gt_h / ref_h)], axis=-1)


def decode(deltas: jnp.ndarray, ref: jnp.ndarray, weights) -> jnp.ndarray:
  """BoxCoder.decode_single: boxes from deltas [..., 4] and reference boxes [..., 4]."""
  wx, wy, ww, wh = weights
  w = ref[..., 2] - ref[..., 0]
  h = ref[..., 3] - ref[..., 1]
  cx = ref[..., 0] + 0.5 * w
  cy = ref[..., 1] + 0.5 * h
  dx, dy = deltas[..., 0] / wx, deltas[..., 1] / wy
  dw = jnp.minimum(deltas[..., 2] / ww, BBOX_XFORM_CLIP)
  dh = jnp.minimum(deltas[..., 3] / wh, BBOX_XFORM_CLIP)
  pcx, pcy = dx * w + cx, dy * h + cy
  half_w, half_h = 0.5 * jnp.exp(dw) * w, 0.5 * jnp.exp(dh) * h
  return jnp.stack([pcx - half_w, pcy - half_h, pcx + half_w, pcy + half_h], axis=-1)


def clip(boxes: jnp.ndarray, image_hw) -> jnp.ndarray:
  """clip_boxes_to_image: x to [0, W], y to [0, H] of the unpadded image."""
  h, w = image_hw
  x = jnp.clip(boxes[..., 0::2], 0, w)
  y = jnp.clip(boxes[..., 1::2], 0, h)
  return jnp.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], axis=-1)


def not_small(boxes: jnp.ndarray, min_size: float) -> jnp.ndarray:
  """remove_small_boxes as a mask."""
  return ((boxes[..., 2] - boxes[..., 0]) >= min_size) & ((boxes[..., 3] - boxes[..., 1]) >= min_size)


def area(boxes: jnp.ndarray) -> jnp.ndarray:
  return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def iou(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
  """torchvision box_iou [N, M] (no clamping of the union: valid boxes have positive area)."""
  lt = jnp.maximum(a[:, None, :2], b[None, :, :2])
  rb = jnp.minimum(a[:, None, 2:], b[None, :, 2:])
  wh = jnp.clip(rb - lt, 0)
  inter = wh[..., 0] * wh[..., 1]
  union = area(a)[:, None] + area(b)[None, :] - inter
  # Padding boxes of zero area would give 0/0.
  return jnp.where(union > 0, inter / jnp.where(union > 0, union, 1.0), 0.0)


def nms(boxes: jnp.ndarray, scores: jnp.ndarray, valid: jnp.ndarray, iou_threshold: float,
        groups: jnp.ndarray = None) -> Tuple[jnp.ndarray, jnp.ndarray]:
  """Greedy NMS of N boxes with a fixed shape, per group as torchvision.ops.batched_nms.

  batched_nms offsets each group's boxes so that groups never overlap; masking the IoU of pairs
  from different groups is the same thing. Returns (order [N]: indices by decreasing score,
  keep [N]: whether order[i] survives); invalid boxes are never kept nor suppress anything.
  """
  order = jnp.argsort(jnp.where(valid, scores, -jnp.inf), descending=True, stable=True)
  b = boxes[order]
  v = valid[order]
  overlap = iou(b, b) > iou_threshold
  if groups is not None:
    g = groups[order]
    overlap &= g[:, None] == g[None, :]

  def body(i, keep):
    # keep[j] is still False for j >= i, so this looks at higher-scoring kept boxes only.
    suppressed = jnp.any(keep & overlap[i])
    return keep.at[i].set(v[i] & ~suppressed)

  keep = jax.lax.fori_loop(0, b.shape[0], body, jnp.zeros(b.shape[0], bool))
  return order, keep


def select_top(order: jnp.ndarray, keep: jnp.ndarray, k: int) -> Tuple[jnp.ndarray, jnp.ndarray]:
  """The first k kept entries of `order` (padded with invalid ones): (indices [k], valid [k])."""
  first = jnp.argsort(~keep, stable=True)[:k]  # kept entries first, score order preserved
  if first.shape[0] < k:
    pad = k - first.shape[0]
    return (jnp.concatenate([order[first], jnp.zeros(pad, order.dtype)]),
            jnp.concatenate([keep[first], jnp.zeros(pad, bool)]))
  return order[first], keep[first]
