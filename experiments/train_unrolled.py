"""Fine-tunes N_mp on its own unrolled outputs (issue 17, lever 1), resumable, one command:

  python experiments/train_unrolled.py --workdir /work/runs/unroll [--resume] [--steps N] [--set key=value]

Config: `vsreid_jax/configs/train_unroll.py` (starts from the shipped lite_cpu weights; the
validation and test sequences of data/splits.py are never trained on). --steps N stops at the
first clip-batch end at or after global step N; a later --resume continues the same run exactly.
Export a checkpoint with experiments/export_weights.py --workdir ... --step N.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vsreid_jax.data import splits  # pylint: disable=wrong-import-position
from vsreid_jax import configs  # pylint: disable=wrong-import-position
from vsreid_jax.configs import train_unroll  # pylint: disable=wrong-import-position
from vsreid_jax.errors import InputError  # pylint: disable=wrong-import-position
from vsreid_jax.train import unroll  # pylint: disable=wrong-import-position


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--config", default="lite_cpu")
  ap.add_argument("--workdir", required=True)
  ap.add_argument("--resume", action="store_true")
  ap.add_argument("--steps", type=int, default=None, help="stop at the clip batch ending at/after this step")
  ap.add_argument("--data-dir", default=None, help="folder of the DAVIS roots (default ../shared/data)")
  ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
  ap.add_argument("--no-progress", action="store_true")
  args = ap.parse_args(argv)
  try:
    config = train_unroll.get_config(args.config)
    config.data.data_dir = args.data_dir or str(splits.shared_data_dir())
    for a in args.set:
      configs.override(config, a)
    unroll.train(config, args.workdir, resume=args.resume, stop_at=args.steps, progress=not args.no_progress)
  except InputError as e:
    print(f"vsreid: error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
