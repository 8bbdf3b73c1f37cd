"""The paper's Table 1 ablation in one command: each row adds one part of VS-ReID.

  baseline       N_mp RGB stream only, on the whole frame (no bbox crop), propagation only
  +bbox crop     ... on the enlarged box of the warped mask (Algorithm 1)
  +flow stream   ... both streams (RGB + flow), logits averaged
  +re-id         ... the full solver: re-identification of lost objects (Algorithm 3)
  +multi-scale   ... with several crop sizes averaged (--multi-scales)

With --levers, rows of issue 20 follow, each on top of +re-id and the previous lever row:

  +paper rule       retrieval by the paper's rule (every (frame, object) pair), not the lost-only one
  +strict drift     a present object's candidate must be clearly elsewhere (IoU with the current mask
                    box < 0.1) and beat the current mask's ReID evidence by 0.05, and no other present
                    object's mask box may cover it (solver.drift_iou, drift_margin, drift_exclusive)
  +recovery guard   never replace a mask that a similar candidate confirms
  +motion rank      rank candidates by similarity + motion continuity; templates refreshed
  +occlusion merge  contested pixels go to the mask newest from its checkpoint, then ReID evidence

Every row segments the same sequences in one process (flows, detections and embeddings computed
once and cached), is scored with the project's DAVIS 2017 evaluator, and reports J&F, its wall
time, N_mp calls and retrievals. With --oracle-reid (ground truth needed) every re-id row runs a
second time with the oracle (candidates = the ground-truth boxes, a perfect ReID: solver/oracle.py):
its columns are the row's ceiling. --oracle-split runs it twice more with half an oracle each: the
detector's own boxes with a perfect ReID, and the ground-truth boxes with the ReID net (what each
of the two costs). Writes OUT/ablation.md, OUT/ablation.csv, OUT/ablation.png and
per-row results OUT/<row>/<root>/<sequence>/*.png (+ <sequence>_retrievals.json for re-id rows).

--split val|test takes the fixed splits of vsreid_jax/data/splits.py: the split's sequences of the
real data roots, and for a benchmark root (experiments/make_occlusion_benchmark.py) a check that it
was built from that split. val is for choosing, test is reported once.

  python experiments/ablation.py --davis /tmp/occ-test:240p --set occlusion --split test --out /tmp/ablation-occ
  python experiments/ablation.py --davis ../shared/data/davis2016-train:480p \
      --davis ../shared/data/davis2016-train-240p:240p --set train --split test --out /tmp/ablation-real

What the paper's rows measured, and what these run: the paper's single-stream rows are a
separately trained RGB-only net; here they run `--rgb-net FILE` (a net trained with `vsreid train
--stage rgb`) when given, else the two-stream weights with the flow stream left out (the table's
`ran` column says which). Every other test-time setting is the same in every row: with `--preset
paper` the paper's (no flip, one recovery pass, the paper's per-pair retrieval rule, no lost-area
rule, no retrieval cap, the net's test scales), else this project's defaults (flip as the net's
config says, 5 recovery passes, the original code's lost-only rule and 1/10 lost area, at most 20
retrievals); the switches of `vsreid segment` (--no-flip, --recover-passes, --lost-ratio,
--retrieval-rule) refine either. The `ran` column lists each row's resolved settings.
"""
import argparse
import csv
import functools
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vsreid_jax import cli, configs  # pylint: disable=wrong-import-position
from vsreid_jax.api import Segmenter, SequenceJob, segment_dataset  # pylint: disable=wrong-import-position
from vsreid_jax.configs import segment as segment_config  # pylint: disable=wrong-import-position
from vsreid_jax.data import DavisDataset, splits  # pylint: disable=wrong-import-position
from vsreid_jax.errors import InputError  # pylint: disable=wrong-import-position
from vsreid_jax.eval.davis import evaluate_sequences  # pylint: disable=wrong-import-position
from vsreid_jax.eval.report import bar_chart, markdown_table  # pylint: disable=wrong-import-position

