"""J, F and statistics of the official DAVIS evaluation against hand-computed values."""
import chex
import cv2
import numpy as np
import pytest
import scipy.ndimage

from vsreid_jax.eval.metrics import boundary_radius, disk, f_measure, jaccard, seg2bmap, statistics


def _square(shape, top, left, size):
  mask = np.zeros(shape, bool)
  mask[top:top + size, left:left + size] = True
  return mask


# ---------------------------------------------------------------------------------------- J


def test_jaccard_of_overlapping_squares():
  gt = _square((10, 10), 0, 0, 4)
  pred = _square((10, 10), 2, 0, 4)  # Overlap 2x4 = 8, union 16 + 16 - 8 = 24.
  chex.assert_trees_all_close(jaccard(gt, pred), np.array([8 / 24]))


def test_jaccard_empty_and_single_pixel_frames():
  empty = np.zeros((6, 6), bool)
  pixel_a = np.zeros((6, 6), bool)
  pixel_a[1, 1] = True
  pixel_b = np.zeros((6, 6), bool)
  pixel_b[4, 2] = True
  gt = np.stack([empty, pixel_a, empty, pixel_a, pixel_a])
  pred = np.stack([empty, empty, pixel_a, pixel_a, pixel_b])
  # Both empty -> 1 (official), one empty -> 0, same pixel -> 1, disjoint pixels -> 0.
  chex.assert_trees_all_close(jaccard(gt, pred), np.array([1.0, 0.0, 0.0, 1.0, 0.0]))


def test_jaccard_leaves_void_pixels_out():
  gt = _square((10, 10), 2, 2, 4)  # 16 pixels.
  extra = np.zeros((10, 10), bool)
  extra[8, 0:4] = True
  pred = gt | extra  # 4 false-positive pixels.
  chex.assert_trees_all_close(jaccard(gt, pred), np.array([16 / 20]))
  chex.assert_trees_all_close(jaccard(gt, pred, void=extra), np.array([1.0]))
  # Void over missed object pixels removes them from the union too: 12/16 -> 12/12.
  missed = np.zeros((10, 10), bool)
  missed[5, 2:6] = True
  chex.assert_trees_all_close(jaccard(gt, gt & ~missed), np.array([12 / 16]))
  chex.assert_trees_all_close(jaccard(gt, gt & ~missed, void=missed), np.array([1.0]))


# ---------------------------------------------------------------------------------- seg2bmap


def test_seg2bmap_hand_drawn_mask():
  seg = np.array([
      [0, 0, 0, 0, 0, 0],
      [0, 1, 1, 0, 0, 0],
      [0, 1, 1, 0, 0, 1],
      [0, 0, 0, 0, 0, 1],
      [0, 0, 0, 1, 0, 1],
  ])
  # Differs from right, bottom or bottom-right; last row only right, last column only bottom
  # ((2, 5) is not a boundary although its right is outside), bottom-right corner always 0.
  expected = np.array([
      [1, 1, 1, 0, 0, 0],
      [1, 0, 1, 0, 1, 1],
      [1, 1, 1, 0, 1, 0],
      [0, 0, 1, 1, 1, 0],
      [0, 0, 1, 1, 1, 0],
  ], bool)
  np.testing.assert_array_equal(seg2bmap(seg), expected)


def test_seg2bmap_full_mask_has_no_boundary():
  # The image border is not a boundary: the last row/column rules never compare with outside.
  np.testing.assert_array_equal(seg2bmap(np.ones((3, 4), bool)), np.zeros((3, 4), bool))


def test_seg2bmap_works_on_stacks_frame_by_frame():
  rng = np.random.default_rng(0)
  stack = rng.random((3, 7, 9)) > 0.5
  expected = np.stack([seg2bmap(frame) for frame in stack])
  np.testing.assert_array_equal(seg2bmap(stack), expected)
  assert expected.any() and not expected.all()


# ---------------------------------------------------------------------------------------- F


def test_disk_and_radius_match_skimage_and_the_official_threshold():
  cross = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8)
  np.testing.assert_array_equal(disk(1), cross)
  np.testing.assert_array_equal(disk(2), np.array([
      [0, 0, 1, 0, 0],
      [0, 1, 1, 1, 0],
      [1, 1, 1, 1, 1],
      [0, 1, 1, 1, 0],
      [0, 0, 1, 0, 0],
  ], np.uint8))
  assert boundary_radius(20, 20) == 1  # ceil(0.008 * 28.28)
  assert boundary_radius(480, 854) == 8  # ceil(0.008 * 979.6)
  assert boundary_radius(480, 854, bound_th=3) == 3


def test_f_measure_identical_masks_is_one():
  gt = _square((20, 20), 5, 5, 5)
  chex.assert_trees_all_close(f_measure(gt, gt), np.array([1.0]))


