"""The `vsreid` command: help, segment on a generated DAVIS root and on a frame folder,
one-line errors, atomic per-sequence output."""
import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from vsreid_jax import cli
from vsreid_jax.data import read_mask, write_mask
from vsreid_jax.data.results import MANIFEST, SequenceWriter, overlay_suffix


def test_help_and_version(capsys):
  with pytest.raises(SystemExit) as e:
    cli.main(["--version"])
  assert e.value.code == 0 and "vsreid-jax" in capsys.readouterr().out
  for cmd in ("segment", "eval", "train", "convert-mask"):
    with pytest.raises(SystemExit):
      cli.main([cmd, "--help"])
    assert "usage: vsreid " + cmd in capsys.readouterr().out


def _iou(a, b):
  return (a & b).sum() / max((a | b).sum(), 1)


def _assert_tracks(out_dir, gt_dir, files):
  """The written masks: frame 0 is the given mask and every later frame follows every object better
  than frame 0's mask would (the generated objects move and grow; warp-only tracking of these small
  objects degrades over the clip, from IoU ~0.8 to ~0.25, while the stale mask falls to ~0.1)."""
  masks = [read_mask(os.path.join(out_dir, f)) for f in files]
  gts = [read_mask(os.path.join(gt_dir, f)) for f in files]
  np.testing.assert_array_equal(masks[0], gts[0])
  for k in np.unique(gts[0])[1:]:
    ious = [_iou(m == k, g == k) for m, g in zip(masks[1:], gts[1:])]
    stale = [_iou(masks[0] == k, g == k) for g in gts[1:]]
    assert all(i > s for i, s in zip(ious, stale)) and np.mean(ious) > np.mean(stale) + 0.1, (k, ious, stale)
    assert min(ious) > 0.2, (k, ious)


def test_segment_davis_root_writes_palette_pngs(shapes_root, tmp_path, capsys):
  out = tmp_path / "out"
  # The warp-only net (the shipped N_mp is trained on real video, not on these generated shapes).
  assert cli.main(["segment", "--davis", shapes_root, "--set", "val", "--out", str(out),
                   "--scales", "0.15:65", "--overlay", "--net", "identity"]) == 0
  captured = capsys.readouterr()
  text = captured.out
  # The outer bar moves through propagation and re-identification before any frame is written
  # (the solver runs the whole video first), then counts the frames written.
  for seq, n in (("two-objects", 10), ("one-object", 8)):
    order = [captured.err.find(f"{seq} {phase}") for phase in ("propagate", "re-id", "write")]
    assert all(i >= 0 for i in order) and order == sorted(order), captured.err[-2000:]
    assert f"{seq} propagate: 100%" in captured.err and f"{n - 1}/{n - 1}" in captured.err
  suffix = overlay_suffix()  # H.264 MP4 where this OpenCV can encode it, else VP9 WebM
  for seq, n in (("two-objects", 10), ("one-object", 8)):
    files = sorted(os.listdir(out / seq))
    assert files == [MANIFEST] + [f"{i:05d}.png" for i in range(n)]
    assert json.loads((out / seq / MANIFEST).read_text())["side_files"] == [f"{seq}{suffix}",
                                                                          f"{seq}_retrievals.json",
                                                                          f"{seq}_timing.json"]
    _assert_tracks(out / seq, os.path.join(shapes_root, "Annotations", "480p", seq), files[1:])
    # The overlay is at the source size, and at DAVIS's 24 fps (frame folders carry no rate).
    cap = cv2.VideoCapture(str(out / f"{seq}{suffix}"))
    h, w = read_mask(os.path.join(shapes_root, "Annotations", "480p", seq, "00000.png")).shape
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (w, h)
    assert cap.get(cv2.CAP_PROP_FPS) == 24.0
    assert sum(1 for _ in iter(lambda: cap.read()[0], False)) == n
    # Every output is printed with its path.
    for line in (f"masks: {out / seq}{os.sep} ({n} palette PNGs", f"overlay: {out / seq}{suffix}",
                 f"retrieval log: {out / seq}_retrievals.json", f"timing: {out / seq}_timing.json"):
      assert line in text
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
  files = sorted(os.listdir(tmp_path / "one-object"))
  assert files == [MANIFEST] + [f"{i:05d}.png" for i in range(8)]
  _assert_tracks(tmp_path / "one-object", os.path.dirname(mask), files[1:])
  assert not (tmp_path / "one-object_retrievals.json").exists()  # propagation only: no solver log


@pytest.mark.parametrize("problem", ["size", "empty", "void-only", "rgb", "no-mask"])
def test_bad_first_mask_gives_one_line_error(shapes_root, tmp_path, capsys, problem):
  frames = os.path.join(shapes_root, "JPEGImages", "480p", "one-object")
  mask = tmp_path / "m.png"
  if problem == "size":
    write_mask(mask, np.ones((10, 10), np.uint8))
  elif problem == "empty":
    write_mask(mask, np.zeros((64, 96), np.uint8))
  elif problem == "void-only":
    void = np.zeros((64, 96), np.uint8)
    void[10:20, 10:30] = 255
    write_mask(mask, void)
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
              "void-only": "m.png: mask is empty (all background and void (255))",
              "rgb": "m.png: is an RGB colour image", "no-mask": "--video needs --mask"}[problem]
  assert expected in err
  assert not os.path.exists(tmp_path / "o" / "one-object")


