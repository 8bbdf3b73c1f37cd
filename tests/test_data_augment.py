import cv2
import numpy as np
import pytest

from vsreid_jax.data import augment


def _disc_mask(h=96, w=128, r=22, cx=60, cy=50):
  ys, xs = np.mgrid[:h, :w]
  return ((xs - cx) ** 2 + ((ys - cy) * 1.3) ** 2 < r * r).astype(np.uint8)


def _iou(a, b):
  return (a & b).sum() / max((a | b).sum(), 1)


def test_deform_is_deterministic_for_a_seed():
  mask = _disc_mask()
  a = augment.deform_mask(mask, np.random.default_rng(3))
  b = augment.deform_mask(mask, np.random.default_rng(3))
  c = augment.deform_mask(mask, np.random.default_rng(4))
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_deform_shape_dtype_and_range():
  mask = _disc_mask()
  p = augment.deform_mask(mask, np.random.default_rng(0))
  assert p.shape == mask.shape and p.dtype == np.float32
  assert p.min() >= 0 and p.max() <= 1


def test_deformed_prior_overlaps_but_differs():
  mask = _disc_mask().astype(bool)
  rng = np.random.default_rng(0)
  cfg = augment.DeformConfig(wrong_prob=0.0)
  ious = np.array([_iou(augment.deform_mask(mask, rng, cfg) > 0.5, mask) for _ in range(40)])
  assert 0.6 < ious.mean() < 0.95, ious
  assert ious.min() > 0.3 and (ious < 0.99).all(), ious


def test_partial_prior_keeps_one_side_of_the_object():
  mask = _disc_mask().astype(bool)
  cfg = augment.DeformConfig(wrong_prob=0.0, partial_prob=1.0, partial_keep=(0.3, 0.7), min_severity=0.0,
                             translate=0.0, scale=0.0, rotate_deg=0.0, elastic=0.0, morph=0.0, max_blobs=0,
                             blur_sigma=0.0)
  rng = np.random.default_rng(0)
  for _ in range(20):
    p = augment.deform_mask(mask, rng, cfg) > 0.5
    share = p.sum() / mask.sum()
    assert 0.25 < share < 0.75, share  # part of the object, about partial_keep of it
    assert (p & ~mask).sum() <= 0.02 * mask.sum()  # ...and nothing outside it
    # One side of a straight cut: the kept part is convex like the disc (its hull adds little).
    hull = cv2.convexHull(np.argwhere(p)[:, ::-1].astype(np.int32))
    assert cv2.contourArea(hull) <= 1.1 * p.sum()


def test_partial_prior_off_draws_the_same_priors_as_before():
  # partial_prob 0 spends no random draw: every existing training example stays what it was.
  mask = _disc_mask()
  a = augment.deform_mask(mask, np.random.default_rng(5), augment.DeformConfig())
  b = augment.deform_mask(mask, np.random.default_rng(5), augment.DeformConfig(partial_prob=0.0, partial_keep=(0.1, 0.2)))
  c = augment.deform_mask(mask, np.random.default_rng(5), augment.DeformConfig(partial_prob=1.0))
  np.testing.assert_array_equal(a, b)
  assert _iou(c > 0.5, mask.astype(bool)) < _iou(a > 0.5, mask.astype(bool))


def test_empty_and_wrong_priors():
  mask = _disc_mask().astype(bool)
  empty = augment.deform_mask(mask, np.random.default_rng(0), augment.DeformConfig(empty_prob=1.0))
  assert not empty.any()
  wrong = augment.deform_mask(mask, np.random.default_rng(0), augment.DeformConfig(wrong_prob=1.0))
  assert wrong.any() and _iou(wrong > 0.5, mask) < 0.5
  assert not augment.deform_mask(np.zeros((8, 8)), np.random.default_rng(0)).any()


def test_hflip_mirrors_and_negates_flow_x():
  rng = np.random.default_rng(0)
  ex = dict(image=rng.integers(0, 255, (5, 5, 3), dtype=np.uint8), flow=rng.normal(size=(5, 5, 2)).astype(np.float32),
            prior=rng.random((5, 5, 1)).astype(np.float32), target=rng.random((5, 5, 1)).astype(np.float32))
  f = augment.hflip(ex)
  np.testing.assert_array_equal(f["image"], ex["image"][:, ::-1])
  np.testing.assert_array_equal(f["prior"], ex["prior"][:, ::-1])
  np.testing.assert_array_equal(f["flow"][..., 0], -ex["flow"][:, ::-1, 0])
  np.testing.assert_array_equal(f["flow"][..., 1], ex["flow"][:, ::-1, 1])
  np.testing.assert_array_equal(augment.hflip(f)["flow"], ex["flow"])


@pytest.mark.parametrize("seed", [0, 1])
def test_colour_jitter_deterministic_uint8(seed):
  img = np.random.default_rng(9).integers(0, 255, (16, 16, 3), dtype=np.uint8)
  a = augment.jitter_colour(img, np.random.default_rng(seed))
  b = augment.jitter_colour(img, np.random.default_rng(seed))
  assert a.dtype == np.uint8 and a.shape == img.shape
  np.testing.assert_array_equal(a, b)
  assert np.abs(a.astype(int) - img).mean() > 0.5