# (row name, config changes): each row keeps the previous row's changes.
ROWS = (
    ("baseline", dict(streams=("rgb",), use_box=False, method="propagate")),
    ("+bbox crop", dict(use_box=True)),
    ("+flow stream", dict(streams=None)),
    ("+re-id", dict(method="vsreid")),
    ("+multi-scale", dict(multi_scale=True)),
)
PAPER = {"baseline": 0.517, "+bbox crop": 0.555, "+flow stream": 0.584, "+re-id": 0.652, "+multi-scale": 0.661}
# Issue 20's levers (--levers): solver changes on top of +re-id, cumulative.
LEVER_ROWS = (
    # The paper rule as the paper ranks: by similarity alone (motion is the +motion rank row's).
    ("+paper rule", dict(retrieval_rule="paper", motion_weight=0.0)),
    # drift_iou 0.1: a detector box looser or tighter than a right mask overlaps it with IoU 0.1-0.3
    # (issue 20's retrieval logs); drift_margin 0.05: on the val hard benchmark the ReID gives the
    # candidates ON a wrong current mask 0.8-0.97, so a candidate elsewhere must beat them clearly
    # (experiments/drift_evidence.py); exclusive: a third of the paper test's wrong retrievals take a
    # box another present object's mask covers (the twin of a hidden target).
    ("+strict drift", dict(drift_iou=0.1, drift_margin=0.05, drift_exclusive=True)),
    ("+recovery guard", dict(recovery_guard=True)),
    ("+motion rank", dict(motion_weight=0.3, template_refresh=2)),
    ("+occlusion merge", dict(merge="occlusion")),
)


def parse_solver_sets(items):
  """["rho_reid=0.8", "retrieval_rule=paper"] -> {key: value} for config.solver (values parsed as
  Python literals where they are, else kept as strings)."""
  import ast  # pylint: disable=g-import-not-at-top
  out = {}
  keys = set(segment_config.get_config().solver.keys())
  for item in items or ():
    key, sep, value = item.partition("=")
    if not sep or key not in keys:
      raise InputError(f"--solver {item}: expected KEY=VALUE with KEY one of {', '.join(sorted(keys))}")
    try:
      out[key] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      out[key] = value
  return out


def row_configs(args):
  """[(name, segment ConfigDict)] for the cumulative rows (and, with args.levers, the lever rows
  on top of +re-id)."""
  out, state = [], {}
  solver_sets = parse_solver_sets(getattr(args, "solver", None))

  def build(state, solver):
    c = segment_config.get_config()
    cli.apply_test_time_switches(c, args)  # the same in every row
    c.net = args.net
    c.method = state["method"]
    c.streams = state.get("streams")
    if c.streams == ("rgb",) and getattr(args, "rgb_net", None):
      c.net, c.streams = args.rgb_net, None  # a separately trained single-stream net, as the paper's rows
    c.propagation.use_box = state["use_box"]
    if state.get("multi_scale"):
      c.propagation.scales = segment_config.parse_scales(args.multi_scales)
    if args.max_retrievals is not None:
      c.solver.max_retrievals = args.max_retrievals
    for key, value in {**solver, **solver_sets}.items():
      c.solver[key] = value
    for assignment in getattr(args, "override", None) or ():
      configs.override(c, assignment, "--override")
    return c

  reid_state = None
  for name, change in ROWS:
    state.update(change)
    out.append((name, build(state, {})))
    if name == "+re-id":
      reid_state = dict(state)
  if getattr(args, "levers", False):
    solver = {}
    for name, change in LEVER_ROWS:
      solver.update(change)
      out.append((name, build(reid_state, solver)))
  return out


def benchmark_split(root):
  """The split a benchmark root was built from (its info.json's clips agree), or None."""
  path = os.path.join(root, "info.json")
  if not os.path.isfile(path):
    return None
  import json  # pylint: disable=g-import-not-at-top
  with open(path) as f:
    found = {info.get("split", "unknown") for info in json.load(f).values()}
  return found.pop() if len(found) == 1 else "mixed"


def jobs_of(args):
  """[(dataset, [sequences])] from the --davis ROOT[:RES] arguments."""
  jobs = []
  data_roots = dict(splits.DATA_ROOTS)
  for spec in args.davis:
    root, _, res = spec.partition(":")
    ds = DavisDataset(root, res or "480p")
    seqs = ds.sequences(args.set)
    name = os.path.basename(os.path.normpath(root))
    if args.held_out:
      seqs = [s for s in seqs if s in splits.held_out().get(name, ())]
    if getattr(args, "split", None):
      if name in data_roots:
        seqs = [s for s in seqs if s in splits.sequences(args.split, name)]
      else:
        built = benchmark_split(root)
        if built != args.split:
          raise InputError(f"{root}: built from split {built or 'unknown (no info.json)'}, not {args.split}; "
                           f"build it with experiments/make_occlusion_benchmark.py --split {args.split}")
    if args.sequences:
      seqs = [s for s in seqs if s in args.sequences]
    if seqs:
      jobs.append((ds, seqs))
  if not jobs:
    raise InputError("no sequences selected; check --set, --sequences, --split and --held-out")
  return jobs


