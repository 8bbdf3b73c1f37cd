"""Exports a training checkpoint as a portable weights file (the shipped default is made so):

  python experiments/export_weights.py --workdir runs/lite --out vsreid_jax/assets/weights/propagation_lite_cpu.msgpack --float16
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vsreid_jax.train.export import export_checkpoint  # pylint: disable=wrong-import-position


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--workdir", required=True)
  ap.add_argument("--out", required=True)
  ap.add_argument("--step", type=int, default=None, help="default: the latest checkpoint")
  ap.add_argument("--float16", action="store_true", help="store half precision (half the size)")
  args = ap.parse_args()
  step = export_checkpoint(args.workdir, args.out, args.step, np.float16 if args.float16 else np.float32)
  print(f"{args.workdir} step {step} -> {args.out} ({os.path.getsize(args.out) / 2**20:.1f} MiB)")


if __name__ == "__main__":
  main()
