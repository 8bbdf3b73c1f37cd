"""Trains the ReID net on the DAVIS 2016 training sequences (held-out ones excluded); the same as
`vsreid train --net reid`:

  python experiments/train_reid.py --workdir runs/reid_lite [--resume] [--steps N] [--export FILE]

Batches are P identities x K crops plus background and partial crops (vsreid_jax/reid/data.py),
the loss is supervised contrastive (vsreid_jax/reid/losses.py). --steps N stops after global step N
(the schedule still spans config.train.steps), so a later --resume continues the same run.
--export writes the latest checkpoint's inference variables as float16 (the shipped file is
vsreid_jax/assets/weights/reid_lite_cpu.msgpack). Override config fields with --set key=value.
The logic is vsreid_jax/retrieval_nets.py.
"""
import sys

from vsreid_jax import cli


def main(argv=None):
  return cli.main(["train", "--net", "reid"] + list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
  sys.exit(main())
