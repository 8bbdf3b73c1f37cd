"""Trains N_mp on DAVIS 2016 train (held-out sequences excluded), one command:

  python experiments/train_propagation.py --config lite_cpu --workdir runs/lite [--resume] [--steps N]

The same as `vsreid train`, with the data folder defaulting to ../shared/data beside this repo
(wherever the command is run from). --steps N stops after global step N (the schedule still
spans config.train.steps), so a later --resume continues the same run. Any config field can be
overridden: --set optimizer.lr=3e-4.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments import splits  # pylint: disable=wrong-import-position
from vsreid_jax import cli  # pylint: disable=wrong-import-position


def main(argv=None):
  argv = list(sys.argv[1:] if argv is None else argv)
  if not any(a == "--data-dir" or a.startswith("--data-dir=") for a in argv):
    argv += ["--data-dir", str(splits.shared_data_dir())]
  return cli.main(["train"] + argv)


if __name__ == "__main__":
  sys.exit(main())
