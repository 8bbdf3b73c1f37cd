"""Prompts on any frame and box prompts (issue 14, items 1 and 2), SAM 2's video predictor style:
`Segmenter.add_mask(state, mask, frame_idx, obj_id)`, `add_box`, `reset_state`, and the CLI's
`--mask FRAME:PNG`, `--use-all-masks`, `--box [FRAME:]ID:x0,y0,x1,y1` and `--backward`, on tiny
generated clips with the identity N_mp (warp only)."""
import os

import numpy as np
import pytest

from vsreid_jax import cli
from vsreid_jax.api import Segmenter
from vsreid_jax.configs import segment as segment_config
from vsreid_jax.data import read_mask, synthetic, write_mask
from vsreid_jax.geometry import mask_box_np as mask_box
from vsreid_jax.errors import InputError

T, K_START = 8, 3  # clip length; the frame where object 2 is given
FAST = ["--method", "propagate", "--net", "identity", "--scales", "0.15:33", "--flow", "dis-ultrafast",
        "--no-progress"]


@pytest.fixture(scope="module")
def clip():
  return synthetic.moving_shapes(n_frames=T, n_objects=2, seed=1)


@pytest.fixture(scope="module")
def root(clip, tmp_path_factory):
  """A DAVIS-layout root whose annotations hold object 2 only from frame K_START on."""
  frames, masks = clip
  masks = masks.copy()
  masks[:K_START][masks[:K_START] == 2] = 0
  return synthetic.write_davis_root(str(tmp_path_factory.mktemp("late") / "davis"), {"late": (frames, masks)})


def _segmenter(method="propagate"):
  config = segment_config.get_config()
  config.net, config.method = "identity", method
  config.flow = "dis-ultrafast"
  config.propagation.scales = ((0.15, 33),)
  return Segmenter(config)


def _iou(a, b):
  return (a & b).sum() / max((a | b).sum(), 1)


def _late_state(seg, clip):
  frames, masks = clip
  state = seg.init_state(frames, name="late")
  seg.add_mask(state, np.where(masks[0] == 1, 1, 0).astype(np.uint8))  # an id mask: object 1 at frame 0
  seg.add_mask(state, masks[K_START] == 2, frame_idx=K_START, obj_id=2)  # a binary mask at frame 3
  return state


@pytest.mark.parametrize("method", ["propagate", "solver"])
def test_object_added_at_frame_k_is_empty_before_k_and_tracked_after(clip, method):
  frames, masks = clip
  seg = _segmenter()
  state = _late_state(seg, clip)
  np.testing.assert_array_equal(state.object_ids, [1, 2])
  np.testing.assert_array_equal(state.starts, [0, K_START])
  assert state.first_area[1] == (masks[K_START] == 2).sum()  # the lost rule compares with frame 3's area
  if method == "propagate":
    out = dict(seg.segment(state))
  else:  # Algorithm 3's solver (no re-identification)
    result = seg.solve(state, reid=False)
    out = {t: result.ids(t, state.object_ids) for t in range(T)}
    np.testing.assert_array_equal(result.checkpoints[:, 1], [0, 1, 2, 3, 3, 3, 3, 3])  # before 3: given absent
    assert not result.alive[:K_START, 1].any() and result.alive[K_START:, 1].all()
  assert sorted(out) == list(range(T))
  for t in range(K_START):
    assert not (out[t] == 2).any(), t
    assert _iou(out[t] == 1, masks[t] == 1) > 0.6, t  # object 1 is tracked from frame 0 meanwhile
  np.testing.assert_array_equal(out[K_START] == 2, masks[K_START] == 2)
  for t in range(K_START + 1, T):
    assert _iou(out[t] == 2, masks[t] == 2) > 0.6, t


