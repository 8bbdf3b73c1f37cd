"""Benchmark of the propagation path (Algorithm 1) on one DAVIS sequence.

Prints frames/s per stage (flow, warp, crop, net, paste, merge), end to end, the time spent in
XLA compilation, the number of compilations of each jitted stage and peak RSS. Each DIS preset
is run in the same process, so the rows compare as ratios on a noisy machine.

  python experiments/bench_propagation.py --davis ../shared/data/davis2016-train --seq bear
"""
import argparse
import time

from vsreid_jax.api import Segmenter
from vsreid_jax.configs import segment as segment_config
from vsreid_jax.data import DavisDataset
from vsreid_jax.solver.merge import merge_probs
from vsreid_jax.utils import jit_cache_size, peak_rss_mb


def run(args, preset):
  config = segment_config.get_config()
  config.net = args.net
  config.flow = f"dis-{preset}"
  if args.scales:
    config.propagation.scales = segment_config.parse_scales(args.scales)
  seg = Segmenter(config)
  ds = DavisDataset(args.davis, args.resolution)
  frames = ds.frames(args.seq)
  state = seg.init_state(frames, name=args.seq)
  seg.add_mask(state, ds.first_mask(args.seq))
  fns = seg.propagator.jitted + (merge_probs,)
  before = [jit_cache_size(f) for f in fns]
  t = time.perf_counter()
  n = sum(1 for _ in seg.propagate(state))
  wall = time.perf_counter() - t
  compiles = [jit_cache_size(f) - b for f, b in zip(fns, before)]
  return state.timer, n, wall, compiles, config, seg


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--davis", required=True)
  p.add_argument("--seq", default="bear")
  p.add_argument("--resolution", default="480p")
  p.add_argument("--net", default="identity")
  p.add_argument("--scales", default=None, help="margin:crop pairs; default: the net's own")
  p.add_argument("--presets", default="ultrafast,medium")
  args = p.parse_args()
  names = ("binarize", "warp", "crop", "net", "paste", "finish", "merge")
  for preset in args.presets.split(","):
    timer, n, wall, compiles, config, seg = run(args, preset)
    print(f"\n== {args.seq}: {n} frames, net={config.net}, flow=dis-{preset}, scales={seg.propagator.config.scales}")
    print(timer.table(n))
    print(f"end to end: {n / wall:.1f} frames/s ({wall:.2f} s wall, compile {timer.seconds['compile']:.2f} s)")
    print("compilations: " + ", ".join(f"{k}={c}" for k, c in zip(names, compiles)))
  print(f"\npeak RSS {peak_rss_mb():.0f} MiB")


if __name__ == "__main__":
  main()
