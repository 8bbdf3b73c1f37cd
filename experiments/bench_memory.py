"""Peak memory of `vsreid segment` against the estimate that refuses runs (vsreid_jax/memory.py):

  python experiments/bench_memory.py --runs "4 540 960 8 vsreid" "4 1080 1920 30 propagate"

Each run is FRAMES HEIGHT WIDTH OBJECTS METHOD on a generated clip of moving textured rectangles
(objects hidden behind others in the first frame are not counted), segmented with --net identity
in a subprocess; prints the peak RSS (/usr/bin/time -v, else the CLI's own figure) and the estimate.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vsreid_jax import memory  # pylint: disable=wrong-import-position
from vsreid_jax.data import read_mask, synthetic  # pylint: disable=wrong-import-position


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--runs", nargs="+", default=["4 270 480 8 propagate", "4 540 960 8 vsreid"])
  ap.add_argument("--net", default="identity")
  args = ap.parse_args()
  timer = ["/usr/bin/time", "-v"] if os.path.exists("/usr/bin/time") else []
  print(f"{'frames':>6} {'size':>10} {'objects':>7} {'method':>9} {'peak MiB':>9} {'estimate MiB':>12}")
  with tempfile.TemporaryDirectory() as tmp:
    for run in args.runs:
      t, h, w, k, method = run.split()
      t, h, w, k = int(t), int(h), int(w), int(k)
      root = os.path.join(tmp, f"clip_{t}_{h}_{w}_{k}")
      synthetic.write_davis_root(root, {"c": synthetic.moving_shapes(n_frames=t, height=h, width=w, n_objects=k,
                                                                     seed=0, speed=h / 100)})
      mask = os.path.join(root, "Annotations", "480p", "c", "00000.png")
      objects = len(np.unique(read_mask(mask))) - 1
      proc = subprocess.run(timer + [sys.executable, "-m", "vsreid_jax", "segment", "--video",
                                     os.path.join(root, "JPEGImages", "480p", "c"), "--mask", mask, "--out",
                                     os.path.join(tmp, "out"), "--method", method, "--net", args.net, "--no-progress"],
                            capture_output=True, text=True, check=False)
      m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
      peak = int(m.group(1)) / 1024 if m else float(re.search(r"peak RSS (\d+) MiB", proc.stdout).group(1))
      estimate = memory.estimate_bytes(t, h, w, objects, method) / memory.MIB
      print(f"{t:>6} {f'{w}x{h}':>10} {objects:>7} {method:>9} {peak:>9.0f} {estimate:>12.0f}"
            + ("" if proc.returncode == 0 else f"  (exit {proc.returncode}: {proc.stderr.strip()[-200:]})"), flush=True)


if __name__ == "__main__":
  main()
