"""Fuzzing the `vsreid` command (issue 12): hundreds of generated bad invocations, bad paths, masks,
flags and weights files, run in-process. Each must end in exit 0 or exactly one `vsreid: error:`
line, never a traceback, and never change a file outside its output folders."""
import contextlib
import io
import os
import random

import cv2
import numpy as np
import pytest
from PIL import Image

from vsreid_jax import cli
from vsreid_jax.data import synthetic, write_mask

INVOCATIONS = 300
SENTINEL = "keep.txt"  # a user's file in every folder: never changed, wherever it is


def _world(root):
  """Inputs (frames, masks, a DAVIS root, weights files, junk) and output folders under root."""
  inp = os.path.join(root, "in")
  clip = os.path.join(inp, "clip")
  os.makedirs(clip)
  h, w = 24, 32
  for i in range(4):
    frame = np.full((h, w, 3), 40, np.uint8)
    frame[6:14, 4 + 2 * i:12 + 2 * i] = 200
    cv2.imwrite(os.path.join(clip, f"{i:05d}.png"), frame)
  good = np.zeros((h, w), np.uint8)
  good[6:14, 4:12] = 1
  write_mask(os.path.join(inp, "good.png"), good)
  void = np.zeros((h, w), np.uint8)
  void[:4] = 255
  write_mask(os.path.join(inp, "void.png"), void)
  write_mask(os.path.join(inp, "voidborder.png"), np.where(void > 0, 255, good).astype(np.uint8))
  write_mask(os.path.join(inp, "empty.png"), np.zeros((h, w), np.uint8))
  write_mask(os.path.join(inp, "small.png"), np.ones((5, 5), np.uint8))
  Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(os.path.join(inp, "rgb.png"))
  with open(os.path.join(inp, "bad.png"), "wb") as f:
    f.write(b"\x89PNG not really")
  with open(os.path.join(inp, "video.mp4"), "wb") as f:
    f.write(b"\x00" * 64)
  with open(os.path.join(inp, "junk.msgpack"), "wb") as f:
    f.write(b"\x81\xa3abc\x01")
  open(os.path.join(inp, "empty.msgpack"), "wb").close()
  stray = os.path.join(inp, "stray")
  os.makedirs(stray)
  for i in range(4):
    cv2.imwrite(os.path.join(stray, f"{i + 1}.jpg"), np.full((h, w, 3), 40 + i, np.uint8))
  write_mask(os.path.join(stray, "1.png"), good)
  mixed = os.path.join(inp, "mixed")
  os.makedirs(mixed)
  for i, ext in enumerate((".jpg", ".png", ".jpg", ".png")):
    cv2.imwrite(os.path.join(mixed, f"{i}{ext}"), np.full((h, w, 3), 40, np.uint8))
  os.makedirs(os.path.join(inp, "emptydir"))
  davis = synthetic.write_davis_root(os.path.join(inp, "davis"), {
      "seq": synthetic.moving_shapes(n_frames=4, height=h, width=w, n_objects=2, seed=0)})
  out = os.path.join(root, "out")
  os.makedirs(os.path.join(out, "clip"))  # someone else's folder where results would go
  os.makedirs(os.path.join(root, "cache"))
  for dirpath, _, _ in os.walk(root):
    with open(os.path.join(dirpath, SENTINEL), "w") as f:
      f.write("a user's file")
  return dict(inp=inp, clip=clip, davis=davis, out=out)


