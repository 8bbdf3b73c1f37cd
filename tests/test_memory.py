"""Memory: the estimate before a run, the one-line refusal, and --max-size as the fallback."""
import os

import numpy as np
import pytest

from vsreid_jax import cli
from vsreid_jax import memory
from vsreid_jax.data import read_mask, synthetic
from vsreid_jax.data.frames import ArrayFrames, ResizedFrames


def test_estimate_grows_with_objects_frames_and_size():
  base = memory.estimate_bytes(4, 540, 960, 8, "vsreid")
  assert memory.estimate_bytes(4, 540, 960, 30, "vsreid") > base  # more objects
  assert memory.estimate_bytes(2, 540, 960, 8, "vsreid") < base  # fewer frames: fewer flows kept
  # Past the flow cache's few fields and the solver's in-memory budget, length costs no memory.
  assert memory.estimate_bytes(300, 540, 960, 8, "vsreid") == memory.estimate_bytes(3000, 540, 960, 8, "vsreid")
  assert memory.estimate_bytes(300, 540, 960, 8, "propagate") == memory.estimate_bytes(3000, 540, 960, 8, "propagate")
  assert memory.estimate_bytes(4, 1080, 1920, 8, "vsreid") > base  # more pixels
  assert memory.estimate_bytes(4, 540, 960, 8, "propagate") < base  # no stored maps, no detector
  # The report this answers: 4 frames of 4K with 30 objects took 9.3 GiB, 2.1 GiB of it float16
  # maps of every frame, now uint8 and held in memory up to 128 MiB only.
  assert 6.5 * memory.GIB < memory.estimate_bytes(4, 2160, 3840, 30, "vsreid") < 9.3 * memory.GIB


def test_resized_frames_keep_the_long_side_within_max_size():
  frames = ArrayFrames(np.zeros((2, 90, 160, 3), np.uint8))
  small = ResizedFrames(frames, 64)
  assert small.size == (36, 64) and small[1].shape == (36, 64, 3) and small.input_size == (90, 160)
  assert small.names == frames.names and len(small) == 2


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
  root = tmp_path_factory.mktemp("mem")
  synthetic.write_davis_root(str(root), {"clip": synthetic.moving_shapes(n_frames=4, height=180, width=320,
                                                                         n_objects=2, seed=0)})
  return root / "JPEGImages" / "480p" / "clip", root / "Annotations" / "480p" / "clip"


def _segment(clip, out, *extra):
  frames, masks = clip
  return cli.main(["segment", "--video", str(frames), "--mask", str(masks / "00000.png"), "--out", str(out),
                   "--method", "propagate", "--net", "identity", "--no-progress"] + list(extra))


def test_too_little_memory_is_refused_with_the_estimate_and_max_size(clip, tmp_path, capsys, monkeypatch):
  budget = memory.estimate_bytes(4, 90, 160, 2, "propagate")  # fits at 160x90, not at 240x135
  monkeypatch.setattr(memory, "resident_bytes", lambda: 0)
  monkeypatch.setattr(memory, "available_bytes", lambda: budget)
  assert _segment(clip, tmp_path / "out") == 2
  err = capsys.readouterr().err.strip()
  assert "\n" not in err and err.startswith(f"vsreid: error: {clip[0]}: needs about ")
  assert (f"GiB of memory (4 frames of 320x180, 2 objects, method propagate) but the machine has "
          f"{budget / memory.GIB:.1f} GiB available; pass --max-size 160 (segments at most 160 pixels on the long side "
          "and writes the masks at 320x180)") in err
  assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")
  # The fallback the message names: segmented at 160x90, written at 320x180.
  assert _segment(clip, tmp_path / "out", "--max-size", "160") == 0
  written = sorted(os.listdir(tmp_path / "out" / "clip"))
  assert written == [".vsreid-results.json", "00000.png", "00001.png", "00002.png", "00003.png"]
  written = written[1:]
  for name in written:
    ids = read_mask(tmp_path / "out" / "clip" / name)
    truth = read_mask(clip[1] / name)
    assert ids.shape == truth.shape == (180, 320)
    assert set(np.unique(ids)) == {0, 1, 2}
    for k in (1, 2):
      iou = ((ids == k) & (truth == k)).sum() / ((ids == k) | (truth == k)).sum()
      assert iou > 0.7, (name, k, iou)


def test_max_size_must_be_sensible(clip, tmp_path, capsys):
  assert _segment(clip, tmp_path / "out", "--max-size", "0") == 2
  assert capsys.readouterr().err.strip() == ("vsreid: error: --max-size 0: must be at least 64 pixels (the long "
                                             "side to segment at)")


def test_max_size_flows_are_cached_apart_from_full_size_flows(clip, tmp_path):
  cache = tmp_path / "cache"
  assert _segment(clip, tmp_path / "small", "--max-size", "160", "--flow-cache", str(cache)) == 0
  assert _segment(clip, tmp_path / "full", "--flow-cache", str(cache)) == 0  # not fed the 160x90 flows
  assert read_mask(tmp_path / "full" / "clip" / "00003.png").shape == (180, 320)
