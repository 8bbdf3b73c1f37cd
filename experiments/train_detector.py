"""Trains the detector on the DAVIS training sequences (held-out ones excluded), copy-paste
augmented, and exports the inference weights; the same as `vsreid train --net detector`:

  python experiments/train_detector.py --workdir runs/detector [--config lite_cpu] [--resume]
      [--steps N] [--set train.max_seconds=2100] [--export vsreid_jax/assets/weights/detector_lite_cpu.msgpack]

--steps N stops after global step N (the schedule still spans config.train.steps); --resume
continues from the latest checkpoint exactly. The export is float16 (save_weights). The logic is
vsreid_jax/retrieval_nets.py.
"""
import sys

from vsreid_jax import cli


def main(argv=None):
  return cli.main(["train", "--net", "detector"] + list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
  sys.exit(main())
