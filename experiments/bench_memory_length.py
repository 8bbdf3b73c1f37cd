r"""Peak host memory (RSS) against video length, both methods: does memory stay flat?

  python experiments/bench_memory_length.py --lengths 300 3000 --size 320x180

Writes one generated video per length (an .mp4 of two textured squares moving over a textured
background; the second square slides out of the frame, stays out `--away` frames and is back in
the middle, once every `--period` frames, so the default method has objects to re-identify in
proportion to the length), then runs
`vsreid segment --video ...` on it in a fresh process per (method, length) and reads the peak RSS
the CLI prints. Each run is a separate process, so each figure is that run's own peak.
The ratio column is RSS(longest) / RSS(shortest) per method (target: within 1.2x).

`--pythonpath DIR` runs another checkout of the package (e.g. the code before a change).
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np


def _texture(rng, h, w, scale):
  small = rng.uniform(0, 255, (max(h // scale, 2), max(w // scale, 2), 3)).astype(np.float32)
  return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8)


def write_video(path, n, width, height, period, away, seed=0, static=False):
  """Writes an mp4 of n frames; returns the first frame's id mask (ids 1 and 2)."""
  rng = np.random.default_rng(seed)
  bg = _texture(rng, height, width, 8)
  side = max(height // 5, 8)
  tex = [_texture(rng, side, side, 3) for _ in range(2)]
  writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (width, height))
  first = None
  for t in range(n):
    frame, mask = bg.copy(), np.zeros((height, width), np.uint8)
    # Object 1 circles in the left half; object 2 drifts right, leaves, and is back.
    x1 = int(width * 0.25 + width * 0.1 * np.cos(t / 15)) - side // 2
    y1 = int(height * 0.5 + height * 0.2 * np.sin(t / 15)) - side // 2
    # Object 2 slides from the middle out of the right border, stays out `away` frames, and is back.
    phase = t % period
    x2 = int(width * 0.5 + (width * 0.5 + side) * min(phase / (period - away), 1.0))
    if static:  # nothing moves: the warp-only net never loses an object (no detector work)
      x1, y1, x2 = int(width * 0.25), int(height * 0.4), int(width * 0.6)
    y2 = int(height * 0.3)
    for k, (x, y) in enumerate(((x1, y1), (x2, y2))):
      xa, xb = max(x, 0), min(x + side, width)
      if xb > xa:
        frame[y:y + side, xa:xb] = tex[k][:, xa - x:xb - x]
        mask[y:y + side, xa:xb] = k + 1
    if first is None:
      first = mask
    writer.write(frame[..., ::-1])
  writer.release()
  return first


def run(args, video, mask_path, method, out):
  env = dict(os.environ)
  if args.pythonpath:
    env["PYTHONPATH"] = args.pythonpath
  cmd = [sys.executable, "-m", "vsreid_jax.cli", "segment", "--video", video, "--mask", mask_path, "--out", out,
         "--method", method, "--net", args.net, "--flow", args.flow, "--no-progress"]
  t = time.perf_counter()
  # cwd: not this checkout, or `python -m` would import the package from here whatever PYTHONPATH says.
  proc = subprocess.run(["nice", "-n", "5"] + cmd, env=env, capture_output=True, text=True, cwd=os.path.dirname(out))
  wall = time.perf_counter() - t
  if proc.returncode:
    raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
  rss = float(re.search(r"peak RSS (\d+) MiB", proc.stdout).group(1))
  fps = float(re.search(r"\(([\d.]+) frames/s end to end", proc.stdout).group(1))
  retrievals = re.search(r"(\d+) retrievals", proc.stdout)
  return rss, fps, wall, int(retrievals.group(1)) if retrievals else 0


