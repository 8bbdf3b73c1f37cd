"""Trains the detector on the DAVIS training sequences (held-out ones excluded), copy-paste
augmented, and exports the inference weights:

  python experiments/train_detector.py --workdir runs/detector [--config lite_cpu] [--resume]
      [--steps N] [--set train.max_seconds=2100] [--export vsreid_jax/assets/weights/detector_lite_cpu.msgpack]

--steps N stops after global step N (the schedule still spans config.train.steps); --resume
continues from the latest checkpoint exactly. The export is float16 (save_weights).
"""
import argparse
import importlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments import splits  # pylint: disable=wrong-import-position
from vsreid_jax import configs  # pylint: disable=wrong-import-position
from vsreid_jax import distributed  # pylint: disable=wrong-import-position
from vsreid_jax.configs.train_propagation import DATA_ROOTS, HELD_OUT  # pylint: disable=wrong-import-position
from vsreid_jax.detection import data as det_data  # pylint: disable=wrong-import-position
from vsreid_jax.detection import train as det_train  # pylint: disable=wrong-import-position


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--config", default="lite_cpu", help="detector_<name>.py in vsreid_jax/configs")
  p.add_argument("--workdir", required=True)
  p.add_argument("--resume", action="store_true")
  p.add_argument("--steps", type=int, default=None)
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
  p.add_argument("--export", default="", help="write float16 inference weights here at the end")
  distributed.add_arguments(p)
  args = p.parse_args(argv)
  distributed.initialize(args.coordinator, args.num_processes, args.process_id, args.distributed)
  config = importlib.import_module(f"vsreid_jax.configs.detector_{args.config}").get_config()
  for a in args.set:
    configs.override(config, a)
  data_dir = config.data.data_dir or str(splits.shared_data_dir())
  held_out = [s for seqs in HELD_OUT.values() for s in seqs]
  bank = det_data.training_bank(data_dir, DATA_ROOTS, held_out)
  data = det_data.CopyPasteData(bank, (config.input.height, config.input.width), config.data.max_boxes,
                                seed=config.data.seed,
                                cfg=det_data.PasteConfig(max_paste=config.data.max_paste))
  print(f"{len(data.frames)} training frames, {len(bank.refs)} objects, held out: {' '.join(held_out)}")
  out = det_train.train(config, args.workdir, data, resume=args.resume, stop_at=args.steps)
  rows = out["train_rows"]
  if rows:
    last = rows[-1]
    print("last: " + ", ".join(f"{k}={v:.4g}" for k, v in last.items()))
  if args.export and distributed.is_main():
    det_train.export(out["state"], args.export, config.name,
                     meta=dict(step=int(out["state"].step), data="davis2016 train minus held-out, copy-paste"))
    print(f"exported {args.export} ({os.path.getsize(args.export) / 1e6:.1f} MB)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