def describe_run(seg, config) -> str:
  """The resolved settings a row ran with: net and streams, crop, method and test-time extensions."""
  net = seg.propagator.net
  model_cfg = getattr(net, "model_config", None)
  p = seg.propagator.config
  parts = [f"net={os.path.basename(str(config.net))}"]
  if model_cfg is not None:
    parts.append("streams=" + "+".join(model_cfg.model.streams))
    parts.append(f"flip={'on' if (model_cfg.test_flip if config.flip is None else config.flip) else 'off'}")
  parts += [f"box={'on' if p.use_box else 'off'}", "scales=" + ",".join(f"{m}:{c}" for m, c in p.scales),
            f"lost_ratio={p.lost_ratio}", f"method={seg.method}"]
  if p.min_crop_scale:
    parts.insert(-1, f"min_crop_scale={p.min_crop_scale}")
  if p.lost_search_margin:
    parts.insert(-1, f"lost_search_margin={p.lost_search_margin}")
  if p.exclusive:
    parts.insert(-1, "exclusive=True")
  if p.revive_ratio:
    parts.insert(-1, f"revive_ratio={p.revive_ratio}")
  if seg.method == "vsreid":
    s = config.solver
    parts += [f"rule={s.retrieval_rule}", f"recover_passes={s.recover_passes}",
              f"max_retrievals={'none' if s.max_retrievals >= segment_config.NO_CAP else s.max_retrievals}"]
    if s.get("drift_iou") is not None:
      parts += [f"drift_iou={s.drift_iou}", f"drift_margin={s.drift_margin}", f"drift_exclusive={s.drift_exclusive}"]
    if s.rho_reid is not None:
      parts.append(f"rho_reid={s.rho_reid}")
    if s.get("rho_relative") is not None:
      parts += [f"rho_relative={s.rho_relative}", f"rho_relative_margin={s.rho_relative_margin}"]
    if s.get("stop_outside"):
      parts.append("stop_outside=True")
    if s.get("target_check") is not None:
      parts.append(f"target_check={s.target_check}")
    if s.get("motion_weight"):
      parts.append(f"motion_weight={s.motion_weight}")
  return " ".join(parts)


# The two halves of the oracle (--oracle-split): which of the detector and the ReID loses the points.
ORACLE_HALVES = {"ids": "detector boxes + perfect ReID", "boxes": "GT boxes + our ReID"}


def oracle_for(ds, seq, state, mode="full", seg=None):
  """Oracle candidates and templates of one sequence for state's objects (solver/oracle.py).

  mode "full": the ground-truth boxes and a perfect ReID; "ids": the detector's own boxes with a
  perfect ReID (what the detector loses); "boxes": the ground-truth boxes embedded by the ReID net,
  its own templates (what the ReID loses). "ids" and "boxes" need the Segmenter `seg` (its nets).
  """
  from vsreid_jax.solver import caches, oracle  # pylint: disable=g-import-not-at-top
  masks = [ds.annotation(seq, name) for name in state.frames.names]
  k = len(state.object_ids)
  # An object showing under Algorithm 1's lost share of its first-frame area makes no candidate.
  min_area = 0.1 * state.first_area[:k]
  if mode == "full":
    return oracle.oracle_candidates(masks, state.object_ids, min_area)
  detector, embedder, fingerprint = seg.reid_nets()
  if mode == "ids":
    src = caches.CandidateSource(state.frames, detector, embedder, int(seg.config.solver.candidate_batch),
                                 seg.flow_cache_dir, state.name, fingerprint, state.timer)
    cands = src.get(range(len(state.frames)))
    src.close()
    return oracle.oracle_identities(cands, masks, state.object_ids, min_area)
  tmpl = caches.templates_at_starts(embedder, state.frames, state.first_prob, state.starts)
  return oracle.oracle_boxes(state.frames, masks, state.object_ids, min_area, embedder), tmpl


