"""Trains RAFT-small from scratch on the synthetic flow set, one command:

  python experiments/train_raft.py --workdir runs/raft_small [--resume] [--steps N] [--set train.batch_size=2]
                                   [--export raft_small.msgpack]

--steps N stops after global step N (the learning-rate schedule still spans train.steps), so a
later --resume continues the same run exactly. The trainer is vsreid_jax/train/raft.py, run by
vsreid_jax/train/fit.py, the loop every net trains with (checkpoints, exact resume, logs,
max_seconds, a checkpoint on Ctrl-C, the NaN guard). --export FILE writes the latest checkpoint as a
RAFT weights file (`RAFTFlow.from_weights`).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vsreid_jax import configs  # pylint: disable=wrong-import-position
from vsreid_jax.configs import raft_small  # pylint: disable=wrong-import-position
from vsreid_jax.errors import InputError  # pylint: disable=wrong-import-position
from vsreid_jax.train.raft import export, load_variables, train  # pylint: disable=wrong-import-position,unused-import


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--workdir", required=True)
  ap.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in workdir")
  ap.add_argument("--steps", type=int, default=None, help="stop after this global step")
  ap.add_argument("--davis", default=None, help="DAVIS-layout root of the frames (default: config)")
  ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
  ap.add_argument("--export", default=None, metavar="FILE",
                  help="then write the latest checkpoint as a RAFT weights file (RAFTFlow.from_weights)")
  ap.add_argument("--quiet", action="store_true")
  args = ap.parse_args(argv)
  try:
    config = raft_small.get_config()
    for s in args.set:
      configs.override(config, s)
    out = train(config, args.workdir, resume=args.resume, stop_at=args.steps, davis_root=args.davis,
                progress=not args.quiet)
    if args.export:
      print(f"exported step {export(config, args.workdir, args.export)} to {args.export}")
  except InputError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if out["eval_rows"]:
    print(f"step {int(out['eval_rows'][-1]['step'])}: held-out EPE {out['eval_rows'][-1]['epe']:.3f}; "
          f"metrics in {args.workdir}/metrics.csv")
  return 0


if __name__ == "__main__":
  sys.exit(main())
