"""Trains N_mp on DAVIS 2016 train (held-out sequences excluded), one command:

  python experiments/train_propagation.py --config lite_cpu --workdir runs/lite [--resume] [--steps N]

--steps N stops after global step N (the schedule still spans config.train.steps), so a later
--resume continues the same run. Any config field can be overridden: --set optimizer.lr=3e-4.
The function `main(argv)` is what the CLI calls.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments import splits  # pylint: disable=g-import-not-at-top,wrong-import-position
from vsreid_jax import configs  # pylint: disable=wrong-import-position
from vsreid_jax.configs import train_propagation  # pylint: disable=wrong-import-position
from vsreid_jax.errors import InputError  # pylint: disable=wrong-import-position
from vsreid_jax.train import loop  # pylint: disable=wrong-import-position


def build_config(name: str, sets=(), data_dir=None):
  config = train_propagation.get_config(name)
  config.data.data_dir = str(data_dir or splits.shared_data_dir())
  for s in sets:
    configs.override(config, s)
  return config


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--config", default="lite_cpu", choices=sorted(train_propagation.MODELS))
  ap.add_argument("--workdir", required=True)
  ap.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in workdir")
  ap.add_argument("--steps", type=int, default=None, help="stop after this global step")
  ap.add_argument("--data-dir", default=None, help="folder of the DAVIS roots (default ../shared/data)")
  ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
  ap.add_argument("--no-progress", action="store_true")
  args = ap.parse_args(argv)
  try:
    config = build_config(args.config, args.set, args.data_dir)
    out = loop.train(config, args.workdir, resume=args.resume, stop_at=args.steps, progress=not args.no_progress)
  except InputError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  rows = out["train_rows"]
  if rows:
    print(f"step {int(rows[-1]['step'])}: loss {rows[-1]['loss']:.4f}; metrics in {args.workdir}/metrics.csv")
  return 0


if __name__ == "__main__":
  sys.exit(main())
