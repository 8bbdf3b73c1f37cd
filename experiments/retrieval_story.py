"""Prints, for clips of an occlusion benchmark, what happened (each object's hidden, partly hidden and
outside frames) beside the solver's retrieval log (frames retrieved and rewritten).

  python experiments/retrieval_story.py --benchmark /tmp/occ-test --results /tmp/abl/row5/occ-test \\
      --clips occ00-dance-jump occ01-motorbike

--results is a folder of <clip>_retrievals.json (experiments/ablation.py writes one per re-id row
under OUT/row<k>/<root>/, `vsreid segment` under OUT/).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments.make_occlusion_benchmark import spans  # pylint: disable=wrong-import-position
from vsreid_jax.solver.algorithm3 import describe  # pylint: disable=wrong-import-position


def story(info: dict, log: dict) -> str:
  lines = []
  for o in info["objects"]:
    partly = [t for t, v in enumerate(o["visible"]) if 0.1 <= v < 0.7 and t not in o["outside"]]
    lines.append(f"  object {o['id']} ({o['role']}): hidden {spans(o['hidden'])}, partly hidden {spans(partly)}, "
                 f"outside {spans(o['outside'])}")
  lines.append(f"  {len(log['retrievals'])} retrievals, {log['net_calls']} N_mp calls, {log['seconds']} s:")
  lines += [f"    {describe(r)}" for r in log["retrievals"]]
  return "\n".join(lines)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--benchmark", required=True, help="the benchmark root (holds info.json)")
  ap.add_argument("--results", required=True, help="folder of <clip>_retrievals.json")
  ap.add_argument("--clips", nargs="+", required=True)
  args = ap.parse_args(argv)
  with open(os.path.join(args.benchmark, "info.json")) as f:
    infos = json.load(f)
  for clip in args.clips:
    path = os.path.join(args.results, f"{clip}_retrievals.json")
    if clip not in infos or not os.path.isfile(path):
      print(f"retrieval_story: error: {clip}: not in {args.benchmark}/info.json or no {path}", file=sys.stderr)
      return 2
    with open(path) as f:
      log = json.load(f)
    print(f"{clip}:\n{story(infos[clip], log)}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
