"""What `vsreid segment` leaves behind (issue 14, item 5): a browser-playable overlay at the
source frame rate and size, per-object binary masks, every output's path printed (the outer
progress bar that moves while the solver runs is checked in test_cli.py, on its vsreid run)."""
import os
import shutil

import cv2
import numpy as np

from vsreid_jax import cli
from vsreid_jax.data import DavisDataset, read_mask, write_mask
from vsreid_jax.data.results import overlay_suffix
from vsreid_jax.eval.davis import evaluate_sequences
from vsreid_jax.data import media

FAST = ["--method", "propagate", "--net", "identity", "--scales", "0.15:33", "--flow", "dis-ultrafast",
        "--no-progress"]


def _clip(path, n=6, h=48, w=64, fps=10.0):
  """A tiny clip of a square moving right: a video file (`path` ending .mp4) or else a folder of
  PNG frames; returns its first-frame mask path."""
  writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h)) if str(path).endswith(
      ".mp4") else None
  if writer is None:
    os.makedirs(path)
  for i in range(n):
    frame = np.full((h, w, 3), 30, np.uint8)
    frame[16:32, 8 + 3 * i:24 + 3 * i] = 220
    if writer is None:
      cv2.imwrite(os.path.join(path, f"{i}.png"), frame)
    else:
      writer.write(frame)
  if writer is not None:
    writer.release()
  mask = np.zeros((h, w), np.uint8)
  mask[16:32, 8:24] = 1
  mask_path = str(path) + "_first.png"
  write_mask(mask_path, mask)
  return mask_path


def _probe(path):
  """(fps, width, height, frames decoded) of a video file."""
  cap = cv2.VideoCapture(str(path))
  frames = sum(1 for _ in iter(lambda: cap.read()[0], False))
  return cap.get(cv2.CAP_PROP_FPS), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), frames


def test_overlay_of_a_video_is_a_browser_codec_at_its_frame_rate_and_size(tmp_path, capsys):
  mask = _clip(tmp_path / "clip.mp4")
  out = tmp_path / "out"
  assert cli.main(["segment", "--video", str(tmp_path / "clip.mp4"), "--mask", mask, "--out", str(out),
                   "--overlay"] + FAST) == 0
  suffix = overlay_suffix()
  assert suffix == "_overlay" + media.browser_codec()[1] and suffix in ("_overlay.mp4", "_overlay.webm")
  assert _probe(out / f"clip{suffix}") == (10.0, 64, 48, 6)  # the container's rate, the source size
  assert f"overlay: {out / 'clip'}{suffix} (" in capsys.readouterr().out


def test_overlay_of_frames_is_24_fps_unless_told_and_keeps_an_odd_size(tmp_path, capsys):
  mask = _clip(tmp_path / "frames", h=49, w=65)
  out = tmp_path / "out"
  assert cli.main(["segment", "--video", str(tmp_path / "frames"), "--mask", mask, "--out", str(out),
                   "--overlay"] + FAST) == 0
  suffix = overlay_suffix()
  # 24 fps (DAVIS's rate); the odd 65x49 source padded by one pixel each way (4:2:0 video), no pixel cut.
  assert _probe(out / f"frames{suffix}") == (24.0, 66, 50, 6)
  assert "24 fps" in capsys.readouterr().out
  assert cli.main(["segment", "--video", str(tmp_path / "frames"), "--mask", mask, "--out", str(out),
                   "--overlay", "--fps", "5"] + FAST) == 0
  assert _probe(out / f"frames{suffix}")[0] == 5.0
  assert "5 fps" in capsys.readouterr().out


def test_bad_fps_is_one_line(tmp_path, capsys):
  mask = _clip(tmp_path / "clip.mp4", n=2)
  for bad in ("0", "-3", "nan", "inf"):
    assert cli.main(["segment", "--video", str(tmp_path / "clip.mp4"), "--mask", mask, "--out",
                     str(tmp_path / "out"), "--overlay", "--fps", bad] + FAST) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vsreid: error: --fps") and "\n" not in err
  assert not (tmp_path / "out").exists()


def test_per_object_masks_beside_the_davis_layout_which_still_evaluates(shapes_root, tmp_path, capsys):
  out = tmp_path / "out"
  assert cli.main(["segment", "--davis", shapes_root, "--set", "val", "--sequences", "two-objects", "--out",
                   str(out), "--per-object", "--eval"] + FAST) == 0
  text = capsys.readouterr().out
  seq = out / "two-objects"
  names = [f"{i:05d}" for i in range(10)]
  assert sorted(os.listdir(seq / "objects")) == ["1", "2"]
  for name in names:
    ids = read_mask(seq / f"{name}.png")
    for oid in (1, 2):
      binary = cv2.imread(str(seq / "objects" / str(oid) / f"{name}.png"), cv2.IMREAD_UNCHANGED)
      assert binary.dtype == np.uint8 and binary.ndim == 2 and set(np.unique(binary)) <= {0, 255}
      np.testing.assert_array_equal(binary == 255, ids == oid)
  assert f"per-object masks: {seq / 'objects'}" in text
  # The evaluator reads OUT/<seq>/<frame>.png as before: the objects/ folder changes nothing.
  ds = DavisDataset(shapes_root)
  with_objects = evaluate_sequences(ds, ["two-objects"], str(out)).global_
  shutil.rmtree(seq / "objects")
  assert evaluate_sequences(ds, ["two-objects"], str(out)).global_ == with_objects
  # A per-object mask is a usable --mask prompt (0/255: one object, id 1).
  frame_dir = os.path.join(shapes_root, "JPEGImages", "480p", "two-objects")
  binary = tmp_path / "object2.png"
  cv2.imwrite(str(binary), np.where(read_mask(seq / "00000.png") == 2, 255, 0).astype(np.uint8))
  assert cli.main(["segment", "--video", frame_dir, "--mask", str(binary), "--out", str(tmp_path / "again")]
                  + FAST) == 0
  assert "1 objects" in capsys.readouterr().out