@pytest.mark.parametrize("method", ["propagate", "solver"])
def test_backward_on_request_fills_the_frames_before_k(clip, method):
  frames, masks = clip
  seg = _segmenter()
  state = _late_state(seg, clip)
  if method == "propagate":
    out = dict(seg.segment(state, backward=True))
  else:
    result = seg.solve(state, reid=False, backward=True)
    out = {t: result.ids(t, state.object_ids) for t in range(T)}
    np.testing.assert_array_equal(result.checkpoints[:, 1], K_START)  # all from frame 3's mask
  forward = dict(seg.segment(state))
  for t in range(K_START):
    assert _iou(out[t] == 2, masks[t] == 2) > 0.6, t
  for t in range(K_START, T):  # from frame 3 on, the same as forward only
    np.testing.assert_array_equal(out[t], forward[t])


def test_reset_state_clears_prompts_and_keeps_the_video(clip):
  frames, masks = clip
  seg = _segmenter()
  state = _late_state(seg, clip)
  list(seg.segment(state))
  flows = state.flows
  seg.reset_state(state)
  assert state.prompts == {} and state.object_ids is None and state.starts is None and state.result is None
  assert state.flows is flows and len(state.frames) == T
  with pytest.raises(ValueError, match="add_mask"):
    list(seg.segment(state))
  # Object 2 may now be given at another frame (before the reset that was a conflict).
  seg.add_mask(state, masks[1] == 2, frame_idx=1, obj_id=2)
  np.testing.assert_array_equal(state.object_ids, [2])
  np.testing.assert_array_equal(state.starts, [1])
  out = dict(seg.segment(state))
  assert not out[0].any() and _iou(out[1] == 2, masks[1] == 2) == 1.0


def test_the_same_object_again_at_its_frame_replaces_its_mask(clip):
  frames, masks = clip
  seg = _segmenter()
  state = _late_state(seg, clip)
  smaller = np.zeros_like(masks[K_START], bool)
  ys, xs = np.nonzero(masks[K_START] == 2)
  smaller[ys.min():ys.max() - 2, xs.min():xs.max() - 2] = True
  seg.add_mask(state, smaller, frame_idx=K_START, obj_id=2)
  assert state.first_area[1] == smaller.sum() and len(state.object_ids) == 2


def test_api_errors_name_the_source_and_the_fix(clip):
  frames, masks = clip
  seg = _segmenter()
  state = _late_state(seg, clip)
  with pytest.raises(InputError, match=r"b\.png: object 2 is already given at frame 3 .*reset_state"):
    seg.add_mask(state, masks[5] == 2, frame_idx=5, obj_id=2, source="b.png")
  with pytest.raises(InputError, match=r"e\.png: object 1 is already given at frame 0 \(by mask\)"):
    seg.add_mask(state, masks[5], frame_idx=5, source="e.png")  # an id mask: ids 1 and 2, both given before
  with pytest.raises(InputError, match=r"c\.png: frame 8 is out of range: the video has 8 frames; pass a frame "
                     r"index 0\.\.7"):
    seg.add_mask(state, masks[0], frame_idx=8, source="c.png")
  with pytest.raises(InputError, match=r"frame '2' is not an integer"):
    seg.add_mask(state, masks[0], frame_idx="2")
  with pytest.raises(InputError, match=r"d\.png: mask is 10x10 but the frames are 96x64"):
    seg.add_mask(state, np.ones((10, 10), np.uint8), frame_idx=2, obj_id=3, source="d.png")
  with pytest.raises(InputError, match="the mask of object 3 is empty"):
    seg.add_mask(state, np.zeros((64, 96), bool), frame_idx=2, obj_id=3)
  with pytest.raises(InputError, match="holds no pixel"):
    seg.add_box(state, (200, 10, 220, 30), obj_id=3)
  with pytest.raises(InputError, match="a box needs obj_id"):
    seg.add_box(state, (10, 10, 30, 30))
  np.testing.assert_array_equal(state.object_ids, [1, 2])  # nothing was added by the refused calls