def test_void_in_the_first_mask_is_no_object(shapes_root, tmp_path, capsys):
  frames = os.path.join(shapes_root, "JPEGImages", "480p", "one-object")
  gt = read_mask(os.path.join(shapes_root, "Annotations", "480p", "one-object", "00000.png"))
  mask = gt.copy()
  mask[:3] = 255  # a void band, as DAVIS marks uncertain pixels
  write_mask(tmp_path / "m.png", mask)
  assert cli.main(["segment", "--video", frames, "--mask", str(tmp_path / "m.png"), "--out", str(tmp_path / "o"),
                   "--no-progress", "--net", "identity", "--method", "propagate", "--scales", "0.15:65"]) == 0
  assert "1 objects" in capsys.readouterr().out
  np.testing.assert_array_equal(read_mask(tmp_path / "o" / "one-object" / "00000.png"), gt)  # void written as 0
  for i in range(8):
    assert read_mask(tmp_path / "o" / "one-object" / f"{i:05d}.png").max() <= 1


def test_interrupted_sequence_leaves_no_complete_looking_folder(tmp_path):
  with pytest.raises(RuntimeError):
    with SequenceWriter(tmp_path, "seq") as w:
      w.write("00000", np.zeros((4, 4), np.uint8))
      raise RuntimeError("killed")
  assert os.listdir(tmp_path) == []
  with SequenceWriter(tmp_path, "seq") as w:
    w.write("00000", np.zeros((4, 4), np.uint8))
  assert os.listdir(tmp_path) == ["seq"] and oct(os.stat(tmp_path / "seq").st_mode & 0o777) != "0o700"


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_console_script_reports_errors_without_traceback(tmp_path):
  # Runs the checkout's package (not an installed copy): the repo root first on PYTHONPATH.
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO] + [p for p in os.environ.get("PYTHONPATH", "").split(
      os.pathsep) if p]))
  proc = subprocess.run([sys.executable, "-m", "vsreid_jax", "segment", "--davis", str(tmp_path / "nowhere"),
                         "--out", str(tmp_path / "o")], capture_output=True, text=True, env=env, cwd=REPO)
  assert proc.returncode == 2
  assert proc.stderr.strip() == f"vsreid: error: {tmp_path / 'nowhere'}: DAVIS root not found"


def test_broken_video_is_one_line_on_the_real_stderr(tmp_path):
  # FFmpeg inside OpenCV writes its own complaint ("moov atom not found") to the process's stderr.
  (tmp_path / "broken.mp4").write_bytes(b"\x00" * 64)
  write_mask(tmp_path / "m.png", np.ones((4, 4), np.uint8))
  proc = subprocess.run([sys.executable, "-m", "vsreid_jax", "segment", "--video", str(tmp_path / "broken.mp4"),
                         "--mask", str(tmp_path / "m.png"), "--out", str(tmp_path / "o"), "--net", "identity"],
                        capture_output=True, text=True)
  assert proc.returncode == 2
  assert proc.stderr.strip() == (f"vsreid: error: {tmp_path / 'broken.mp4'}: cannot open video (unsupported "
                                 "codec?); extract frames with ffmpeg into a folder and pass the folder instead")


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


UNWRITABLE = "/proc/1/vsreid-out"  # a folder no one may create, root included (Linux procfs)


def _error_line(capsys):
  err = capsys.readouterr().err.strip()
  assert err.startswith("vsreid: error: ") and "\n" not in err, err
  return err


@pytest.mark.parametrize("option", ["--out", "--flow-cache", "--save-adapted"])
def test_output_folders_that_cannot_be_written_are_one_line_errors(shapes_root, tmp_path, capsys, option):
  frames = os.path.join(shapes_root, "JPEGImages", "480p", "one-object")
  mask = os.path.join(shapes_root, "Annotations", "480p", "one-object", "00000.png")
  (tmp_path / "file").write_text("x")
  cases = [(str(tmp_path / "file"), f"{option} is a file, not a folder"),
           (str(tmp_path / "file" / "sub"), f"cannot create {option} folder: {tmp_path / 'file'} is a file"),
           ("", f"{option}: empty path")]
  if os.path.isdir("/proc/1"):
    cases.append((UNWRITABLE, f"{option} folder is not writable"))
  for path, expected in cases:
    outputs = {"--out": str(tmp_path / "o"), option: path}
    args = ["segment", "--video", frames, "--mask", mask, "--no-progress", "--net", "identity", "--method",
            "propagate", "--online-steps", "1"] + [f"{k}={v}" for k, v in outputs.items()]
    assert cli.main(args) == 2
    assert expected in _error_line(capsys)
  assert not (tmp_path / "o").exists()


