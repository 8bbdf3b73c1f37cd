"""End-to-end validation of N_mp on a split of data/splits.py: whole videos, official J&F.

Runs `vsreid segment` (Algorithm 1) with each net on every sequence of `--split` (val: the
sequences choices are made on; test: scored once at the end) of the training roots, in one process
(same machine state, flows computed once and cached), evaluates with the project's DAVIS evaluator
and prints J&F per root, per sequence and over all objects of the split.

  python experiments/validate_propagation.py --split val --nets identity runs/lite.msgpack --out /tmp/val
  python experiments/validate_propagation.py --split val --workdir runs/lite --step 500 1000 --out /tmp/val
  python experiments/validate_propagation.py --split val --nets default --target off color:weight=0.5 --out /tmp/val

`--target` runs each net once per target-model setting (propagation/target.py): "off", or the
features ("color", "backbone") optionally followed by `:key=value,...` of `propagation.target`.
"""
import argparse
import os
import re
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments import splits  # pylint: disable=wrong-import-position
from vsreid_jax import configs  # pylint: disable=wrong-import-position
from vsreid_jax.api import Segmenter  # pylint: disable=wrong-import-position
from vsreid_jax.configs import segment as segment_config  # pylint: disable=wrong-import-position
from vsreid_jax.configs.train_propagation import DATA_ROOTS  # pylint: disable=wrong-import-position
from vsreid_jax.data import splits as data_splits  # pylint: disable=wrong-import-position
from vsreid_jax.data import DavisDataset  # pylint: disable=wrong-import-position
from vsreid_jax.data.results import SequenceWriter  # pylint: disable=wrong-import-position
from vsreid_jax.eval.davis import evaluate_sequences  # pylint: disable=wrong-import-position
from vsreid_jax.train.export import export_checkpoint  # pylint: disable=wrong-import-position


def target_overrides(spec: str):
  """"color:weight=0.5,fusion=suppress" -> ["propagation.target_model=color", "propagation.target.weight=0.5", ...]."""
  name, _, rest = spec.partition(":")
  pairs = re.split(r",(?=\w+=)", rest) if rest else []  # commas inside a value (blur=(9,25)) stay
  return [f"propagation.target_model={name}"] + [f"propagation.target.{kv}" for kv in pairs]