def test_f_measure_of_shifted_squares_on_20x20():
  # Radius 1 (a plus-shaped disk). A 5x5 square at rows/cols 5..9 has a 20-pixel boundary:
  # row 4 cols 4..9, col 4 rows 5..9, col 9 rows 5..9, row 9 cols 5..8.
  gt = _square((20, 20), 5, 5, 5)
  one_right = _square((20, 20), 5, 6, 5)
  two_right = _square((20, 20), 5, 7, 5)
  far = _square((20, 20), 13, 13, 5)
  # One pixel right: every boundary pixel is within the radius of the other boundary.
  # Two pixels right: 12 of the 20 boundary pixels match each way, so P = R = F = 0.6.
  # Far apart: nothing matches.
  pred = np.stack([one_right, two_right, far])
  chex.assert_trees_all_close(f_measure(np.stack([gt] * 3), pred), np.array([1.0, 0.6, 0.0]))


def test_f_measure_empty_masks():
  empty = np.zeros((20, 20), bool)
  square = _square((20, 20), 5, 5, 5)
  gt = np.stack([empty, square, empty])
  pred = np.stack([empty, empty, square])
  # Both empty: P = R = 1. Prediction empty: P = 1, R = 0. Ground truth empty: P = 0, R = 1.
  chex.assert_trees_all_close(f_measure(gt, pred), np.array([1.0, 0.0, 0.0]))


def test_f_measure_leaves_void_pixels_out():
  gt = _square((40, 40), 5, 5, 5)  # Radius ceil(0.008 * 56.6) = 1.
  speck = np.zeros((40, 40), bool)
  speck[30, 30] = True
  # The speck adds 4 unmatched boundary pixels: P = 20/24, R = 1, F = 10/11.
  chex.assert_trees_all_close(f_measure(gt, gt | speck), np.array([10 / 11]))
  void = np.zeros((40, 40), bool)
  void[28:33, 28:33] = True
  chex.assert_trees_all_close(f_measure(gt, gt | speck, void=void), np.array([1.0]))


# ------------------------------------------------------------------------------- statistics


def test_statistics_ten_frames():
  # N = 10: bin edges round(linspace(1, 10, 5)) - 1 = [0, 2, 5, 7, 9]; the first bin is x[0:3]
  # (right edge included) and the last x[7:10].
  x = np.arange(10) / 10
  mean, recall, decay = statistics(x)
  chex.assert_trees_all_close((mean, recall, decay), (0.45, 0.4, 0.1 - 0.8))


def test_statistics_recall_is_strictly_above_half():
  x = np.array([1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0, 0, 0])
  chex.assert_trees_all_close(statistics(x), (0.5, 0.3, 1.0))


def test_statistics_bin_edges_round_half_up():
  # N = 7: linspace(1, 7, 5) = [1, 2.5, 4, 5.5, 7]; the official +1e-10 rounds 2.5 up, so the
  # edges are [0, 2, 3, 5, 6]: first bin x[0:3] (mean 0.3), last bin x[5:7] (mean 0.9).
  x = np.array([0.0, 0.3, 0.6, 0.2, 0.4, 0.8, 1.0])
  _, _, decay = statistics(x)
  assert decay == pytest.approx(0.3 - 0.9)


def test_statistics_long_sequence_does_not_wrap_bin_edges():
  # N = 300: edges [0, 75, 150, 224, 299]. The official uint8 cast would wrap 299 to 43.
  x = np.zeros(300)
  x[:76] = 1.0
  x[224:] = 0.25
  _, _, decay = statistics(x)
  assert decay == pytest.approx(0.75)


def test_statistics_ignores_nan_in_mean_but_not_in_recall():
  mean, recall, _ = statistics(np.array([1.0, np.nan, 0.0]))
  assert mean == pytest.approx(0.5)
  assert recall == pytest.approx(1 / 3)


# ------------------------------------------------------- against a literal official re-statement


def _official_bmap(seg):
  """seg2bmap written the official way: shifted copies, then the last row/column overrides."""
  right, below, below_right = np.zeros_like(seg), np.zeros_like(seg), np.zeros_like(seg)
  right[:, :-1], below[:-1, :], below_right[:-1, :-1] = seg[:, 1:], seg[1:, :], seg[1:, 1:]
  bmap = (seg ^ right) | (seg ^ below) | (seg ^ below_right)
  bmap[-1, :] = seg[-1, :] ^ right[-1, :]
  bmap[:, -1] = seg[:, -1] ^ below[:, -1]
  bmap[-1, -1] = False
  return bmap


