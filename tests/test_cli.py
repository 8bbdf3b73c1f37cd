"""The `vsreid` command: help, segment on a generated DAVIS root and on a frame folder,
one-line errors, atomic per-sequence output."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from vsreid_jax import cli
from vsreid_jax.data import read_mask, write_mask
from vsreid_jax.data.results import SequenceWriter


def test_help_and_version(capsys):
  with pytest.raises(SystemExit) as e:
    cli.main(["--version"])
  assert e.value.code == 0 and "vsreid-jax" in capsys.readouterr().out
  for cmd in ("segment", "eval", "train", "convert-mask"):
    with pytest.raises(SystemExit):
      cli.main([cmd, "--help"])
    assert "usage: vsreid " + cmd in capsys.readouterr().out


def test_segment_davis_root_writes_palette_pngs(shapes_root, tmp_path, capsys):
  out = tmp_path / "out"
  assert cli.main(["segment", "--davis", shapes_root, "--set", "val", "--out", str(out), "--no-progress",
                   "--scales", "0.15:65", "--overlay"]) == 0
  text = capsys.readouterr().out
  for seq, n in (("two-objects", 10), ("one-object", 8)):
    files = sorted(os.listdir(out / seq))
    assert files == [f"{i:05d}.png" for i in range(n)]
    first = read_mask(out / seq / "00000.png")
    gt = read_mask(os.path.join(shapes_root, "Annotations", "480p", seq, "00000.png"))
    np.testing.assert_array_equal(first, gt)
    assert (out / f"{seq}_overlay.mp4").stat().st_size > 0
    # The default method is the full solver: its retrieval log is written beside the masks.
    log = json.loads((out / f"{seq}_retrievals.json").read_text())
    assert log["sequence"] == seq and log["net_calls"] > 0 and isinstance(log["retrievals"], list)
  assert not [f for f in os.listdir(out) if f.startswith(".")]  # no partial folders left
  assert "method=vsreid" in text
  # The detector and ReID run only on frames where an object is lost (tests/test_solver_caches.py).
  assert "frames/s" in text and "flow" in text and "net" in text


def test_segment_frame_folder_with_mask(shapes_root, tmp_path):
  frames = os.path.join(shapes_root, "JPEGImages", "480p", "one-object")
  mask = os.path.join(shapes_root, "Annotations", "480p", "one-object", "00000.png")
  assert cli.main(["segment", "--video", frames, "--mask", mask, "--out", str(tmp_path), "--no-progress",
                   "--net", "identity", "--method", "propagate"]) == 0
  assert len(os.listdir(tmp_path / "one-object")) == 8
  assert not (tmp_path / "one-object_retrievals.json").exists()  # propagation only: no solver log


@pytest.mark.parametrize("problem", ["size", "empty", "rgb", "no-mask"])
def test_bad_first_mask_gives_one_line_error(shapes_root, tmp_path, capsys, problem):
  frames = os.path.join(shapes_root, "JPEGImages", "480p", "one-object")
  mask = tmp_path / "m.png"
  if problem == "size":
    write_mask(mask, np.ones((10, 10), np.uint8))
  elif problem == "empty":
    write_mask(mask, np.zeros((64, 96), np.uint8))
  elif problem == "rgb":
    from PIL import Image
    Image.fromarray(np.zeros((64, 96, 3), np.uint8)).save(mask)
  args = ["segment", "--video", frames, "--out", str(tmp_path / "o"), "--no-progress", "--net", "identity"]
  if problem != "no-mask":
    args += ["--mask", str(mask)]
  assert cli.main(args) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("vsreid: error: ") and "\n" not in err
  expected = {"size": "m.png: mask is 10x10 but the frames are 96x64", "empty": "m.png: mask is empty",
              "rgb": "m.png: is an RGB colour image", "no-mask": "--video needs --mask"}[problem]
  assert expected in err
  assert not os.path.exists(tmp_path / "o" / "one-object")


def test_interrupted_sequence_leaves_no_complete_looking_folder(tmp_path):
  with pytest.raises(RuntimeError):
    with SequenceWriter(tmp_path, "seq") as w:
      w.write("00000", np.zeros((4, 4), np.uint8))
      raise RuntimeError("killed")
  assert os.listdir(tmp_path) == []
  with SequenceWriter(tmp_path, "seq") as w:
    w.write("00000", np.zeros((4, 4), np.uint8))
  assert os.listdir(tmp_path) == ["seq"] and oct(os.stat(tmp_path / "seq").st_mode & 0o777) != "0o700"


def test_console_script_reports_errors_without_traceback(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "vsreid_jax", "segment", "--davis", str(tmp_path / "nowhere"),
                         "--out", str(tmp_path / "o")], capture_output=True, text=True)
  assert proc.returncode == 2
  assert proc.stderr.strip() == f"vsreid: error: {tmp_path / 'nowhere'}: DAVIS root not found"


def test_train_without_data_is_a_one_line_error(tmp_path, capsys):
  assert cli.main(["train", "--workdir", str(tmp_path / "w"), "--data-dir", str(tmp_path / "none")]) == 2
  err = capsys.readouterr().err.strip()
  assert err == f"vsreid: error: {tmp_path / 'none'}: data folder not found; pass --data-dir DIR holding the DAVIS roots"


@pytest.mark.parametrize("option", ["--detector", "--reid"])
def test_missing_or_bad_reid_weights_are_one_line_errors(tmp_path, capsys, option):
  junk = tmp_path / "junk.msgpack"
  junk.write_bytes(b"junk")
  for path, expected in ((tmp_path / "none.msgpack", "weights not found"), (junk, "not a vsreid weights file")):
    out = tmp_path / f"out-{path.stem}"
    assert cli.main(["segment", "--demo", "--out", str(out), "--no-progress", option, str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"vsreid: error: {path}") and expected in err[0]
    assert not out.exists() or not os.listdir(out)  # nothing written