def test_box_prompt_gives_a_mask_inside_the_box_close_to_the_gt(clip):
  frames, masks = clip
  seg = _segmenter()
  state = seg.init_state(frames, name="box")
  t = 2
  gt = masks[t] == 2
  box = mask_box(gt)  # the GT's tight box (x1, y1 exclusive)
  got = seg.add_box(state, box, frame_idx=t, obj_id=2)
  x0, y0, x1, y1 = box.astype(int)
  inside = np.zeros_like(gt)
  inside[y0:y1, x0:x1] = True
  assert got.any() and not (got & ~inside).any()
  # The clip's objects are rectangles, so the tight box is the object itself, and the identity N_mp
  # returns its prior (the filled box) unchanged: only the resampling of the guide (129 px) and the
  # crop (33 px) can move the border, by less than a pixel on each side. The bound: the IoU of the
  # GT with itself shrunk by one pixel on every side.
  shrunk = np.zeros_like(gt)
  shrunk[y0 + 1:y1 - 1, x0 + 1:x1 - 1] = True
  assert _iou(got, gt) >= _iou(shrunk, gt) > 0.7
  np.testing.assert_array_equal(state.object_ids, [2])
  np.testing.assert_array_equal(state.starts, [t])
  np.testing.assert_array_equal(state.prompts[2][1], got)
  # A loose box: the mask still stays inside it.
  loose = (x0 - 5, y0 - 5, x1 + 5, y1 + 5)
  got = seg.add_box(state, loose, frame_idx=t, obj_id=2)
  assert not got[:, :max(x0 - 5, 0)].any() and not got[:, x1 + 5:].any() and got[gt].all()


def test_box_prompt_ignores_the_target_model_fitted_on_another_video(clip):
  # The target model (propagation/target.py) holds the last video's fitted parameters; a box gives
  # no mask to fit it on, so the box's mask must not be fused with another video's model.
  frames, masks = clip
  seg = _segmenter()
  seg.config.propagation.target_model = "color"
  seg = Segmenter(seg.config)
  prev = seg.init_state(frames, name="prev")
  seg.add_mask(prev, masks[0])  # two objects
  list(seg.propagate(prev))
  assert seg.propagator.target is not None and seg.propagator.target.params is not None
  box = mask_box(masks[2] == 2)
  got = seg.add_box(seg.init_state(frames, name="box"), box, frame_idx=2, obj_id=2)
  ref = _segmenter()
  np.testing.assert_array_equal(got, ref.add_box(ref.init_state(frames, name="box"), box, frame_idx=2, obj_id=2))
  assert seg.propagator.target is not None  # back on for the video's propagation


# --------------------------------------------------------------------------------------- the CLI
def _late_masks(root, tmp_path):
  """m0.png: object 1 at frame 0; m3.png: object 2 at frame 3 (from the root's annotations)."""
  ann = os.path.join(root, "Annotations", "480p", "late")
  m0 = read_mask(os.path.join(ann, "00000.png"))
  m3 = read_mask(os.path.join(ann, f"{K_START:05d}.png"))
  write_mask(tmp_path / "m0.png", m0)
  write_mask(tmp_path / "m3.png", np.where(m3 == 2, 2, 0).astype(np.uint8))
  return os.path.join(root, "JPEGImages", "480p", "late"), str(tmp_path / "m0.png"), str(tmp_path / "m3.png")


def _ids(out, seq="late"):
  return [set(np.unique(read_mask(os.path.join(out, seq, f"{t:05d}.png"))).tolist()) for t in range(T)]


def test_cli_mask_frame_png_adds_an_object_at_its_frame_and_backward_fills_before(root, tmp_path, clip):
  video, m0, m3 = _late_masks(root, tmp_path)
  out = tmp_path / "o"
  assert cli.main(["segment", "--video", video, "--mask", m0, "--mask", f"{K_START}:{m3}", "--out", str(out)] + FAST) == 0
  ids = _ids(out)
  assert all(2 not in s for s in ids[:K_START]) and all(2 in s for s in ids[K_START:])
  assert all(1 in s for s in ids)
  np.testing.assert_array_equal(read_mask(out / "late" / f"{K_START:05d}.png") == 2, read_mask(m3) == 2)
  out = tmp_path / "b"
  assert cli.main(["segment", "--video", video, "--mask", f"0:{m0}", "--mask", f"{K_START}:{m3}", "--backward",
                   "--out", str(out)] + FAST) == 0
  assert all(2 in s for s in _ids(out))