def segment_all(net, jobs, out_dir, flow_cache, flip=None, scales=None, binarize=None, target="off"):
  """Segments every (dataset, sequence) of jobs with `net`; returns (frames, steady seconds, steady
  seconds of the N_mp and target-model stages)."""
  config = segment_config.get_config()
  for assignment in target_overrides(target):
    configs.override(config, assignment, "--target")
  config.net = net
  config.propagation.binarize_prior = binarize
  config.flip = flip
  if scales:
    config.propagation.scales = segment_config.parse_scales(scales)
  seg = Segmenter(config, flow_cache_dir=flow_cache)
  frames_done, seconds, stages = 0, 0.0, {"net": 0.0, "target": 0.0}
  for ds, seq in jobs:
    frames = ds.frames(seq)
    state = seg.init_state(frames, name=os.path.join(os.path.basename(ds.root), seq))
    seg.add_mask(state, ds.first_mask(seq))
    with SequenceWriter(os.path.join(out_dir, os.path.basename(ds.root)), seq) as w:
      for i, ids in seg.propagate(state):
        w.write(frames.names[i], ids)
    frames_done += len(frames)
    seconds += sum(v for k, v in state.timer.seconds.items() if k not in ("compile", "flow"))
    for k in stages:
      stages[k] += state.timer.seconds.get(k, 0.0)
  return frames_done, seconds, stages


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--nets", nargs="+", default=["identity"], help="identity, default or weights files")
  ap.add_argument("--split", choices=["val", "test"], default="val",
                  help="sequences of data/splits.py: val (choose on it, default) or test (report once)")
  ap.add_argument("--workdir", help="also validate the latest checkpoint of this training workdir")
  ap.add_argument("--step", type=int, nargs="+", default=None, help="with --workdir: these checkpoint steps")
  ap.add_argument("--out", required=True, help="results folder (one sub-folder per net)")
  ap.add_argument("--flow-cache", default=None, help="flow cache (default OUT/flow)")
  ap.add_argument("--flip", choices=["on", "off", "net"], default="net")
  ap.add_argument("--scales", default=None, help="margin:crop pairs (default: each net's own)")
  ap.add_argument("--binarize-prior", choices=["on", "off", "net"], default="net",
                  help="warp the thresholded previous mask (default: as the net's config says)")
  ap.add_argument("--target", nargs="+", default=["off"],
                  help="target-model settings to run each net with: off, color, backbone[:key=value,...]")
  ap.add_argument("--data-dir", default=None)
  args = ap.parse_args(argv)
  data_dir = args.data_dir or str(splits.shared_data_dir())
  nets = list(args.nets)
  if args.workdir:
    for want in args.step or [None]:
      path = os.path.join(args.out, "exported.msgpack" if want is None else f"step_{want}.msgpack")
      step = export_checkpoint(args.workdir, path, want)
      print(f"exported {args.workdir} step {step} -> {path}")
      nets.append(path)
  split = {name: data_splits.sequences(args.split, name) for name, _ in DATA_ROOTS}
  datasets = {name: DavisDataset(os.path.join(data_dir, name), res) for name, res in DATA_ROOTS}
  jobs = [(datasets[name], seq) for name, _ in DATA_ROOTS for seq in split[name]]
  flow_cache = args.flow_cache or os.path.join(args.out, "flow")
  flip = {"on": True, "off": False, "net": None}[args.flip]
  rows = []
  runs = [(net, target) for net in nets for target in args.target]
  for k, (net, target) in enumerate(runs):
    out_dir = os.path.join(args.out, f"net{k}")
    t = time.perf_counter()
    binarize = {"on": True, "off": False, "net": None}[args.binarize_prior]
    n, steady, stages = segment_all(net, jobs, out_dir, flow_cache, flip, args.scales, binarize, target)
    wall = time.perf_counter() - t
    per_root, objects = {}, []
    for name, _ in DATA_ROOTS:
      res = evaluate_sequences(datasets[name], list(split[name]), os.path.join(out_dir, name), progress=False)
      per_root[name] = res.global_["J&F-Mean"]
      objects += [(j, f) for _, j, f in res.per_object]
      print("  " + ", ".join(f"{obj}: {(j + f) / 2:.3f}" for obj, j, f in res.per_object), flush=True)
    j_all, f_all = np.mean([o[0] for o in objects]), np.mean([o[1] for o in objects])
    label = net if target == "off" else f"{net} + target {target}"
    rows.append((label, per_root, (j_all + f_all) / 2, j_all, f_all, n / steady if steady else 0.0, wall))
    print(f"{label}: J&F {(j_all + f_all) / 2:.3f} ({wall:.0f} s, {n / steady if steady else 0.0:.2f} frames/s; "
          f"N_mp {1e3 * stages['net'] / n:.0f} ms/frame, target model {1e3 * stages['target'] / n:.0f} ms/frame)",
          flush=True)
  names = [name for name, _ in DATA_ROOTS]
  print("\n| net | " + " | ".join(f"J&F {n}" for n in names) + " | J&F all | J | F | frames/s (no flow) |")
  print("|---" * (len(names) + 5) + "|")
  for net, per_root, jf, j, f, fps, _ in rows:
    print(f"| {os.path.basename(net)} | " + " | ".join(f"{per_root[n]:.3f}" for n in names) +
          f" | {jf:.3f} | {j:.3f} | {f:.3f} | {fps:.1f} |")
  print(f"\n{args.split}: {', '.join(f'{n}: {list(split[n])}' for n in names)}")


if __name__ == "__main__":
  main()