def _official_f(gt, pred, void):
  """One frame of the official `f_measure`, full frame, no shortcuts."""
  kernel = disk(np.ceil(0.008 * np.linalg.norm(gt.shape)))
  gt_b, pred_b = _official_bmap(gt & ~void), _official_bmap(pred & ~void)
  gt_dil = cv2.dilate(gt_b.astype(np.uint8), kernel) > 0
  pred_dil = cv2.dilate(pred_b.astype(np.uint8), kernel) > 0
  n_gt, n_pred = gt_b.sum(), pred_b.sum()
  if n_gt == 0 or n_pred == 0:
    precision, recall = (1.0 if n_pred == 0 else 0.0), (1.0 if n_gt == 0 else 0.0)
  else:
    precision, recall = (pred_b & gt_dil).sum() / n_pred, (gt_b & pred_dil).sum() / n_gt
  return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def test_f_and_j_equal_the_official_formulas_on_random_masks():
  # Small boxes anywhere, touching every edge and corner, so the cropped fast path is exercised.
  rng = np.random.default_rng(0)
  for trial in range(40):
    height, width = rng.integers(3, 50, 2)
    gt, pred = np.zeros((2, 3, height, width), bool)
    for masks in (gt, pred):
      for t in range(3):
        for _ in range(rng.integers(0, 3)):
          h, w, y, x = rng.integers(1, 8), rng.integers(1, 8), rng.integers(-2, height), rng.integers(-2, width)
          masks[t, max(y, 0):y + h, max(x, 0):x + w] = True
    void = rng.random(gt.shape) > 0.9 if trial % 2 else np.zeros_like(gt)
    expected_f = [_official_f(gt[t], pred[t], void[t]) for t in range(3)]
    inter, union = (gt & pred & ~void).sum((1, 2)), ((gt | pred) & ~void).sum((1, 2))
    expected_j = [i / u if u else 1.0 for i, u in zip(inter, union)]
    np.testing.assert_array_equal(f_measure(gt, pred, void), expected_f, err_msg=f"trial {trial}")
    np.testing.assert_array_equal(jaccard(gt, pred, void), expected_j, err_msg=f"trial {trial}")
    np.testing.assert_array_equal(seg2bmap(gt), np.stack([_official_bmap(m) for m in gt]))


# ------------------------------------------------ F at 480p against a distance-transform reference


def _edt_f(gt, pred):
  """One frame of F written independently of the package: boundaries as above, matches found
  with an exact Euclidean distance transform (a boundary pixel matches when the other boundary
  lies within ceil(0.008 * diagonal) pixels of it) instead of a dilation with a disk."""
  radius = np.ceil(0.008 * np.hypot(*gt.shape))
  gt_b, pred_b = _official_bmap(gt), _official_bmap(pred)
  n_gt, n_pred = gt_b.sum(), pred_b.sum()
  if n_gt == 0 or n_pred == 0:
    precision, recall = (1.0 if n_pred == 0 else 0.0), (1.0 if n_gt == 0 else 0.0)
  else:
    within = lambda boundary: scipy.ndimage.distance_transform_edt(~boundary) ** 2 <= radius**2 + 1e-6
    precision, recall = (pred_b & within(gt_b)).sum() / n_pred, (gt_b & within(pred_b)).sum() / n_gt
  return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def test_f_tolerance_at_480p_is_eight_pixels():
  # 854x480: radius ceil(0.008 * 979.6) = 8. A square moved 8 px matches everywhere; moved 9 px
  # its left and right sides (and the ends of the top and bottom ones) no longer do.
  gt = _square((480, 854), 100, 200, 120)
  shifted = np.stack([np.roll(gt, s, axis=1) for s in (8, 9, 12)])
  f = f_measure(np.stack([gt] * 3), shifted)
  assert f[0] == 1.0
  assert 0.4 < f[1] < 0.6 and f[2] < f[1]
  np.testing.assert_allclose(f, [_edt_f(gt, p) for p in shifted], rtol=0, atol=1e-12)


def test_f_at_480p_equals_the_distance_transform_reference_on_blobs():
  rng = np.random.default_rng(3)
  yy, xx = np.mgrid[:480, :854]
  gt, pred = np.zeros((2, 4, 480, 854), bool)
  for t in range(4):
    for masks, noise in ((gt, 0.0), (pred, 1.0)):
      cy, cx, ry, rx = 240 + 40 * t, 427 - 60 * t, 90 + 10 * t, 150
      dy, dx = (rng.normal(0, 6, 2) * noise) if noise else (0, 0)
      blob = ((yy - cy - dy) / ry) ** 2 + ((xx - cx - dx) / (rx + 10 * noise * t)) ** 2 <= 1
      masks[t] = blob ^ (rng.random((480, 854)) < 0.0002 * noise)  # specks: unmatched boundary
  f = f_measure(gt, pred)
  expected = [_edt_f(gt[t], pred[t]) for t in range(4)]
  assert all(0.2 < e < 0.99 for e in expected), expected
  np.testing.assert_allclose(f, expected, rtol=0, atol=1e-12)