CANDIDATES_CHILD = """
import sys, numpy as np
from vsreid_jax.solver import caches
from vsreid_jax.utils import peak_rss_mb
n, m, d = int(sys.argv[1]), 32, 128  # the shipped detector's boxes per frame, the ReID dimension

class Frames:  # frames made on demand (none kept)
  size = (144, 256)
  def __len__(self): return n
  def __getitem__(self, i): return np.full((144, 256, 3), i % 255, np.uint8)

class Nets:  # stands in for the detector and ReID: outputs of the real shapes, at no cost
  def detect(self, images):
    b = len(images)
    return (np.random.rand(b, m, 4).astype(np.float32), np.random.rand(b, m).astype(np.float32),
            np.ones((b, m), bool))
  def embed(self, images, boxes):
    return np.random.rand(len(images), m, d).astype(np.float32)

base = peak_rss_mb()
source = caches.CandidateSource(Frames(), Nets(), Nets(), batch=4)
for _ in range(2):  # every frame lost: two retrieval rounds, each reading blocks as the solver does
  for start in range(0, n, 256):  # SolverConfig.search_block
    source.get(range(start, min(start + 256, n)))
print(f"{peak_rss_mb() - base:.0f}")
"""


def candidates_check(args):
  """Peak RSS added by the candidates of a video where every frame is lost, per length."""
  env = dict(os.environ)
  if args.pythonpath:
    env["PYTHONPATH"] = args.pythonpath
  print("candidates of every frame (stub nets, 32 boxes, 128-d embeddings): RSS added by CandidateSource")
  for n in args.lengths:
    out = subprocess.run([sys.executable, "-c", CANDIDATES_CHILD, str(n)], env=env, capture_output=True, text=True,
                         cwd=tempfile.gettempdir(), check=True).stdout.split()[-1]
    print(f"{n:>6} frames: +{out} MiB")


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--lengths", type=int, nargs="+", default=[300, 3000])
  p.add_argument("--size", default="320x180", help="WxH of the generated video")
  p.add_argument("--methods", nargs="+", default=["propagate", "vsreid"])
  p.add_argument("--net", default="default", help="propagation net (default: the shipped lite_cpu)")
  p.add_argument("--flow", default="dis-ultrafast")
  p.add_argument("--period", type=int, default=150, help="object 2 leaves once every PERIOD frames")
  p.add_argument("--away", type=int, default=10, help="... for AWAY frames")
  p.add_argument("--static", action="store_true", help="objects hold still (none is ever lost)")
  p.add_argument("--candidates", action="store_true",
                 help="only measure the candidate store of a fully lost video (stub detector and ReID)")
  p.add_argument("--pythonpath", default=None, help="PYTHONPATH of the package to measure (default: this one)")
  p.add_argument("--workdir", default=None)
  args = p.parse_args(argv)
  if args.candidates:
    return candidates_check(args)
  width, height = (int(v) for v in args.size.split("x"))
  work = args.workdir or tempfile.mkdtemp(prefix="bench_memory-")
  os.makedirs(work, exist_ok=True)
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rows = []
  for n in args.lengths:
    tag = f"gen{n}{'-static' if args.static else ''}"
    video, mask_path = os.path.join(work, f"{tag}.mp4"), os.path.join(work, f"{tag}.png")
    if not os.path.isfile(video):
      Image.fromarray(write_video(video, n, width, height, args.period, args.away, static=args.static)).save(mask_path)
    for method in args.methods:
      rss, fps, wall, ret = run(args, video, mask_path, method, tempfile.mkdtemp(prefix=f"out-{method}-{tag}-", dir=work))
      rows.append((method, n, rss, fps, wall, ret))
      print(f"{method:<10} {n:>6} frames: peak RSS {rss:7.0f} MiB, {fps:5.1f} frames/s, {wall:6.1f} s wall, "
            f"{ret} retrievals", flush=True)
  print(f"\n{width}x{height}{' static' if args.static else ''}, net={args.net}, flow={args.flow}, "
        f"package={args.pythonpath or 'this checkout'}")
  print(f"{'method':<10} " + " ".join(f"{n:>8}f MiB" for n in args.lengths) + "   ratio")
  for method in args.methods:
    rss = [r[2] for r in rows if r[0] == method]
    print(f"{method:<10} " + " ".join(f"{v:>12.0f}" for v in rss) + f"   {rss[-1] / rss[0]:.2f}x")


if __name__ == "__main__":
  main()