def test_cli_use_all_masks_adds_objects_of_later_annotations(root, tmp_path):
  out = tmp_path / "plain"
  assert cli.main(["segment", "--davis", root, "--out", str(out)] + FAST) == 0
  assert all(2 not in s for s in _ids(out))  # frame 0's annotation only, as before
  out = tmp_path / "all"
  assert cli.main(["segment", "--davis", root, "--use-all-masks", "--out", str(out)] + FAST) == 0
  ids = _ids(out)
  assert all(2 not in s for s in ids[:K_START]) and all(2 in s for s in ids[K_START:])
  gt = read_mask(os.path.join(root, "Annotations", "480p", "late", f"{K_START:05d}.png"))
  # object 2 is frame 3's annotation there (object 1 is propagated from frame 0, not re-read)
  np.testing.assert_array_equal(read_mask(out / "late" / f"{K_START:05d}.png") == 2, gt == 2)


def test_cli_box_prompt(root, tmp_path, clip):
  frames, masks = clip
  video, m0, _ = _late_masks(root, tmp_path)
  x0, y0, x1, y1 = mask_box(masks[K_START] == 2).astype(int)
  out = tmp_path / "o"
  assert cli.main(["segment", "--video", video, "--mask", m0, "--box", f"{K_START}:2:{x0},{y0},{x1},{y1}",
                   "--out", str(out)] + FAST) == 0
  ids = _ids(out)
  assert all(2 not in s for s in ids[:K_START]) and all(2 in s for s in ids[K_START:])
  got = read_mask(out / "late" / f"{K_START:05d}.png") == 2
  assert _iou(got, masks[K_START] == 2) > 0.7


@pytest.mark.parametrize("args,expected", [
    (["--mask", "x:{m0}"], "--mask x:{m0}: FRAME 'x' is not an integer; pass --mask FRAME:PNG"),
    (["--mask", "{m0}", "--mask", "40:{m3}"], "{m3}: frame 40 is out of range: the video has 8 frames"),
    (["--mask", "{m0}", "--mask", "3:{m0}"], "{m0}: object 1 is already given at frame 0 (by {m0})"),
    (["--mask", "{m0}", "--mask", "3:{small}"], "{small}: mask is 10x10 but the frames are 96x64"),
    (["--box", "1:10,20,30"], "--box 1:10,20,30: '10,20,30' is not 4 numbers x0,y0,x1,y1"),
    (["--box", "a:1:10,20,30,40"], "--box a:1:10,20,30,40: FRAME 'a' is not an integer"),
    (["--box", "1:500,20,600,40"], "--box 1:500,20,600,40: box 500,20,600,40 holds no pixel of the 96x64 frame"),
    (["--box", "9:1:10,20,30,40"], "--box 9:1:10,20,30,40: frame 9 is out of range"),
])
def test_cli_prompt_errors_are_one_line(root, tmp_path, capsys, args, expected):
  video, m0, m3 = _late_masks(root, tmp_path)
  small = str(tmp_path / "small.png")
  write_mask(small, np.ones((10, 10), np.uint8))
  fill = dict(m0=m0, m3=m3, small=small)
  out = tmp_path / "o"
  assert cli.main(["segment", "--video", video, "--out", str(out)] + [a.format(**fill) for a in args] + FAST) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("vsreid: error: ") and "\n" not in err
  assert expected.format(**fill) in err
  assert not (out / "late").exists()  # nothing written


def test_cli_use_all_masks_and_box_with_the_wrong_source(root, tmp_path, capsys):
  video, m0, _ = _late_masks(root, tmp_path)
  for args, expected in ((["--video", video, "--mask", m0, "--use-all-masks"], "--use-all-masks: only with --davis"),
                         (["--davis", root, "--box", "1:1,1,5,5"], "--box: only with --video"),
                         (["--davis", root, "--mask", m0], "--mask: only with --video")):
    assert cli.main(["segment", "--out", str(tmp_path / "o")] + args + FAST) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and "\n" not in err
