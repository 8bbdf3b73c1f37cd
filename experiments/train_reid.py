"""Trains the ReID net on the DAVIS 2016 training sequences (held-out ones excluded), one command:

  python experiments/train_reid.py --workdir runs/reid_lite [--resume] [--steps N] [--export FILE]

Batches are P identities x K crops plus background and partial crops (vsreid_jax/reid/data.py),
the loss is supervised contrastive (vsreid_jax/reid/losses.py). --steps N stops after global step N
(the schedule still spans config.train.steps), so a later --resume continues the same run.
--export writes the latest checkpoint's inference variables as float16 (the shipped file is
vsreid_jax/assets/weights/reid_lite_cpu.msgpack). Override config fields with --set key=value.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments import splits  # pylint: disable=wrong-import-position
from vsreid_jax import configs  # pylint: disable=wrong-import-position
from vsreid_jax import distributed  # pylint: disable=wrong-import-position
from vsreid_jax.reid import data as data_lib  # pylint: disable=wrong-import-position
from vsreid_jax.reid import model as model_lib  # pylint: disable=wrong-import-position
from vsreid_jax.reid import train as train_lib  # pylint: disable=wrong-import-position
from vsreid_jax.train.export import export_checkpoint  # pylint: disable=wrong-import-position


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--config", default="reid_lite_cpu", choices=sorted(model_lib.REID_CONFIGS))
  p.add_argument("--workdir", required=True)
  p.add_argument("--resume", action="store_true")
  p.add_argument("--steps", type=int, default=None, help="stop after this global step (schedule unchanged)")
  p.add_argument("--data-dir", default=str(splits.shared_data_dir()))
  p.add_argument("--export", metavar="FILE", help="after training, write float16 inference weights here")
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
  p.add_argument("--no-progress", action="store_true")
  distributed.add_arguments(p)
  args = p.parse_args(argv)
  distributed.initialize(args.coordinator, args.num_processes, args.process_id, args.distributed)

  config = model_lib.get_reid_config(args.config)
  for s in args.set:
    configs.override(config, s)
  config.data.data_dir = args.data_dir
  bank = data_lib.data_bank(config.data, args.data_dir)
  batches = data_lib.ReIDBatches(bank, config)
  print(f"{len(batches.identities)} training identities, {len(bank.refs)} object boxes")
  out = train_lib.train(config, args.workdir, batches, resume=args.resume, stop_at=args.steps,
                        progress=not args.no_progress)
  last = out["rows"][-1] if out["rows"] else {}
  print("last log row:", {k: round(v, 4) for k, v in last.items()})
  if args.export and distributed.is_main():
    step = export_checkpoint(args.workdir, args.export, dtype=np.float16)
    print(f"exported step {step} to {args.export} ({os.path.getsize(args.export) / 1e6:.2f} MB)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
