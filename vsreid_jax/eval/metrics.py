"""Region (J) and boundary (F) measures of the official DAVIS 2017 evaluation, vectorised.

Each function reproduces the matching one in davisvideochallenge/davis2017-evaluation
(`davis2017/metrics.py`: `db_eval_iou`, `f_measure`, `_seg2bmap`; `davis2017/utils.py`:
`db_statistics`) value for value, so that numbers reported here can be compared with published
DAVIS numbers. Masks are boolean stacks [T, H, W] (one object, T frames); a single frame [H, W] is
accepted too.
"""
import warnings

import cv2
import numpy as np

# Number of temporal bins of the decay statistic (official `N_bins`).
DECAY_BINS = 4
# A frame counts as recalled when its score is strictly above this.
RECALL_THRESHOLD = 0.5


def _as_stack(masks: np.ndarray) -> np.ndarray:
  """A boolean [T, H, W] view of a [T, H, W] or [H, W] mask."""
  masks = np.ascontiguousarray(masks, dtype=bool)
  if masks.ndim == 2:
    masks = masks[None]
  if masks.ndim != 3:
    raise ValueError(f"masks must be [T, H, W] or [H, W], got shape {masks.shape}")
  return masks


def _check_shapes(gt: np.ndarray, pred: np.ndarray, void) -> None:
  if gt.shape != pred.shape:
    raise ValueError(f"ground truth {gt.shape} and prediction {pred.shape} shapes differ")
  if void is not None and void.shape != gt.shape:
    raise ValueError(f"ground truth {gt.shape} and void {void.shape} shapes differ")


# A 2x2 window whose anchor is its top-left pixel: a pixel and its right, bottom and
# bottom-right neighbours.
_BLOCK_2X2 = np.ones((2, 2), np.uint8)


def _boundary(frame: np.ndarray) -> np.ndarray:
  """seg2bmap of one contiguous boolean [H, W] frame, as uint8 0/1.

  A pixel is a boundary pixel when its 2x2 block (itself, right, bottom, bottom-right) is not
  constant, i.e. where the block's max (dilation) differs from its min (erosion). OpenCV ignores
  pixels outside the image, so the last row compares only with the right neighbour, the last
  column only with the bottom one, and the bottom-right pixel never differs from itself.
  """
  return cv2.morphologyEx(frame.view(np.uint8), cv2.MORPH_GRADIENT, _BLOCK_2X2, anchor=(0, 0))


def seg2bmap(seg: np.ndarray) -> np.ndarray:
  """One-pixel boundary map of a binary mask (classic Martin 2003 `seg2bmap`, same-size output).

  A pixel is a boundary pixel when it differs from its right, bottom or bottom-right neighbour.
  The last row only compares with the right neighbour, the last column only with the bottom one,
  and the bottom-right corner is never a boundary, exactly as the official tool does. Works on
  [H, W] or on stacks [..., H, W].
  """
  seg = np.ascontiguousarray(seg, dtype=bool)
  frames = seg.reshape(-1, *seg.shape[-2:])
  return np.stack([_boundary(frame) for frame in frames]).astype(bool).reshape(seg.shape)


def _count_per_frame(masks: np.ndarray) -> np.ndarray:
  """True pixels of each frame of a [T, H, W] stack (frame by frame is the cache-friendly way)."""
  return np.array([np.count_nonzero(frame) for frame in masks], np.float64)


def disk(radius: float) -> np.ndarray:
  """skimage.morphology.disk(radius) as uint8: the pixels with x^2 + y^2 <= radius^2."""
  offsets = np.arange(-radius, radius + 1)
  x, y = np.meshgrid(offsets, offsets)
  return (x**2 + y**2 <= radius**2).astype(np.uint8)


def boundary_radius(height: int, width: int, bound_th: float = 0.008) -> float:
  """Dilation radius in pixels: `bound_th` of the image diagonal, or `bound_th` itself if >= 1."""
  if bound_th >= 1:
    return bound_th
  return float(np.ceil(bound_th * np.linalg.norm((height, width))))


def jaccard(gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None = None) -> np.ndarray:
  """Per-frame intersection over union of binary masks [T, H, W] -> [T].

  Void pixels are left out of both the intersection and the union. A frame where the union is
  empty (object absent from both) scores 1, as in the official tool.
  """
  gt, pred = _as_stack(gt), _as_stack(pred)
  void = None if void is None else _as_stack(void)
  _check_shapes(gt, pred, void)
  inter = gt & pred
  union = gt | pred
  if void is not None:
    inter &= ~void
    union &= ~void
  inter = _count_per_frame(inter)
  union = _count_per_frame(union)
  # `union` holds pixel counts, so the official `np.isclose(union, 0)` is `union == 0`.
  return np.divide(inter, union, out=np.ones_like(inter), where=union > 0)