def _invocation(rng, w):
  """One generated command line (argv) and the working folder to run it in."""
  inp, clip, davis, out = w["inp"], w["clip"], w["davis"], w["out"]
  j = lambda *p: os.path.join(*p)  # pylint: disable=unnecessary-lambda-assignment
  bad_dirs = ["", j(inp, SENTINEL), j(inp, SENTINEL, "sub"), "/proc/1/x", clip, j(clip, "sub"), inp,
              j(davis, "Annotations", "480p"), j(davis, "JPEGImages"), ".", ".."]
  out_dirs = [j(out, "a"), j(out, "b"), out, j(w["inp"], "..", "out", "c")]
  weights = [j(inp, "junk.msgpack"), j(inp, "empty.msgpack"), j(inp, "none.msgpack"), inp, j(inp, "good.png")]
  masks = [j(inp, m) for m in ("good.png", "void.png", "voidborder.png", "empty.png", "small.png", "rgb.png",
                               "bad.png", "none.png", SENTINEL)] + [inp, j(clip, "00000.png")]
  cwd = rng.choice([w["inp"], clip, j(davis, "JPEGImages", "480p", "seq")])
  command = rng.choices(["segment", "eval", "convert-mask", "train", "junk"], [12, 3, 3, 2, 1])[0]
  pick = lambda *options: rng.choice(options)  # pylint: disable=unnecessary-lambda-assignment
  if command == "junk":
    return [pick("", "--bogus", "segmentt", "-h2", "eval --x")], cwd
  if command == "convert-mask":
    src = pick(j(inp, "rgb.png"), j(inp, SENTINEL), j(inp, "bad.png"), j(inp, "good.png"), j(inp, "none.png"), inp,
               j(clip, "00001.png"))
    dst = pick(j(out, "conv.png"), j(inp, "rgb.png"), j(clip, "00000.png"), out, j(out, "m.txt"),
               j(inp, SENTINEL, "m.png"), "/proc/1/m.png", j(out, SENTINEL))
    return ["convert-mask", src, dst], cwd
  if command == "eval":
    argv = ["eval", "--davis", pick(davis, inp, j(inp, "none")), "--results",
            pick(*(out_dirs + bad_dirs + [j(out, "none")])), "--no-progress"]
    if rng.random() < 0.3:
      argv += ["--set", pick("val", "test", "../val", "")]
    return argv, cwd
  if command == "train":
    argv = ["train", "--workdir", pick(j(out, "w"), j(inp, SENTINEL), "/proc/1/w", ""), "--data-dir",
            pick(j(inp, "none"), j(inp, SENTINEL)), "--steps", pick("1", "0", "-1", "x"),
            "--no-progress"]
    for _ in range(rng.randint(0, 2)):
      argv += ["--set", pick("data.batch_size=0", "data.batch_size=-3", "data.batchsize=2", "x", "=1",
                             "optimizer.lr=abc", "data.batch_size=2", "nope.a.b=1", "data=1")]
    return argv, cwd
  # segment: a source, a mask, an output and a random subset of other flags; a third of them are
  # valid but for at most one flag. The net is never the shipped one and the method never the
  # full solver with the shipped detector and ReID nets: every successful run takes milliseconds.
  argv = ["segment", "--no-progress"]
  valid = rng.random() < 0.35
  if valid:
    source = "video" if rng.random() < 0.7 else "davis"
    argv += ["--video", pick(clip, j(inp, "stray"))] if source == "video" else ["--davis", davis]
    argv += ["--mask", pick(j(inp, "good.png"), j(inp, "voidborder.png"))] if source == "video" else []
    argv += [f"--out={pick(*out_dirs)}", "--net=identity", "--method=propagate"]
  else:
    source = rng.choices(["video", "davis", "none", "both"], [10, 4, 1, 1])[0]  # --demo: 25 frames, too slow
    if source in ("video", "both"):
      argv += ["--video", pick(clip, j(inp, "stray"), j(inp, "mixed"), j(inp, "emptydir"), ".", "..",
                               j(inp, "video.mp4"), j(inp, SENTINEL), j(inp, "none"), j(clip, "00000.png"), "", inp)]
    if source in ("davis", "both"):
      argv += ["--davis", pick(davis, inp, j(inp, "none"), clip)]
    if rng.random() < 0.85:
      argv += ["--mask", pick(*masks)]
    if rng.random() < 0.95:
      argv += [f"--out={pick(*(out_dirs * 3 + bad_dirs))}"]
    argv += [f"--net={pick('identity', 'identity', 'identity', *weights)}"]
    if rng.random() < 0.3:
      argv += [f"--detector={pick(*weights)}", f"--reid={pick(*weights)}", "--method=vsreid"]
    else:
      argv += [f"--method={pick('propagate', 'propagate', 'bogus')}"]
  flags = {
      "--scales": ["0.15:17", "0.2:33,0.1:17", "0:0", "nan:17", "0.15:-1", "x", "0.15:999999", "1e309:17", "",
                   "0.15:17,", "inf:17"],
      "--online-steps": ["-1", "0", "1", "x"],
      "--save-adapted": out_dirs + bad_dirs,
      "--flow-cache": [j(w["inp"], "..", "cache")] + bad_dirs,
      "--max-retrievals": ["-1", "x", "2"],
      "--rho-reid": ["nan", "x", "0.5"],
      "--sequences": ["seq", "ghost", "../seq"],
      "--set": ["val", "none", "../val", ""],
      "--resolution": ["480p", "x", "../.."],
      "--flow": ["dis-ultrafast", "dis-nope"],
  }
  if valid:
    if rng.random() < 0.7:
      flag = pick(*flags)
      argv += [f"{flag}={pick(*flags[flag])}"]
    argv += [f for f in ("--overlay", "--flip", "--no-box", "--eval") if rng.random() < 0.2]
  else:
    for flag, values in flags.items():
      if rng.random() < 0.2:
        argv += [f"{flag}={pick(*values)}"]
    argv += [f for f in ("--overlay", "--flip", "--no-box", "--eval", "--bogus") if rng.random() < 0.1]
  if "--scales" not in " ".join(argv):
    argv += ["--scales=0.15:17"]  # one small crop: compiled once for the whole run
  return argv, cwd