def test_eval_results_folder_and_convert_mask_errors(shapes_root, tmp_path, capsys):
  (tmp_path / "file").write_text("x")
  assert cli.main(["eval", "--davis", shapes_root, "--results", str(tmp_path / "file")]) == 2
  assert "results folder not found" in _error_line(capsys)
  if os.path.isdir("/proc/1"):
    assert cli.main(["eval", "--davis", shapes_root, "--results", "/proc/1"]) == 2
    assert "--results folder is not writable" in _error_line(capsys)
  assert cli.main(["eval", "--davis", shapes_root, "--results", os.path.join(shapes_root, "Annotations", "480p")]) == 2
  assert "--results is inside the DAVIS input folder" in _error_line(capsys)
  (tmp_path / "notes.txt").write_text("not an image")
  assert cli.main(["convert-mask", str(tmp_path / "notes.txt"), str(tmp_path / "m.png")]) == 2
  assert "notes.txt: cannot read image" in _error_line(capsys)
  from PIL import Image
  rgb = tmp_path / "rgb.png"
  Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(rgb)
  for output, expected in ((rgb, "is the input"), (tmp_path, "pass the .png file"), (tmp_path / "m.txt", ".png"),
                           (tmp_path / "file" / "m.png", "is a file"),
                           (shutil.copy(rgb, tmp_path / "photo.png"), "exists and is not an indexed mask")):
    assert cli.main(["convert-mask", str(rgb), str(output)]) == 2
    assert expected in _error_line(capsys)
  assert cli.main(["convert-mask", str(rgb), str(tmp_path / "m.png")]) == 0
  assert os.path.isfile(tmp_path / "m.png") and os.path.isfile(rgb)


@pytest.mark.parametrize("line", ["..", "/etc", "../two-objects", "one-object\none-object"])
def test_set_file_lines_that_are_paths_or_repeated_are_refused(shapes_root, tmp_path, capsys, line):
  root = tmp_path / "root"
  shutil.copytree(shapes_root, root)
  (root / "ImageSets" / "2017" / "val.txt").write_text(line + "\n")
  assert cli.main(["segment", "--davis", str(root), "--out", str(tmp_path / "o"), "--no-progress",
                   "--net", "identity", "--method", "propagate"]) == 2
  err = _error_line(capsys)
  assert "val.txt: " in err and ("is not a sequence name" in err or "twice" in err)
  assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("scales,expected", [
    ("0.15:0", "crop size 0 must be a positive"), ("0.15:-5", "crop size -5 must be a positive"),
    ("nan:449", "box margin nan must be a finite"), ("-1:449", "box margin -1.0 must be"),
    ("0.15:nan", "expected margin:crop pairs"), ("0.15:", "expected margin:crop pairs"),
    ("0.15:1000000", "--scales: crop 1000000 needs about ")])
def test_bad_or_absurd_scales_are_one_line_errors(shapes_root, tmp_path, capsys, scales, expected):
  assert cli.main(["segment", "--davis", shapes_root, "--out", str(tmp_path / "o"), "--no-progress", "--net",
                   "identity", "--method", "propagate", f"--scales={scales}"]) == 2
  err = _error_line(capsys)
  assert expected in err
  if "needs about" in expected:
    assert "GiB are free; use a crop of at most" in err
  assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("assignment,expected", [
    ("data.batch_size=0", "global batch 0 must be a positive multiple"),
    ("data.batch_size=-2", "global batch -2"),
    ("data.batchsize=4", "data has no key 'batchsize'; did you mean 'batch_size'?"),
    ("nope.x=1", "the config has no key 'nope'"),
    ("data.batch_size=abc", "--override data.batch_size=abc: ")])
def test_bad_training_overrides_are_one_line_errors(tmp_path, capsys, assignment, expected):
  assert cli.main(["train", "--workdir", str(tmp_path / "w"), "--data-dir", str(tmp_path), "--set",
                   assignment]) == 2
  assert expected in _error_line(capsys)
  assert not (tmp_path / "w").exists()


def test_file_system_failure_while_writing_is_one_line(shapes_root, tmp_path, capsys, monkeypatch):
  from vsreid_jax.data import results
  frames = os.path.join(shapes_root, "JPEGImages", "480p", "one-object")
  mask = os.path.join(shapes_root, "Annotations", "480p", "one-object", "00000.png")

  def disk_full(path, ids):
    raise OSError(28, "No space left on device", path)

  monkeypatch.setattr(results, "write_mask", disk_full)
  assert cli.main(["segment", "--video", frames, "--mask", mask, "--out", str(tmp_path / "o"), "--no-progress",
                   "--net", "identity", "--method", "propagate", "--scales", "0.15:33"]) == 2
  assert "00000.png: No space left on device" in _error_line(capsys)
  assert os.listdir(tmp_path / "o") == []  # the partial folder was removed