def run_row(name, config, jobs, out_dir, cache_dir, progress, oracle=None):
  """Segments and scores every sequence with one row's config; oracle: None, or the oracle_for mode
  whose candidates the solver gets."""
  seg = Segmenter(config, flow_cache_dir=cache_dir)
  start = time.perf_counter()
  frames_done, retrievals, steady = 0, 0, 0.0
  calls0 = seg.propagator.net_calls
  for ds, seqs in jobs:
    root = os.path.basename(os.path.normpath(ds.root))
    videos = [SequenceJob(name=seq, frames=ds.frames(seq), first_mask=functools.partial(ds.first_mask, seq),
                          cache_key=os.path.join(root, seq)) for seq in seqs]

    def with_oracle(state, job, ds=ds):
      state.candidates = oracle_for(ds, job.name, state, oracle, seg)

    for done in segment_dataset(seg, videos, os.path.join(out_dir, root), progress=progress,
                                prepare=with_oracle if oracle else None):
      state = done.state
      if state.result is not None:
        retrievals += len(state.result.retrievals)
      frames_done += len(state.frames)
      steady += sum(v for k, v in state.timer.seconds.items() if k not in ("compile", "flow", "detect", "embed"))
  wall = time.perf_counter() - start
  objects = []
  per_root = {}
  for ds, seqs in jobs:
    res = evaluate_sequences(ds, seqs, os.path.join(out_dir, os.path.basename(os.path.normpath(ds.root))),
                             progress=False)
    objects += [(j, f) for _, j, f in res.per_object]
    per_root[os.path.basename(os.path.normpath(ds.root))] = res.global_["J&F-Mean"]
  j, f = float(np.mean([o[0] for o in objects])), float(np.mean([o[1] for o in objects]))
  return dict(row=name, ran=describe_run(seg, config), method=seg.method, jf=(j + f) / 2, j=j, f=f, per_root=per_root, objects=len(objects),
              frames=frames_done, wall_s=wall, ms_per_frame=1000 * steady / max(frames_done, 1),
              net_calls=seg.propagator.net_calls - calls0, retrievals=retrievals)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--davis", action="append", required=True, metavar="ROOT[:RES]",
                  help="DAVIS-layout root and resolution folder (default 480p); repeatable")
  ap.add_argument("--set", default="val", help="ImageSets/2017/<set>.txt")
  ap.add_argument("--sequences", nargs="+", help="only these sequences")
  ap.add_argument("--held-out", action="store_true",
                  help="only the held-out sequences of the training roots (val and test together)")
  ap.add_argument("--split", choices=splits.SPLITS[1:],
                  help="the fixed split (data/splits.py): its sequences of the data roots; a benchmark root "
                  "must have been built from it. val: for choosing; test: to report once")
  ap.add_argument("--levers", action="store_true", help="add the rows of issue 20's levers after +re-id")
  ap.add_argument("--oracle-reid", action="store_true",
                  help="run every re-id row again with ground-truth candidates and a perfect ReID (its ceiling)")
  ap.add_argument("--oracle-split", action="store_true",
                  help="run every re-id row twice more, once with the detector's boxes and a perfect ReID, once "
                  "with the ground-truth boxes and the ReID net: which of the two loses the points")
  ap.add_argument("--solver", action="append", metavar="KEY=VALUE",
                  help="set config.solver.KEY in every row (e.g. retrieval_rule=paper); repeatable")
  ap.add_argument("--override", action="append", metavar="KEY=VALUE",
                  help="any key of configs/segment.py in every row, as `vsreid segment --override` "
                  "(e.g. propagation.min_crop_scale=1.0); repeatable")
  ap.add_argument("--out", required=True, help="output folder")
  ap.add_argument("--net", default="default", help="N_mp weights (default: shipped)")
  ap.add_argument("--rgb-net", default=None, metavar="FILE",
                  help="single-stream (RGB) N_mp weights for the baseline and +bbox crop rows, e.g. exported from "
                  "`vsreid train --stage rgb` (default: --net with its flow stream left out)")
  cli.add_test_time_switches(ap)
  ap.add_argument("--multi-scales", default="0.15:129,0.15:161,0.15:193",
                  help="margin:crop pairs of the +multi-scale row")
  ap.add_argument("--max-retrievals", type=int, default=None)
  ap.add_argument("--rows", nargs="+", default=None, help="only these rows (names as in the table)")
  ap.add_argument("--cache", default=None, help="flow/candidate cache (default OUT/cache)")
  ap.add_argument("--no-progress", action="store_true")
  args = ap.parse_args(argv)
  try:
    jobs = jobs_of(args)
    configs = row_configs(args)
  except InputError as e:
    print(f"ablation: error: {e}", file=sys.stderr)
    return 2
  cache = args.cache or os.path.join(args.out, "cache")
  n_seq = sum(len(s) for _, s in jobs)
  print(f"{n_seq} sequences: " + "; ".join(f"{ds.root}: {' '.join(s)}" for ds, s in jobs), flush=True)
  results = []
  for k, (name, config) in enumerate(configs):
    if args.rows and name not in args.rows:
      continue
    r = run_row(name, config, jobs, os.path.join(args.out, f"row{k}"), cache, not args.no_progress)
    if args.oracle_reid and r["method"] == "vsreid":
      o = run_row(name, config, jobs, os.path.join(args.out, f"row{k}-oracle"), cache, not args.no_progress,
                  oracle="full")
      r.update(oracle_jf=o["jf"], oracle_retrievals=o["retrievals"], oracle_net_calls=o["net_calls"])
    if args.oracle_split and r["method"] == "vsreid":
      for mode in ORACLE_HALVES:
        o = run_row(name, config, jobs, os.path.join(args.out, f"row{k}-oracle-{mode}"), cache, not args.no_progress,
                    oracle=mode)
        r.update({f"oracle_{mode}_jf": o["jf"], f"oracle_{mode}_retrievals": o["retrievals"]})
    results.append(r)
    print(f"{name}: J&F {r['jf']:.3f} (J {r['j']:.3f}, F {r['f']:.3f}) in {r['wall_s']:.0f} s, "
          f"{r['net_calls']} N_mp calls, {r['retrievals']} retrievals"
          + (f"; oracle ReID J&F {r['oracle_jf']:.3f}, {r['oracle_retrievals']} retrievals" if "oracle_jf" in r else "")
          + "".join(f"; {ORACLE_HALVES[m]} J&F {r[f'oracle_{m}_jf']:.3f}, {r[f'oracle_{m}_retrievals']} retrievals"
                    for m in ORACLE_HALVES if f"oracle_{m}_jf" in r),
          flush=True)
  columns = ("row", "J&F", "J", "F", "paper J&F (test-dev)", "wall s", "ms/frame (no flow/detect)", "N_mp calls",
             "retrievals", "ran")
  rows = [(r["row"], r["jf"], r["j"], r["f"], PAPER.get(r["row"], ""), f"{r['wall_s']:.0f}", f"{r['ms_per_frame']:.0f}",
           r["net_calls"], r["retrievals"], r["ran"]) for r in results]
  if args.oracle_reid:
    columns += ("oracle-ReID J&F", "oracle retrievals")
    rows = [row + ((r["oracle_jf"], r["oracle_retrievals"]) if "oracle_jf" in r else ("", ""))
            for row, r in zip(rows, results)]
  if args.oracle_split:
    for m, label in ORACLE_HALVES.items():
      columns += (f"{label} J&F", f"{label} retrievals")
      rows = [row + ((r[f"oracle_{m}_jf"], r[f"oracle_{m}_retrievals"]) if f"oracle_{m}_jf" in r else ("", ""))
              for row, r in zip(rows, results)]
  table = markdown_table(columns, rows)
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "ablation.md"), "w") as f:
    split = f", split {args.split}" if args.split else ""
    f.write(f"{n_seq} sequences, {results[0]['objects']} objects, set {args.set}{split}\n\n{table}\n")
  with open(os.path.join(args.out, "ablation.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(columns)
    w.writerows(rows)
  bar_chart(os.path.join(args.out, "ablation.png"), [r["row"] for r in results],
            {"J&F here": [r["jf"] for r in results],
             **({"oracle ReID": [r.get("oracle_jf", r["jf"]) for r in results]} if args.oracle_reid else {}),
             "paper (DAVIS17 test-dev)": [PAPER.get(r["row"], 0.0) for r in results]},
            f"VS-ReID ablation: {n_seq} sequences ({args.set})")
  print("\n" + table)
  print(f"\nwrote {args.out}/ablation.md, ablation.csv, ablation.png")
  return 0


if __name__ == "__main__":
  sys.exit(main())
