"""Bilinear backward warp against cv2.remap, flow direction with DIS, and the flow cache."""
import chex
import cv2
import numpy as np

from vsreid_jax.data import synthetic
from vsreid_jax.flow.cache import FlowCache
from vsreid_jax.flow.dis import DISFlow
from vsreid_jax.flow.warp import warp


def test_warp_matches_cv2_remap():
  rng = np.random.default_rng(0)
  h, w = 37, 53
  prob = rng.uniform(0, 1, (3, h, w)).astype(np.float32)
  # cv2.remap interpolates with 1/32-pixel fixed-point weights, so quantise the flow to 1/32 px to
  # compare exactly; displacements up to 6 px also push samples off the image (replicate border).
  flow = (np.round(rng.uniform(-6, 6, (h, w, 2)) * 32) / 32).astype(np.float32)
  ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
  map_x, map_y = xs + flow[..., 0], ys + flow[..., 1]
  expected = np.stack([cv2.remap(p, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE) for p in prob])
  got = np.asarray(warp(prob, flow))
  chex.assert_trees_all_close(got, expected, atol=1e-5)


def test_warp_with_integer_shift_moves_the_map():
  prob = np.zeros((1, 10, 10), np.float32)
  prob[0, 2:4, 2:4] = 1
  flow = np.zeros((10, 10, 2), np.float32)
  flow[..., 0] = -3  # out(x) = in(x - 3): content moves 3 px right
  out = np.asarray(warp(prob, flow))
  expected = np.zeros_like(prob)
  expected[0, 2:4, 5:7] = 1
  np.testing.assert_array_equal(out, expected)


def test_dis_backward_flow_carries_previous_mask_onto_current_frame():
  frames, masks = synthetic.moving_shapes(n_frames=2, height=96, width=128, n_objects=1, seed=3, speed=3, grow=1.0)
  dis = DISFlow("medium")
  flow_back = dis.flow(frames[1], frames[0])  # frame 1 -> frame 0
  warped = np.asarray(warp(masks[0][None].astype(np.float32), flow_back))[0] > 0.5
  target = masks[1] > 0
  iou = (warped & target).sum() / (warped | target).sum()
  moved_iou = ((masks[0] > 0) & target).sum() / ((masks[0] > 0) | target).sum()
  assert iou > 0.85 > moved_iou, (iou, moved_iou)


def test_flow_cache_computes_each_pair_once_and_reuses_disk(tmp_path):
  frames, _ = synthetic.moving_shapes(n_frames=3, seed=0)

  class Counting:
    name = "counting"
    calls = 0

    def flow(self, a, b):
      Counting.calls += 1
      return np.full(a.shape[:2] + (2,), 0.25, np.float32)

  cache = FlowCache(frames, Counting(), cache_dir=str(tmp_path), key="seq")
  first = cache.get(1, 0)
  again = cache.get(1, 0)
  assert Counting.calls == 1 and first is again
  cache2 = FlowCache(frames, Counting(), cache_dir=str(tmp_path), key="seq")
  np.testing.assert_array_equal(cache2.get(1, 0), first)  # loaded from disk, not recomputed
  assert Counting.calls == 1 and cache2.computed == 0
  assert len(list((tmp_path / "seq").glob("counting-*/00001_00000.npy"))) == 1


def test_flow_cache_answers_the_same_cold_and_warm(tmp_path):
  """A freshly computed flow is what a later run reads back from the float16 cache, so a rerun
  with a warm cache gives the same masks and training examples as the first run."""
  frames, _ = synthetic.moving_shapes(n_frames=3, seed=0)

  class Fractional:
    name = "fractional"

    def flow(self, a, b):
      del b
      return np.random.default_rng(0).uniform(-20, 20, a.shape[:2] + (2,)).astype(np.float32)

  cold = FlowCache(frames, Fractional(), cache_dir=str(tmp_path), key="seq").get(1, 0)
  warm = FlowCache(frames, Fractional(), cache_dir=str(tmp_path), key="seq").get(1, 0)
  assert warm.dtype == cold.dtype == np.float32
  np.testing.assert_array_equal(cold, warm)
  # Without a cache folder nothing is rounded.
  exact = FlowCache(frames, Fractional()).get(1, 0)
  np.testing.assert_array_equal(exact, Fractional().flow(frames[1], frames[0]))
  assert not np.array_equal(exact, cold)
