"""Online adaptation: what it costs per video against the segmentation itself, and what it buys.

For each sequence, segments it twice with the same net, without and with `--steps N` of online
adaptation on its first frame (`train/online.py`), writes the results like `vsreid segment`
(OUT/steps_<n>/<sequence>/*.png) and scores both with the DAVIS protocol. Prints per sequence the
adaptation seconds and the segmentation seconds of the adapted run (steady state: one-off XLA
compilation apart), their ratio, and J&F without and with adaptation.

  python experiments/bench_online.py --davis ../shared/data/davis2016-train \\
      --sequences dance-jump motorbike scooter-gray --weights lite.msgpack --steps 50

Evaluate on sequences the net was not trained on (vsreid_jax/data/splits.py: val and test).
"""
import argparse
import functools
import os

import numpy as np

from vsreid_jax.api import Segmenter, SequenceJob, segment_dataset
from vsreid_jax.configs import segment as segment_config
from vsreid_jax.data import DavisDataset
from vsreid_jax.eval.davis import evaluate_sequences


def segment_all(args, ds, steps: int, out: str):
  """Segments every sequence with `steps` of online adaptation; per-sequence timings."""
  config = segment_config.get_config()
  config.net = args.weights
  config.online_steps = steps
  config.online_seed = args.seed
  config.method = "propagate"  # Algorithm 1 only: adaptation against propagation
  seg = Segmenter(config, flow_cache_dir=args.flow_cache)
  if steps and not seg.can_adapt:
    raise SystemExit(f"{args.weights}: the net has no weights to adapt")
  rows = {}
  videos = [SequenceJob(name=seq, frames=ds.frames(seq), first_mask=functools.partial(ds.first_mask, seq))
            for seq in args.sequences]
  for done in segment_dataset(seg, videos, out, progress=not args.no_progress):
    seq, frames, state, info = done.job.name, done.job.frames, done.state, done.adapted
    wall = done.seconds
    timer = state.timer.seconds
    segment = sum(v for k, v in timer.items() if k not in ("compile", "adapt"))
    rows[seq] = dict(frames=len(frames), segment=segment, wall=wall, compile=timer.get("compile", 0.0),
                     adapt=info["seconds"] if info else 0.0,
                     loss=(float(info["loss"][0]), float(info["loss"][-1])) if info else None)
    note = f", adapt {rows[seq]['adapt']:.1f} s, loss {rows[seq]['loss'][0]:.4f} -> {rows[seq]['loss'][1]:.4f}" if info else ""
    print(f"steps={steps} {seq}: {len(frames)} frames, segment {segment:.1f} s{note}", flush=True)
  return rows


def jf_per_sequence(ds, sequences, results):
  """{sequence: mean over its objects of (J + F) / 2}, and the global J&F."""
  result = evaluate_sequences(ds, sequences, results, progress=False)
  per = {}
  for key, j, f in result.per_object:
    per.setdefault(key.rsplit("_", 1)[0], []).append((j + f) / 2)
  return {s: float(np.mean(v)) for s, v in per.items()}, result.global_["J&F-Mean"]


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--davis", required=True, help="DAVIS-layout root")
  p.add_argument("--sequences", nargs="+", required=True)
  p.add_argument("--resolution", default="480p")
  p.add_argument("--weights", required=True, help="N_mp weights file (models/weights.py)")
  p.add_argument("--steps", type=int, default=50, help="online adaptation steps")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--out", default="/tmp/bench_online", help="results folder (steps_<n>/<sequence>/*.png)")
  p.add_argument("--flow-cache", default=None, help="reuse flows across runs (then the first run pays for them)")
  p.add_argument("--no-progress", action="store_true")
  args = p.parse_args()
  ds = DavisDataset(args.davis, args.resolution)
  runs, scores = {}, {}
  for steps in (0, args.steps):
    out = os.path.join(args.out, f"steps_{steps}")
    runs[steps] = segment_all(args, ds, steps, out)
    scores[steps] = jf_per_sequence(ds, args.sequences, out)
  n = args.steps
  print(f"\nweights={args.weights} steps={n}: adaptation against segmentation (the adapted run), J&F")
  head = f"{'sequence':<16} {'frames':>6} {'adapt s':>8} {'segment s':>9} {'adapt/seg':>9} {'J&F 0':>7} {f'J&F {n}':>7} {'delta':>7}"
  print(head)
  print("-" * len(head))
  for seq in args.sequences:
    r = runs[n][seq]
    j0, jn = scores[0][0].get(seq, float("nan")), scores[n][0].get(seq, float("nan"))
    print(f"{seq:<16} {r['frames']:>6} {r['adapt']:>8.1f} {r['segment']:>9.1f} {r['adapt'] / max(r['segment'], 1e-9):>9.2f} "
          f"{j0:>7.3f} {jn:>7.3f} {jn - j0:>+7.3f}")
  adapt = sum(r["adapt"] for r in runs[n].values())
  segment = sum(r["segment"] for r in runs[n].values())
  j0, jn = scores[0][1], scores[n][1]
  print(f"{'all':<16} {sum(r['frames'] for r in runs[n].values()):>6} {adapt:>8.1f} {segment:>9.1f} "
        f"{adapt / max(segment, 1e-9):>9.2f} {j0:>7.3f} {jn:>7.3f} {jn - j0:>+7.3f}")
  print(f"(seconds exclude one-off XLA compilation: {sum(r['compile'] for r in runs[n].values()):.1f} s in the "
        f"adapted run; results under {args.out})")


if __name__ == "__main__":
  main()
