"""One process of a small N_mp training job on CPU, for tests/test_train_multiprocess.py.

Run as `python multiprocess_train_worker.py --workdir DIR --out PREFIX [--coordinator HOST:PORT
--num-processes N --process-id I] [--stop-at S] [--resume] [--dump-at K] [--kill-at K]`, with
XLA_FLAGS=--xla_force_host_platform_device_count=D to simulate D devices. Process 0 writes
PREFIX-step<K>.npz (the state's leaves after step K, for each K of --dump-at and the last step)
and PREFIX-rows.json (the logged train rows). `--kill-at K`: every process SIGKILLs itself after
step K (after its logging and checkpointing), as a machine failure would.
"""
import argparse
import json
import os
import signal
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

S = 9  # crop size: tiny, the test is about processes, not the net


class TinyNet(nn.Module):
  """Stand-in N_mp (real apply signature) with BatchNorm (synced over the global batch) and dropout."""

  @nn.compact
  def __call__(self, image, flow, prob, train: bool = False):
    x = jnp.concatenate([image / 127.5 - 1.0, flow / 8.0, prob], axis=-1)
    # No bias before BatchNorm (as in ResNets): its gradient is float noise, which Adam would amplify.
    x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(nn.Conv(4, (3, 3), use_bias=False)(x)))
    x = nn.Dropout(0.25, deterministic=not train)(x)
    return nn.Conv(1, (3, 3))(x) + 4.0 * (prob - 0.5)


def record(i: int) -> dict:
  """Example i: a pure function of i (every process can read any example)."""
  rng = np.random.default_rng([7, i])
  prior = np.zeros((S, S, 1), np.uint8)
  y, x = rng.integers(0, S - 4, 2)
  prior[y:y + 4, x:x + 4] = 255
  target = np.roll(prior, tuple(rng.integers(-1, 2, 2)), (0, 1))
  return dict(image=rng.integers(0, 256, (S, S, 3), dtype=np.uint8),
              flow=rng.normal(0, 1, (S, S, 2)).astype(np.float32), prior=prior, target=target)


def config():
  from vsreid_jax.configs import train_propagation  # pylint: disable=g-import-not-at-top
  c = train_propagation.get_config("paper_r101")
  d = c.data
  d.crop_size, d.batch_size, d.batch_per_device, d.prefetch = S, 8, 0, 0
  d.colour_prob, d.flip_prob = 0.8, 0.5
  c.optimizer.name, c.optimizer.schedule, c.optimizer.lr, c.optimizer.warmup_steps = "adamw", "cosine", 3e-3, 2
  c.train.update(steps=6, log_every=1, checkpoint_every=2, eval_every=1, plot_every=3, keep_checkpoints=3)
  return c


def main(argv):
  p = argparse.ArgumentParser()
  p.add_argument("--workdir", required=True)
  p.add_argument("--out", required=True)
  p.add_argument("--coordinator")
  p.add_argument("--num-processes", type=int)
  p.add_argument("--process-id", type=int)
  p.add_argument("--stop-at", type=int)
  p.add_argument("--resume", action="store_true")
  p.add_argument("--dump-at", type=int, nargs="*", default=[])
  p.add_argument("--kill-at", type=int)
  p.add_argument("--trainer", choices=["nmp", "reid", "detector"], default="nmp")
  p.add_argument("--davis", help="with --trainer detector: a DAVIS root (set val) to copy objects from")
  args = p.parse_args(argv)

  from vsreid_jax import distributed  # pylint: disable=g-import-not-at-top
  from vsreid_jax.train import loop  # pylint: disable=g-import-not-at-top
  distributed.initialize(args.coordinator, args.num_processes, args.process_id)
  main_process = jax.process_index() == 0
  if args.trainer == "reid":
    return train_reid(args, main_process)
  if args.trainer == "detector":
    return train_detector(args, main_process)

  def dump(state, step):
    if main_process:
      leaves = jax.tree.leaves(jax.device_get(state))
      np.savez(f"{args.out}-step{step}.npz", *leaves)

  data = loop.Data(record, None, [record(10_000 + i) for i in range(4)])
  from vsreid_jax.train import step as step_lib  # pylint: disable=g-import-not-at-top
  iou_eval = loop.iou_eval_fn(data.val_records, step_lib.make_mesh(), config().data.batch_size)

  def eval_fn(state, step):  # the default eval, plus dumps and the simulated machine failure
    scores = iou_eval(state, step)
    if step in args.dump_at:
      dump(state, step)
    if step == args.kill_at:
      os.kill(os.getpid(), signal.SIGKILL)
    return scores

  out = loop.train(config(), args.workdir, resume=args.resume, stop_at=args.stop_at, eval_fn=eval_fn,
                   model=TinyNet(), data=data, progress=False)
  dump(out["state"], int(jax.device_get(out["state"].step)))
  if main_process:
    with open(f"{args.out}-rows.json", "w") as f:
      json.dump(out["train_rows"], f)


def train_reid(args, main_process):
  """The ReID trainer on the synthetic identities of tests/test_reid_train.py (global batch 16)."""
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  from test_reid_train import SyntheticBatches, small_train_config  # pylint: disable=g-import-not-at-top
  from vsreid_jax.reid import train as train_lib  # pylint: disable=g-import-not-at-top
  c = small_train_config(4)
  # SGD: an update linear in the gradient, so float rounding stays rounding (AdamW's first step is
  # lr x sign(gradient), and the sign of a gradient at noise level is noise).
  with c.unlocked():  # the ReID config has no momentum field (AdamW)
    c.optimizer.name, c.optimizer.momentum = "sgd", 0.9
  out = train_lib.train(c, args.workdir, SyntheticBatches(), resume=args.resume,
                        stop_at=args.stop_at, progress=False)
  if main_process:
    np.savez(f"{args.out}-step{int(jax.device_get(out['state'].step))}.npz",
             *jax.tree.leaves(jax.device_get(out["state"])))
    with open(f"{args.out}-rows.json", "w") as f:
      json.dump(out["rows"], f)


def train_detector(args, main_process):
  """The detector trainer, config of tests/test_detection_train.py with a global batch of 4."""
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  from test_detection_train import tiny_config  # pylint: disable=g-import-not-at-top
  from vsreid_jax.data.objects import ObjectBank# pylint: disable=g-import-not-at-top
  from vsreid_jax.detection import data as det_data  # pylint: disable=g-import-not-at-top
  from vsreid_jax.detection import train as det_train  # pylint: disable=g-import-not-at-top
  c = tiny_config()
  c.data.batch_size, c.data.prefetch = 4, 0
  c.optimizer.name = "sgd"  # an update linear in the gradient (see train_reid)
  c.optimizer.momentum = 0.9
  data = det_data.CopyPasteData(ObjectBank([(args.davis, "480p")], subset="val"), (64, 96), c.data.max_boxes, seed=0)
  out = det_train.train(c, args.workdir, data, resume=args.resume, stop_at=args.stop_at, progress=False)
  if main_process:
    np.savez(f"{args.out}-step{int(jax.device_get(out['state'].step))}.npz",
             *jax.tree.leaves(jax.device_get(out["state"])))
    with open(f"{args.out}-rows.json", "w") as f:
      json.dump(out["train_rows"], f)


if __name__ == "__main__":
  main(sys.argv[1:])
