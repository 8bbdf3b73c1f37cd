"""The shipped default N_mp: it loads, is the default, and beats warp-only on the demo clip
(a held-out sequence, never trained on) against the real DAVIS ground truth."""
import os
import shutil

import numpy as np
import pytest

from vsreid_jax import cli
from vsreid_jax.api import Segmenter
from vsreid_jax.configs import segment as segment_config
from vsreid_jax.data import splits
from vsreid_jax.data import open_frames, read_mask
from vsreid_jax.models import weights

from conftest import SHARED_DATA

DEMO = cli.DEMO_DIR


def test_default_weights_ship_in_the_package_and_are_the_default():
  assert os.path.isfile(weights.DEFAULT_WEIGHTS)
  name, meta, _ = weights.load_weights(weights.DEFAULT_WEIGHTS)
  assert name == "lite_cpu" and meta["step"] > 0
  assert segment_config.get_config().net == "default"


def _iou(a, b):
  return (a & b).sum() / max((a | b).sum(), 1)


def test_demo_main_job(tmp_path, capsys, monkeypatch):
  """`vsreid segment --demo` with the shipped N_mp on the demo's first 5 frames (the whole clip
  costs 5x more and shows nothing more), propagation only: the full solver through the CLI, with
  the shipped detector and ReID net, is test_cli's DAVIS-root test."""
  demo = tmp_path / "demo_clip"
  shutil.copytree(os.path.join(DEMO, "Annotations"), demo / "Annotations")
  shutil.copy(os.path.join(DEMO, "ATTRIBUTION.txt"), demo / "ATTRIBUTION.txt")
  (demo / "JPEGImages").mkdir()
  for i in range(5):
    shutil.copy(os.path.join(DEMO, "JPEGImages", f"{i:05d}.jpg"), demo / "JPEGImages")
  monkeypatch.setattr(cli, "DEMO_DIR", str(demo))
  out_dir = tmp_path / "out"
  assert cli.main(["segment", "--demo", "--out", str(out_dir), "--no-progress", "--overlay", "--method",
                   "propagate"]) == 0
  out = capsys.readouterr().out
  assert "horsejump-low" in out and "CC BY-NC 4.0" in out  # the attribution is printed
  assert "method=propagate net=default" in out and "frames/s" in out
  assert sorted(os.listdir(out_dir / "demo")) == [".vsreid-results.json"] + [f"{i:05d}.png" for i in range(5)]
  overlays = [f for f in os.listdir(out_dir) if f.startswith("demo_overlay.")]
  assert len(overlays) == 1 and (out_dir / overlays[0]).stat().st_size > 0
  assert f"overlay: {out_dir / overlays[0]}" in out
  masks = [read_mask(out_dir / "demo" / f"{i:05d}.png") for i in range(5)]
  np.testing.assert_array_equal(masks[0], read_mask(demo / "Annotations" / "00000.png"))
  # The horse (one object) is followed frame to frame: each mask overlaps the last.
  ids = set(np.unique(masks[0])) - {0}
  for prev, cur in zip(masks, masks[1:]):
    assert set(np.unique(cur)) - {0} == ids
    assert all(_iou(prev == k, cur == k) > 0.6 for k in ids), [_iou(prev == k, cur == k) for k in ids]
  gt_dir = SHARED_DATA / "davis2016-train-240p" / "Annotations" / "240p" / "horsejump-low"
  if gt_dir.is_dir():  # the real ground truth, beside the checkout
    ious = [_iou(masks[i] > 0, read_mask(gt_dir / f"{i:05d}.png") > 0) for i in range(1, 5)]
    assert min(ious) > 0.6, ious  # measured 0.89, 0.82, 0.76, 0.69


def test_shipped_net_beats_warp_only_on_the_held_out_demo_clip():
  gt_dir = SHARED_DATA / "davis2016-train-240p" / "Annotations" / "240p" / "horsejump-low"
  if not gt_dir.is_dir():
    pytest.skip(f"real DAVIS ground truth not found at {gt_dir} (only present beside the repo checkout)")
  assert "horsejump-low" in splits.held_out()["davis2016-train-240p"]  # the demo clip was never trained on
  frames = open_frames(os.path.join(DEMO, "JPEGImages"))
  first = read_mask(os.path.join(DEMO, "Annotations", "00000.png"))
  j_mean = {}
  for net in ("identity", "default"):
    config = segment_config.get_config()
    config.net = net
    seg = Segmenter(config)
    state = seg.init_state(frames, name="demo")
    seg.add_mask(state, first)
    ious = []
    for i, ids in seg.propagate(state):
      gt, pred = read_mask(gt_dir / f"{i:05d}.png") > 0, ids > 0
      ious.append((gt & pred).sum() / max((gt | pred).sum(), 1))
    j_mean[net] = float(np.mean(ious[1:-1]))  # first and last frame excluded, as in DAVIS
  # Measured when shipped: identity 0.533, default 0.672 (the unrolled step-150 fine-tune, not shipped: 0.677).
  # With the first-frame target model on by default (issue 17 lever 3): default 0.654 (its J&F on this clip
  # goes up, 0.482 -> 0.509; J alone down). The net shipped since the sixth session (trained on the
  # train split alone, the same recipe): default 0.714, identity 0.533. The net shipped since the eighth
  # (train sequences + synthetic occlusion clips composed from them): default 0.651.
  assert j_mean["default"] > j_mean["identity"] + 0.08, j_mean


# Masks of the shipped N_mp on the demo's first 8 frames (propagation, default config), written by
# the API at commit 83ab49c, before issue 19's refactor (tests/data/demo_propagate/*.png), written
# again with the same code when the N_mp trained on the train split alone was shipped (its masks
# differ from the earlier net's on 0.2-1.2% of each frame's pixels, over the tolerance below), and again
# when the net trained with synthetic occlusion clips was shipped (0.1-1.5% of the pixels): a change
# meant to keep behaviour must give the same masks. XLA's CPU results may differ by a rounding on
# another CPU, so a few pixels per frame may flip; a changed setting changes far more (measured:
# flip averaging off 0.8% of frame 7's pixels, DIS fast instead of medium 2.4%).
STORED_MASKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "demo_propagate")
STORED_PIXELS_OFF = 1e-3  # share of a frame's pixels allowed to differ


def _propagate_demo8(target_model):
  frames = open_frames(os.path.join(DEMO, "JPEGImages"))
  config = segment_config.get_config()
  config.method = "propagate"
  config.propagation.target_model = target_model
  seg = Segmenter(config)
  state = seg.init_state(np.stack([frames[i] for i in range(8)]), name="demo8")
  seg.add_mask(state, read_mask(os.path.join(DEMO, "Annotations", "00000.png")))
  return seg.segment(state)


# (target model, stored masks): N_mp alone, stored before the issue-19 refactor; N_mp with the
# first-frame target model with its default settings (fitted on a crop one box width wide), stored
# when that default was chosen.
@pytest.mark.parametrize("target_model,folder", [("off", STORED_MASKS), ("auto", STORED_MASKS + "_target")])
def test_shipped_net_gives_the_masks_stored_before_the_refactor(target_model, folder):
  stored = [read_mask(os.path.join(folder, f"{i:05d}.png")) for i in range(8)]
  off = [float(np.mean(ids != stored[i])) for i, ids in _propagate_demo8(target_model)]
  assert len(off) == len(stored) and off[0] == 0.0
  assert max(off) <= STORED_PIXELS_OFF, off
