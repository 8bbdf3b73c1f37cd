"""Optical flow backends on synthetic pairs with exact ground truth, built from real DAVIS frames:
EPE and ms/frame for DIS (ultrafast/fast/medium), RAFT-small and RAFT-large in JAX, and the same
RAFT weights run by torchvision in the same process (same thread count) for the JAX/torch ratio.

  python experiments/bench_flow.py --davis ../shared/data/davis2016-train [--pairs 3] [--iters 12]
      [--trained-workdir runs/raft_small]

RAFT weights are random unless --trained-workdir points at an experiments/train_raft.py run
(then its RAFT-small is benched too): the EPE of an untrained RAFT is meaningless, its timing
is what counts. The torch rows load the same weights as the JAX rows (exported with
import_torch_raft.state_dict_from_variables), so their flows must agree: the table gives the
max difference. The first call of each backend is timed separately (JAX: compilation) and left
out of ms/frame; every call counts for EPE.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vsreid_jax.configs import raft_large, raft_small  # pylint: disable=wrong-import-position
from vsreid_jax import flow as flow_lib  # pylint: disable=wrong-import-position
from vsreid_jax.flow import dis, raft, synthetic_flow  # pylint: disable=wrong-import-position
from vsreid_jax.flow import import_torch_raft as itr  # pylint: disable=wrong-import-position

CONFIGS = {"small": raft_small, "large": raft_large}


def time_backend(fn, pairs):
  """(flows, first-call seconds, mean seconds of the other calls)."""
  flows, seconds = [], []
  for a, b, _, _ in pairs:
    t = time.perf_counter()
    flows.append(np.asarray(fn(a, b)))
    seconds.append(time.perf_counter() - t)
  rest = seconds[1:] or seconds
  return flows, seconds[0], float(np.mean(rest))


def mean_epe(flows, pairs):
  return float(np.mean([synthetic_flow.epe(f, gt, v) for f, (_, _, gt, v) in zip(flows, pairs)]))


def torch_flow_fn(variant, variables, num_iters):
  """torchvision RAFT with the JAX variables, on frames padded as RAFTFlow pads them."""
  import torch  # pylint: disable=g-import-not-at-top
  model = itr.torchvision_raft(variant)
  model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in
                         itr.state_dict_from_variables(variables).items()})

  def fn(a, b):
    (top, bottom), (left, right) = raft.pad_amounts(*a.shape[:2])
    x = torch.from_numpy(np.stack([a, b])).permute(0, 3, 1, 2).float() / 255 * 2 - 1
    x = torch.nn.functional.pad(x, (left, right, top, bottom), mode="replicate")
    with torch.no_grad():
      flow = model(x[:1], x[1:], num_flow_updates=num_iters)[-1][0].permute(1, 2, 0).numpy()
    return flow[top:flow.shape[0] - bottom, left:flow.shape[1] - right]

  return fn


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--davis", required=True, help="DAVIS-layout root (frames 854x480)")
  ap.add_argument("--pairs", type=int, default=3)
  ap.add_argument("--iters", type=int, default=12, help="RAFT updates")
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--trained-workdir", default=None, help="an experiments/train_raft.py workdir")
  ap.add_argument("--no-torch", action="store_true")
  ap.add_argument("--variants", default="small,large")
  args = ap.parse_args(argv)

  ds = synthetic_flow.SyntheticFlowSet(args.davis, seed=args.seed, size=args.pairs)
  pairs = [ds[i] for i in range(args.pairs)]
  h, w = pairs[0][0].shape[:2]
  threads = os.cpu_count()
  print(f"{args.pairs} synthetic pairs at {w}x{h} from {args.davis} (smooth and piecewise alternate), "
        f"mean |gt flow| {np.mean([np.linalg.norm(p[2], axis=-1).mean() for p in pairs]):.1f} px, "
        f"{np.mean([p[3].mean() for p in pairs]) * 100:.0f}% valid; {threads} CPU threads")

  rows = [("zero flow", "-", mean_epe([np.zeros_like(p[2]) for p in pairs], pairs), 0.0, 0.0, "")]
  for preset in dis.PRESETS:
    backend = flow_lib.get(f"dis-{preset}")
    flows, first, per = time_backend(backend.flow, pairs)
    rows.append((backend.name, "-", mean_epe(flows, pairs), per, first, ""))

  torch_error = None
  if not args.no_torch:
    try:
      import torch  # pylint: disable=g-import-not-at-top
      from vsreid_jax.models.import_torch import import_torchvision  # pylint: disable=g-import-not-at-top
      import_torchvision()
      torch.set_num_threads(threads)
    except Exception as e:  # pylint: disable=broad-except
      torch_error = f"{type(e).__name__}: {e}"

  for variant in args.variants.split(","):
    config = CONFIGS[variant].get_config()
    weights = [("random", raft.init_variables(raft.model_from_config(config.model), seed=args.seed))]
    if variant == "small" and args.trained_workdir:
      import experiments.train_raft as train_raft  # pylint: disable=g-import-not-at-top
      variables, step = train_raft.load_variables(raft_small.get_config(), args.trained_workdir)
      weights.append((f"trained {step} steps", variables))
    for tag, variables in weights:
      backend = raft.RAFTFlow(config, variables, num_iters=args.iters)
      flows, first, per = time_backend(backend.flow, pairs)
      rows.append((f"{backend.name} jax", tag, mean_epe(flows, pairs), per, first, ""))
      if tag != "random" or args.no_torch:
        continue
      if torch_error:
        rows.append((f"raft-{variant} torch", tag, float("nan"), float("nan"), float("nan"), "torch unavailable"))
        continue
      t_flows, t_first, t_per = time_backend(torch_flow_fn(variant, variables, args.iters), pairs)
      diff = max(float(np.abs(a - b).max()) for a, b in zip(flows, t_flows))
      rows.append((f"raft-{variant}-{args.iters}it torch", tag, mean_epe(t_flows, pairs), t_per, t_first,
                   f"JAX/torch time {per / t_per:.2f}, max |jax - torch| {diff:.1e} px"))

  print(f"\n| method | weights | EPE (px) | ms/frame | first call (s) | note |")
  print("|---|---|---|---|---|---|")
  for name, tag, e, per, first, note in rows:
    print(f"| {name} | {tag} | {e:.2f} | {per * 1e3:.0f} | {first:.2f} | {note} |")
  print("\nEPE of random-weight RAFT is meaningless (untrained); its ms/frame is what counts.")
  if torch_error:
    print(f"torch rows skipped: {torch_error}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
