"""Box and crop geometry (vsreid_jax/geometry.py): boxes of masks, IoU, enlarge, crop/resize, paste."""
import chex
import cv2
import numpy as np

from vsreid_jax import geometry


def test_mask_box_and_empty():
  prob = np.zeros((10, 12), np.float32)
  prob[2:5, 3:9] = 0.9
  box, valid = geometry.mask_box(prob)
  np.testing.assert_array_equal(np.asarray(box), [3, 2, 9, 5])
  assert bool(valid)
  _, valid = geometry.mask_box(np.zeros((10, 12), np.float32))
  assert not bool(valid)


def test_host_mask_box_covers_pixel_centres():
  m = np.zeros((10, 12), np.uint8)
  m[2:5, 3:9] = 1
  np.testing.assert_array_equal(geometry.mask_box_np(m), [3, 2, 9, 5])
  assert geometry.mask_box_np(np.zeros((4, 4))) is None


def test_host_and_jax_mask_boxes_agree():
  rng = np.random.default_rng(0)
  for _ in range(20):
    prob = np.zeros((17, 23), np.float32)
    y0, x0 = rng.integers(0, 16), rng.integers(0, 22)
    prob[y0:y0 + rng.integers(1, 8), x0:x0 + rng.integers(1, 8)] = rng.uniform(0.6, 1.0)
    prob[rng.uniform(size=prob.shape) < 0.02] = 0.7  # stray pixels widen both boxes alike
    box, valid = geometry.mask_box(prob, 0.5)
    assert bool(valid)
    np.testing.assert_array_equal(np.asarray(box), geometry.mask_box_np(prob > 0.5))


def test_box_iou():
  a = np.array([[0, 0, 10, 10], [0, 0, 0, 0]], np.float32)
  b = np.array([[5, 0, 15, 10], [0, 0, 10, 10]], np.float32)
  iou = geometry.box_iou(a, b)
  np.testing.assert_allclose(iou, [[50 / 150, 1.0], [0.0, 0.0]], rtol=1e-6)


def test_enlarge_box_margin_min_side_and_clip():
  box = np.array([10, 20, 30, 60], np.float32)  # 20 wide, 40 tall
  np.testing.assert_allclose(geometry.enlarge_box(box, 0.15, 100, 100), [7, 14, 33, 66])
  np.testing.assert_allclose(geometry.enlarge_box(box, 0.15, 50, 32), [7, 14, 32, 50])  # clipped
  tiny = np.array([5, 5, 6, 6], np.float32)
  np.testing.assert_allclose(geometry.enlarge_box(tiny, 0.15, 100, 100), [1.5, 1.5, 9.5, 9.5])


def test_crop_resize_matches_cv2_resize_of_the_box():
  rng = np.random.default_rng(0)
  image = rng.uniform(0, 255, (40, 50, 3)).astype(np.float32)
  box = np.array([8, 4, 40, 36], np.float32)  # integer box: cv2.resize of the slice is the reference
  got = np.asarray(geometry.crop_resize(image, box, 16))
  expected = cv2.resize(image[4:36, 8:40], (16, 16), interpolation=cv2.INTER_LINEAR)
  chex.assert_trees_all_close(got, expected, atol=1e-3)


def test_crop_flow_rescales_to_crop_pixels():
  flow = np.ones((40, 40, 2), np.float32) * [4.0, 2.0]
  box = np.array([0, 0, 20, 10], np.float32)  # 20x10 box to 10x10: x halves, y stays
  np.testing.assert_allclose(np.asarray(geometry.crop_flow(flow, box, 10)), np.broadcast_to([2.0, 2.0], (10, 10, 2)))


def test_paste_inverts_crop_inside_the_box_and_zeroes_outside():
  prob = np.zeros((30, 40), np.float32)
  prob[10:20, 12:28] = 1.0
  box = np.array([8, 6, 32, 24], np.float32)
  crop = geometry.crop_resize(prob[..., None], box, 48)[..., 0]
  back = np.asarray(geometry.paste(crop, box, 30, 40))
  assert back[:6].max() == 0 and back[:, :8].max() == 0 and back[24:].max() == 0 and back[:, 32:].max() == 0
  np.testing.assert_array_equal(back > 0.5, prob > 0.5)
