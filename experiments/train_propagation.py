"""Trains N_mp on DAVIS 2016 train (held-out sequences excluded), one command; the same as
`vsreid train --net propagation`:

  python experiments/train_propagation.py --config lite_cpu --workdir runs/lite [--resume] [--steps N]

The data folder defaults to ../shared/data beside this repo (wherever the command is run from).
--steps N stops after global step N (the schedule still spans config.train.steps), so a later
--resume continues the same run. Any config field can be overridden: --set optimizer.lr=3e-4.
"""
import sys

from vsreid_jax import cli


def main(argv=None):
  return cli.main(["train"] + list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
  sys.exit(main())
