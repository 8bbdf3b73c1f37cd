"""The synthetic flow set (flow/synthetic_flow.py): its flow maps frame a onto frame b."""
import jax.numpy as jnp
import numpy as np
import pytest

from vsreid_jax.flow import synthetic_flow as sf
from vsreid_jax.flow.warp import warp

# frame_a is frame_b sampled in float64 then rounded to uint8: half a level apart, plus the
# float32 position error of the JAX warp at x ~ 850 (~1e-4 px times a steep edge).
ROUNDING = 0.5 + 0.02


def warp_back(frame_b, flow):
  """b(x + flow(x)) with the package's bilinear warp (vmapped over channels)."""
  b = jnp.asarray(frame_b.transpose(2, 0, 1), jnp.float32)
  return np.asarray(warp(b, jnp.asarray(flow))).transpose(1, 2, 0)


def check_pair(frame_a, frame_b, flow, valid):
  h, w = frame_a.shape[:2]
  assert frame_a.shape == frame_b.shape == (h, w, 3) and frame_a.dtype == frame_b.dtype == np.uint8
  assert flow.shape == (h, w, 2) and flow.dtype == np.float32
  assert valid.shape == (h, w) and valid.dtype == bool and valid.mean() > 0.5
  assert np.abs(flow).max() > 0.5  # something moves
  diff = np.abs(warp_back(frame_b, flow) - frame_a.astype(np.float32))
  assert diff[valid].max() <= ROUNDING


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_flow_maps_frame_a_onto_frame_b_on_textures(index):
  check_pair(*sf.SyntheticFlowSet(None, 48, 64, seed=3)[index])


def test_deterministic_by_seed_and_index():
  ds = sf.SyntheticFlowSet(None, 32, 40, seed=7)
  again = sf.SyntheticFlowSet(None, 32, 40, seed=7)
  for i in range(2):
    for x, y in zip(ds[i], again[i]):
      np.testing.assert_array_equal(x, y)
  assert not np.array_equal(ds[0][2], sf.SyntheticFlowSet(None, 32, 40, seed=8)[0][2])
  frames_a, frames_b, flows, valid = ds.batch([0, 1, 2])
  assert frames_a.shape == (3, 32, 40, 3) and flows.shape == (3, 32, 40, 2) and valid.shape == (3, 32, 40)


def test_piecewise_marks_occluded_background_invalid():
  rng = np.random.default_rng(0)
  h, w = 40, 60
  background, foreground = sf.texture(rng, h, w), sf.texture(rng, h, w)
  mask = np.zeros((h, w), np.uint8)
  mask[10:30, 20:40] = 1
  flow_bg = np.zeros((h, w, 2), np.float32)
  flow_fg = np.broadcast_to(np.float32([6, 0]), (h, w, 2)).copy()  # foreground moves 6 px right
  a, b, flow, valid = sf.layered_pair(background, foreground, mask, flow_bg, flow_fg)
  check_pair(a, b, flow, valid)
  # In a, the foreground sits 6 px left of where it is in b (a(x) = b(x + 6)).
  np.testing.assert_array_equal(flow[20, 15:34, 0], 6)
  # Still background in a, covered by the foreground in b: occluded.
  assert not valid[20, 35:39].any()
  assert valid[20, 45:].all() and valid[20, 15:33].all()


def test_outside_targets_are_invalid():
  frame = sf.texture(np.random.default_rng(0), 20, 30)
  flow = np.broadcast_to(np.float32([-3.5, 2.0]), (20, 30, 2)).copy()
  a, b, f, valid = sf.smooth_pair(frame, flow)
  assert not valid[:, :3].any() and valid[:, 4:].any()  # x - 3.5 < 0 in the first 4 columns
  assert not valid[-2:].any()  # y + 2 > 19 in the last 2 rows
  check_pair(a, b, f, valid)


def test_epe():
  gt = np.random.default_rng(0).normal(size=(8, 9, 2)).astype(np.float32)
  assert sf.epe(gt, gt) == 0.0
  assert sf.epe(gt + np.float32([3, 4]), gt) == pytest.approx(5.0)
  valid = np.zeros((8, 9), bool)
  valid[:2] = True
  pred = gt.copy()
  pred[2:] += 100  # errors on invalid pixels do not count
  assert sf.epe(pred, gt, valid) == 0.0


def test_real_davis_frames_and_masks(davis_train):
  ds = sf.SyntheticFlowSet(davis_train, seed=0, sequences=["bear", "boat"])
  for i in range(2):  # smooth, then piecewise with the object mask of the frame
    a, b, flow, valid = ds[i]
    assert a.shape == (480, 854, 3)
    check_pair(a, b, flow, valid)
  small = sf.SyntheticFlowSet(davis_train, 64, 96, seed=0, sequences=["bear", "boat"])
  check_pair(*small[1])
