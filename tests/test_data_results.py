"""Results never cost a user a file (issue 12, item 1): outputs never overlap inputs, only folders
this program wrote are replaced, atomically, and stale temporary folders of killed runs are cleaned.
Every case runs the real CLI on real files in a temporary folder."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from vsreid_jax import cli
from vsreid_jax.data import read_mask, write_mask
from vsreid_jax.data import results as results_lib
from vsreid_jax.data.results import MANIFEST, SequenceWriter, overlay_suffix
from vsreid_jax.errors import InputError

FAST = ["--method", "propagate", "--net", "identity", "--scales", "0.15:33", "--flow", "dis-ultrafast",
        "--no-progress"]


def make_clip(folder, n=3, h=24, w=32, ext=".png"):
  """A tiny clip: n frames of a square moving right, and its first-frame mask (returned path)."""
  os.makedirs(folder, exist_ok=True)
  for i in range(n):
    frame = np.full((h, w, 3), 30, np.uint8)
    frame[8:16, 4 + 2 * i:12 + 2 * i] = 220
    cv2.imwrite(os.path.join(folder, f"{i:05d}{ext}"), frame)
  mask = np.zeros((h, w), np.uint8)
  mask[8:16, 4:12] = 1
  path = os.path.join(os.path.dirname(os.path.abspath(folder)), os.path.basename(folder) + "_first.png")
  write_mask(path, mask)
  return path


def one_line_error(capsys, *expected):
  err = capsys.readouterr().err.strip()
  assert err.startswith("vsreid: error: ") and "\n" not in err, err
  for e in expected:
    assert e in err, err
  return err


def test_output_folder_that_holds_the_input_frames_is_refused(tmp_path, capsys, snapshot):
  # `--video a/data/clip --out a/data` once replaced the frames and a user's notes.txt with masks.
  data = tmp_path / "a" / "data"
  mask = make_clip(data / "clip")
  (data / "notes.txt").write_text("my notes")
  before = snapshot(tmp_path)
  assert cli.main(["segment", "--video", str(data / "clip"), "--mask", mask, "--out", str(data)] + FAST) == 2
  one_line_error(capsys, "input lies in the output", "clip")
  assert snapshot(tmp_path) == before


def test_video_dot_is_named_after_the_real_folder(tmp_path, capsys, monkeypatch, snapshot):
  # `--video .` once made OUT/. the results folder and deleted everything in --out.
  clip = tmp_path / "clip"
  mask = make_clip(clip)
  out = tmp_path / "out"
  out.mkdir()
  (out / "keep.txt").write_text("user file")
  (out / "other").mkdir()
  (out / "other" / "x.png").write_bytes(b"user image")
  before = snapshot(tmp_path, skip=[out / "clip", out / "clip_timing.json"])
  monkeypatch.chdir(clip)
  assert cli.main(["segment", "--video", ".", "--mask", mask, "--out", str(out)] + FAST) == 0
  assert "-> " + str(out / "clip") in capsys.readouterr().out
  assert snapshot(tmp_path, skip=[out / "clip", out / "clip_timing.json"]) == before
  assert sorted(os.listdir(out / "clip")) == [MANIFEST, "00000.png", "00001.png", "00002.png"]


def test_video_dot_dot_never_writes_into_the_working_folder(tmp_path, capsys, monkeypatch, snapshot):
  # `--video ..` once deleted files in the working folder; now it is named after the real parent,
  # and an --out inside the frame folder is refused before anything is written.
  clip = tmp_path / "clip"
  mask = make_clip(clip)
  work = clip / "work"
  work.mkdir()
  (work / "todo.txt").write_text("keep me")
  monkeypatch.chdir(work)
  before = snapshot(tmp_path)
  assert cli.main(["segment", "--video", "..", "--mask", mask, "--out", "."] + FAST) == 2
  one_line_error(capsys, "--out is inside the input folder")
  assert snapshot(tmp_path) == before
  assert cli.main(["segment", "--video", "..", "--mask", mask, "--out", str(tmp_path / "out")] + FAST) == 0
  assert snapshot(tmp_path, skip=[tmp_path / "out"]) == before
  assert os.path.isfile(tmp_path / "out" / "clip" / "00002.png")


def test_results_into_the_davis_annotations_are_refused_before_writing(shapes_root, tmp_path, capsys, snapshot):
  # `--davis R --out R/Annotations/480p --eval` once overwrote the ground truth and printed J&F 1.000.
  before = snapshot(shapes_root)
  for out in ("Annotations/480p", "Annotations", "JPEGImages/480p/one-object", "JPEGImages"):
    assert cli.main(["segment", "--davis", shapes_root, "--set", "val", "--out", os.path.join(shapes_root, out),
                     "--eval"] + FAST) == 2
    one_line_error(capsys, "--out is inside the input folder")
  assert snapshot(shapes_root) == before


def test_folder_not_written_by_vsreid_is_never_replaced(tmp_path, capsys, snapshot):
  mask = make_clip(tmp_path / "clip")
  out = tmp_path / "out"
  (out / "clip").mkdir(parents=True)
  (out / "clip" / "thesis.tex").write_text("years of work")
  before = snapshot(tmp_path)
  assert cli.main(["segment", "--video", str(tmp_path / "clip"), "--mask", mask, "--out", str(out)] + FAST) == 2
  one_line_error(capsys, f"{out / 'clip'}: folder exists and was not written by vsreid")
  assert snapshot(tmp_path) == before
  # A file in the way, and someone else's side file, are refused the same way.
  (out / "clip" / "thesis.tex").unlink()
  (out / "clip").rmdir()
  (out / "clip").write_text("a file")
  assert cli.main(["segment", "--video", str(tmp_path / "clip"), "--mask", mask, "--out", str(out)] + FAST) == 2
  one_line_error(capsys, "a file is in the way")
  (out / "clip").unlink()
  for suffix in ("_overlay.mp4", "_overlay.webm"):  # whichever codec this OpenCV has
    (out / f"clip{suffix}").write_bytes(b"holiday video")
    assert cli.main(["segment", "--video", str(tmp_path / "clip"), "--mask", mask, "--out", str(out),
                     "--overlay"] + FAST) == 2
    one_line_error(capsys, f"clip{suffix}: file exists and was not written by vsreid")
    assert (out / f"clip{suffix}").read_bytes() == b"holiday video"
    (out / f"clip{suffix}").unlink()


def test_symlink_at_the_sequence_folder_is_refused_up_front(tmp_path, capsys, snapshot):
  mask = make_clip(tmp_path / "clip")
  target = tmp_path / "elsewhere"
  target.mkdir()
  (target / "precious.txt").write_text("x")
  out = tmp_path / "out"
  out.mkdir()
  os.symlink(target, out / "clip")
  before = snapshot(tmp_path)
  assert cli.main(["segment", "--video", str(tmp_path / "clip"), "--mask", mask, "--out", str(out)] + FAST) == 2
  one_line_error(capsys, "is a symlink")
  assert snapshot(tmp_path) == before


def test_own_results_are_replaced_whole_and_an_empty_folder_is_filled(tmp_path):
  out = tmp_path / "out"
  (out / "seq").mkdir(parents=True)  # empty: nothing to lose
  with SequenceWriter(out, "seq", overlay_fps=5.0) as w:
    for name in ("a", "b"):
      w.write(name, np.ones((8, 8), np.uint8), np.zeros((8, 8, 3), np.uint8))
  manifest = json.loads((out / "seq" / MANIFEST).read_text())
  assert manifest["program"] == "vsreid-jax" and manifest["complete"] and manifest["frames"] == 2
  suffix = overlay_suffix()
  assert manifest["side_files"] == [f"seq{suffix}"] and (out / f"seq{suffix}").stat().st_size > 0
  with SequenceWriter(out, "seq") as w:  # our own results: replaced, stale frames and overlay gone
    w.write("c", np.full((8, 8), 2, np.uint8))
  assert sorted(os.listdir(out)) == ["seq"]
  assert sorted(os.listdir(out / "seq")) == [MANIFEST, "c.png"]
  assert read_mask(out / "seq" / "c.png").max() == 2


def test_interrupted_replacement_keeps_the_old_results(tmp_path, monkeypatch):
  out = tmp_path / "out"
  with SequenceWriter(out, "seq") as w:
    w.write("old", np.ones((4, 4), np.uint8))
  with pytest.raises(KeyboardInterrupt):  # killed while writing frames
    with SequenceWriter(out, "seq") as w:
      w.write("new", np.ones((4, 4), np.uint8))
      raise KeyboardInterrupt
  assert sorted(os.listdir(out)) == ["seq"] and os.path.isfile(out / "seq" / "old.png")
  real_rename = os.rename

  def rename_interrupted(src, dst):  # the moment between moving the old aside and the new in
    if ".vsreid-partial-" in os.fspath(src):
      raise KeyboardInterrupt
    real_rename(src, dst)

  monkeypatch.setattr(os, "rename", rename_interrupted)
  with pytest.raises(KeyboardInterrupt):
    with SequenceWriter(out, "seq") as w:
      w.write("new", np.ones((4, 4), np.uint8))
  assert sorted(os.listdir(out)) == ["seq"] and sorted(os.listdir(out / "seq")) == [MANIFEST, "old.png"]


def _dead_pid():
  proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                        check=True)
  return int(proc.stdout)


def test_stale_temporary_folders_of_killed_runs_are_cleaned(tmp_path, capsys):
  out = tmp_path / "out"
  with SequenceWriter(out, "seq") as w:
    w.write("a", np.ones((4, 4), np.uint8))
  dead = _dead_pid()
  # A run killed (kill -9) while writing: its partial folder, with our manifest.
  partial = out / f".vsreid-partial-{dead}-seq-0000"
  partial.mkdir()
  (partial / MANIFEST).write_text(json.dumps({"program": "vsreid-jax", "sequence": "seq", "complete": False,
                                              "host": __import__("socket").gethostname()}))
  # A run killed between moving its old results aside and the new ones in.
  os.rename(out / "seq", out / f".vsreid-old-{dead}-seq-1111")
  # Look-alikes that are not ours to delete: no manifest, or a live process.
  (out / f".vsreid-partial-{dead}-mine-2222").mkdir()
  (out / f".vsreid-partial-{dead}-mine-2222" / "data.txt").write_text("user data")
  live = out / f".vsreid-partial-{os.getpid()}-seq-3333"
  live.mkdir()
  (live / MANIFEST).write_text(partial.joinpath(MANIFEST).read_text())
  mask = make_clip(tmp_path / "clip")
  assert cli.main(["segment", "--video", str(tmp_path / "clip"), "--mask", mask, "--out", str(out)] + FAST) == 0
  text = capsys.readouterr().out
  assert f"removed {partial}" in text and f"restored {out / 'seq'}" in text
  assert sorted(os.listdir(out)) == sorted(["seq", "clip", "clip_timing.json", f".vsreid-partial-{dead}-mine-2222",
                                           live.name])
  assert os.path.isfile(out / "seq" / "a.png")


def test_input_inside_the_output_sequence_folder_is_refused(tmp_path, capsys, snapshot):
  out = tmp_path / "out"
  mask = make_clip(tmp_path / "clip")
  (out / "clip").mkdir(parents=True)
  os.replace(mask, out / "clip" / "first.png")  # the mask lives where the results would go
  (out / "clip" / MANIFEST).write_text(json.dumps({"program": "vsreid-jax"}))
  before = snapshot(tmp_path)
  assert cli.main(["segment", "--video", str(tmp_path / "clip"), "--mask", str(out / "clip" / "first.png"),
                   "--out", str(out)] + FAST) == 2
  one_line_error(capsys, "first.png: input lies in the output")
  assert snapshot(tmp_path) == before


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", ".vsreid-partial-1-x"])
def test_unusable_sequence_names_are_refused(tmp_path, name):
  with pytest.raises(InputError, match="not a usable sequence name"):
    SequenceWriter(tmp_path, name)
  assert results_lib.sequence_name(tmp_path / "clip.mp4") == "clip"


def test_mask_left_in_the_frame_folder_is_not_a_frame(tmp_path, capsys):
  mask = make_clip(tmp_path / "clip", n=4, ext=".jpg")
  os.replace(mask, tmp_path / "clip" / "00000.png")  # the mask saved beside its frame
  assert cli.main(["segment", "--video", str(tmp_path / "clip"), "--mask", str(tmp_path / "clip" / "00000.png"),
                   "--out", str(tmp_path / "out")] + FAST) == 0
  assert "using the 4 .jpg images as frames; ignoring 1 other image(s) (00000.png)" in capsys.readouterr().out
  assert sorted(os.listdir(tmp_path / "out" / "clip")) == [MANIFEST] + [f"{i:05d}.png" for i in range(4)]


def test_cache_inside_the_results_folder_is_refused(tmp_path, capsys):
  mask = make_clip(tmp_path / "clip")
  for flag in ("--flow-cache", "--save-adapted"):
    assert cli.main(["segment", "--video", str(tmp_path / "clip"), "--mask", mask, "--out", str(tmp_path / "out"),
                     flag, str(tmp_path / "out" / "clip" / "cache"), "--online-steps", "1"] + FAST) == 2
    one_line_error(capsys, "is inside the results folder")
  assert not (tmp_path / "out").exists()


def test_partial_folder_of_a_run_killed_with_sigkill_is_removed_by_the_next_run(tmp_path, capsys):
  import signal  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  mask = make_clip(tmp_path / "clip", n=60)
  out = tmp_path / "out"
  argv = ["segment", "--video", str(tmp_path / "clip"), "--mask", mask, "--out", str(out)] + FAST
  proc = subprocess.Popen([sys.executable, "-m", "vsreid_jax"] + argv, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  partial = []
  deadline = time.time() + 120
  while proc.poll() is None and time.time() < deadline and not partial:
    if out.is_dir():
      partial = [p for p in out.iterdir() if p.name.startswith(".vsreid-partial-") and any(p.glob("*.png"))]
    time.sleep(0.005)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  if not partial:
    pytest.skip("the run finished before it could be killed mid-write (machine too fast)")
  assert partial[0].is_dir() and not (out / "clip").exists()  # kill -9: no cleanup ran
  assert cli.main(argv) == 0
  assert f"removed {partial[0]} (partial results of an interrupted run)" in capsys.readouterr().out
  assert sorted(os.listdir(out)) == ["clip", "clip_timing.json"] and len(os.listdir(out / "clip")) == 61