def _boundary_counts(gt: np.ndarray, pred: np.ndarray, kernel: np.ndarray) -> tuple[int, int, int, int]:
  """(|gt boundary|, |pred boundary|, gt boundary pixels matched, pred boundary pixels matched).

  Works on the masks' bounding box grown by one pixel on every side, which gives the same
  numbers as the full frame, only faster: every boundary pixel lies in the box (it is at most one
  pixel above or left of a mask pixel), the box's last row and column hold no mask pixel unless
  they are the image's own, and cv2.dilate ignores pixels outside the box, all of them 0.
  """
  x, y, w, h = cv2.boundingRect((gt | pred).view(np.uint8))
  if w == 0:  # Both masks empty.
    return 0, 0, 0, 0
  height, width = gt.shape
  box = np.s_[max(y - 1, 0):min(y + h + 1, height), max(x - 1, 0):min(x + w + 1, width)]
  gt_boundary = _boundary(np.ascontiguousarray(gt[box]))
  pred_boundary = _boundary(np.ascontiguousarray(pred[box]))
  n_gt, n_pred = np.count_nonzero(gt_boundary), np.count_nonzero(pred_boundary)
  if not (n_gt and n_pred):  # f_measure's special cases decide.
    return n_gt, n_pred, 0, 0
  gt_matched = np.count_nonzero(gt_boundary & cv2.dilate(pred_boundary, kernel))
  pred_matched = np.count_nonzero(pred_boundary & cv2.dilate(gt_boundary, kernel))
  return n_gt, n_pred, gt_matched, pred_matched


def f_measure(gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None = None,
              bound_th: float = 0.008) -> np.ndarray:
  """Per-frame boundary F-measure of binary masks [T, H, W] -> [T].

  Boundaries match when they lie within a disk of radius ceil(bound_th * image diagonal) of each
  other (found with cv2.dilate, as the official tool does). Void pixels are removed from both
  masks before their boundaries are taken.
  """
  gt, pred = _as_stack(gt), _as_stack(pred)
  void = None if void is None else _as_stack(void)
  _check_shapes(gt, pred, void)
  if void is not None:
    gt = gt & ~void
    pred = pred & ~void
  kernel = disk(boundary_radius(*gt.shape[-2:], bound_th=bound_th))
  counts = np.array([_boundary_counts(gt[t], pred[t], kernel) for t in range(gt.shape[0])], np.float64)
  n_gt, n_pred, gt_matched, pred_matched = counts.reshape(-1, 4).T
  n_frames = len(n_gt)

  precision = np.divide(pred_matched, n_pred, out=np.zeros(n_frames), where=n_pred > 0)
  recall = np.divide(gt_matched, n_gt, out=np.zeros(n_frames), where=n_gt > 0)
  # Official special cases: an empty boundary has precision (prediction) or recall (ground
  # truth) 1; the other side is then 0 unless both are empty.
  pred_empty, gt_empty = n_pred == 0, n_gt == 0
  precision[pred_empty] = 1.0
  recall[gt_empty] = 1.0
  recall[pred_empty & ~gt_empty] = 0.0
  precision[~pred_empty & gt_empty] = 0.0

  total = precision + recall
  return np.divide(2 * precision * recall, total, out=np.zeros(n_frames), where=total != 0)


def statistics(per_frame: np.ndarray) -> tuple[float, float, float]:
  """(mean, recall, decay) of one object's per-frame scores, as the official `db_statistics`.

  Recall is the fraction of frames scoring strictly above 0.5. Decay is the mean of the first
  quarter of the frames minus the mean of the last quarter; the quarters are bounded by
  round(linspace(1, N, 5)) - 1 and include their right edge, so neighbours share one frame.
  """
  values = np.asarray(per_frame, np.float64)
  with warnings.catch_warnings():  # All-NaN or empty input gives NaN, as in the official tool.
    warnings.simplefilter("ignore", category=RuntimeWarning)
    mean = np.nanmean(values)
    recall = np.nanmean(values > RECALL_THRESHOLD)
    # The official tool casts these indices to uint8, which wraps around from N = 256 frames on
    # (255 + 1 overflows in the slice end); int64 gives the same bins for N < 256 and correct
    # ones beyond.
    edges = (np.round(np.linspace(1, len(values), DECAY_BINS + 1) + 1e-10) - 1).astype(np.int64)
    bins = [values[edges[i]:edges[i + 1] + 1] for i in range(DECAY_BINS)]
    decay = np.nanmean(bins[0]) - np.nanmean(bins[-1])
  return float(mean), float(recall), float(decay)