def _outputs(argv, cwd):
  """Real paths the invocation may write (its output folders and files)."""
  paths = []
  for i, a in enumerate(argv):
    for flag in ("--out", "--save-adapted", "--flow-cache", "--results", "--workdir"):
      if a.startswith(flag + "="):
        paths.append(a.split("=", 1)[1])
      elif a == flag and i + 1 < len(argv):
        paths.append(argv[i + 1])
  if argv[0] == "convert-mask":
    paths.append(argv[2])
  return [os.path.realpath(os.path.join(cwd, p)) for p in paths if p]


def _inside(path, folders):
  return any(path == f or path.startswith(f + os.sep) for f in folders)


def test_generated_bad_invocations_end_cleanly(tmp_path, snapshot):
  world = _world(str(tmp_path))
  rng = random.Random(0)
  codes = {0: 0, 2: 0}
  before = snapshot(tmp_path)
  old_cwd = os.getcwd()
  try:
    for n in range(INVOCATIONS):
      argv, cwd = _invocation(rng, world)
      os.chdir(cwd)
      stderr, stdout = io.StringIO(), io.StringIO()
      with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
        try:
          code = cli.main(argv)
        except SystemExit as e:  # argparse: --help, usage errors
          code = e.code
        except BaseException as e:  # pylint: disable=broad-except
          pytest.fail(f"invocation {n}: {argv} in {cwd} raised {e!r}")
      err = stderr.getvalue()
      assert code in (0, 2), f"invocation {n}: {argv} in {cwd} exited {code}: {err}"
      assert "Traceback" not in err, f"invocation {n}: {argv} in {cwd}: {err}"
      if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("vsreid: error: "), f"invocation {n}: {argv} in {cwd}: {err}"
      codes[code] += 1
      after = snapshot(tmp_path)
      outputs = _outputs(argv, cwd)
      for path in set(before) | set(after):
        if before.get(path, "new") != after.get(path, "gone"):
          real = os.path.realpath(os.path.join(str(tmp_path), path))
          assert os.path.basename(path) != SENTINEL and _inside(real, outputs), (
              f"invocation {n}: {argv} in {cwd} changed {path}")
      before = after
  finally:
    os.chdir(old_cwd)
  assert codes[0] >= INVOCATIONS // 10 and codes[2] >= INVOCATIONS // 2, codes  # both endings exercised
