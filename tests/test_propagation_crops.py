"""Box, enlarge, crop/resize and paste geometry of Algorithm 1."""
import chex
import cv2
import numpy as np

from vsreid_jax.propagation import crops


def test_mask_box_and_empty():
  prob = np.zeros((10, 12), np.float32)
  prob[2:5, 3:9] = 0.9
  box, valid = crops.mask_box(prob)
  np.testing.assert_array_equal(np.asarray(box), [3, 2, 9, 5])
  assert bool(valid)
  _, valid = crops.mask_box(np.zeros((10, 12), np.float32))
  assert not bool(valid)


def test_enlarge_box_margin_min_side_and_clip():
  box = np.array([10, 20, 30, 60], np.float32)  # 20 wide, 40 tall
  np.testing.assert_allclose(crops.enlarge_box(box, 0.15, 100, 100), [7, 14, 33, 66])
  np.testing.assert_allclose(crops.enlarge_box(box, 0.15, 50, 32), [7, 14, 32, 50])  # clipped
  tiny = np.array([5, 5, 6, 6], np.float32)
  np.testing.assert_allclose(crops.enlarge_box(tiny, 0.15, 100, 100), [1.5, 1.5, 9.5, 9.5])


def test_crop_resize_matches_cv2_resize_of_the_box():
  rng = np.random.default_rng(0)
  image = rng.uniform(0, 255, (40, 50, 3)).astype(np.float32)
  box = np.array([8, 4, 40, 36], np.float32)  # integer box: cv2.resize of the slice is the reference
  got = np.asarray(crops.crop_resize(image, box, 16))
  expected = cv2.resize(image[4:36, 8:40], (16, 16), interpolation=cv2.INTER_LINEAR)
  chex.assert_trees_all_close(got, expected, atol=1e-3)


def test_crop_flow_rescales_to_crop_pixels():
  flow = np.ones((40, 40, 2), np.float32) * [4.0, 2.0]
  box = np.array([0, 0, 20, 10], np.float32)  # 20x10 box to 10x10: x halves, y stays
  np.testing.assert_allclose(np.asarray(crops.crop_flow(flow, box, 10)), np.broadcast_to([2.0, 2.0], (10, 10, 2)))


def test_paste_inverts_crop_inside_the_box_and_zeroes_outside():
  prob = np.zeros((30, 40), np.float32)
  prob[10:20, 12:28] = 1.0
  box = np.array([8, 6, 32, 24], np.float32)
  crop = crops.crop_resize(prob[..., None], box, 48)[..., 0]
  back = np.asarray(crops.paste(crop, box, 30, 40))
  assert back[:6].max() == 0 and back[:, :8].max() == 0 and back[24:].max() == 0 and back[:, 32:].max() == 0
  np.testing.assert_array_equal(back > 0.5, prob > 0.5)
