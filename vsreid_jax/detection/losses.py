"""Faster R-CNN training losses (torchvision RPN + RoIHeads) with fixed shapes.

Matching as torchvision's Matcher; the balanced sampler draws a random score per candidate and
keeps the top ones (positives first, capped at the positive fraction), so the number of sampled
anchors/RoIs is fixed and the loss normalisers are the sampled counts, as in torchvision.
"""
import jax
import jax.numpy as jnp

from vsreid_jax.detection import boxes as box_ops

IGNORE = -1
SMOOTH_L1_BETA = 1.0 / 9  # both losses, as torchvision


def smooth_l1(x: jnp.ndarray, beta: float = SMOOTH_L1_BETA) -> jnp.ndarray:
  ax = jnp.abs(x)
  return jnp.where(ax < beta, 0.5 * x * x / beta, ax - 0.5 * beta)


def match(gt: jnp.ndarray, gt_valid: jnp.ndarray, cand: jnp.ndarray, cand_valid: jnp.ndarray,
          fg_thresh: float, bg_thresh: float, allow_low_quality: bool):
  """Matcher: (matched gt index [N], label [N]: 1 fg, 0 bg, IGNORE between or invalid).

  Low-quality matches: each GT's best candidates become foreground even below fg_thresh
  (torchvision also does it for a GT that overlaps nothing; we require a positive IoU).
  """
  q = jnp.where(gt_valid[:, None] & cand_valid[None, :], box_ops.iou(gt, cand), -1.0)  # [G, N]
  best = q.max(0)
  idx = q.argmax(0)
  fg = best >= fg_thresh
  if allow_low_quality:
    per_gt = q.max(1, keepdims=True)
    fg |= jnp.any((q == per_gt) & (per_gt > 0), axis=0)
  label = jnp.where(fg, 1, jnp.where((best < bg_thresh) & (best >= 0), 0, IGNORE))
  label = jnp.where(cand_valid, label, IGNORE)
  return idx, label


def balanced_sample(key, label: jnp.ndarray, num: int, positive_fraction: float):
  """BalancedPositiveNegativeSampler with a fixed output: (indices [num], valid [num]).

  At most num * positive_fraction positives, negatives fill the rest; invalid slots when there
  are too few candidates.
  """
  r = jax.random.uniform(key, label.shape)
  num_pos = int(num * positive_fraction)
  pos_val, pos_idx = jax.lax.top_k(jnp.where(label == 1, r, -1.0), min(num_pos, label.shape[0]))
  chosen_pos = jnp.zeros(label.shape, bool).at[pos_idx].set(pos_val >= 0)
  priority = jnp.where(chosen_pos, 2.0 + r, jnp.where(label == 0, r, -1.0))
  val, idx = jax.lax.top_k(priority, min(num, label.shape[0]))
  return idx, val >= 0


def rpn_loss(key, objectness, deltas, anchors, gt, gt_valid, cfg):
  """Per-image sums: (objectness BCE sum, box smooth-L1 sum, sampled count)."""
  anchor_valid = jnp.ones(anchors.shape[0], bool)
  idx, label = match(gt, gt_valid, anchors, anchor_valid, cfg.fg_iou_thresh, cfg.bg_iou_thresh, True)
  s_idx, s_ok = balanced_sample(key, label, cfg.batch_size_per_image, cfg.positive_fraction)
  y = (label[s_idx] == 1)
  logit = objectness[s_idx]
  bce = jnp.maximum(logit, 0) - logit * y + jnp.log1p(jnp.exp(-jnp.abs(logit)))
  target = box_ops.encode(gt[idx[s_idx]], anchors[s_idx], (1.0, 1.0, 1.0, 1.0))
  pos = s_ok & y
  target = jnp.where(pos[:, None], target, 0.0)
  box = jnp.where(pos[:, None], smooth_l1(deltas[s_idx] - target), 0.0)
  return jnp.sum(jnp.where(s_ok, bce, 0.0)), jnp.sum(box), jnp.sum(s_ok)


def sample_rois(key, proposals, proposal_valid, gt, gt_valid, gt_labels, cfg):
  """RoIHeads.select_training_samples: GT boxes join the proposals, then balanced sampling.

  Returns rois [S, 4], class labels [S] (0 background), regression targets [S, 4], valid [S].
  """
  cand = jnp.concatenate([proposals, gt])
  cand_valid = jnp.concatenate([proposal_valid, gt_valid])
  idx, label = match(gt, gt_valid, cand, cand_valid, cfg.fg_iou_thresh, cfg.bg_iou_thresh, False)
  s_idx, s_ok = balanced_sample(key, label, cfg.batch_size_per_image, cfg.positive_fraction)
  rois = cand[s_idx]
  fg = s_ok & (label[s_idx] == 1)
  classes = jnp.where(fg, gt_labels[idx[s_idx]], 0)
  target = box_ops.encode(gt[idx[s_idx]], rois, cfg.bbox_reg_weights)
  target = jnp.where(fg[:, None], target, 0.0)
  return jax.lax.stop_gradient(rois), classes, target, s_ok


def box_head_loss(class_logits, box_deltas, classes, target, valid):
  """Per-image sums: (cross-entropy sum, box smooth-L1 sum of the true class, sampled count)."""
  logp = jax.nn.log_softmax(class_logits.astype(jnp.float32), -1)
  ce = -jnp.take_along_axis(logp, classes[:, None], -1)[:, 0]
  pred = jnp.take_along_axis(box_deltas.astype(jnp.float32), classes[:, None, None], 1)[:, 0]
  fg = valid & (classes > 0)
  box = jnp.where(fg[:, None], smooth_l1(pred - target), 0.0)
  return jnp.sum(jnp.where(valid, ce, 0.0)), jnp.sum(box), jnp.sum(valid)
