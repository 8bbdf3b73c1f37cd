"""`vsreid`: segment videos, evaluate results with the DAVIS 2017 protocol, convert masks.

Bad input ends with one line `vsreid: error: <file>: <what is wrong and how to fix it>` and exit
status 2, never a traceback.
"""
import argparse
import os
import sys
import time

from vsreid_jax import __version__
from vsreid_jax.errors import InputError

DEMO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "demo")


def _add_segment(sub):
  p = sub.add_parser("segment", help="segment videos given their first-frame masks",
                     description="Segment the objects of first-frame masks through videos (VS-ReID: propagation, "
                     "and re-identification of lost objects unless --method propagate); writes palette PNGs "
                     "OUT/<sequence>/<frame>.png (the DAVIS results layout).")
  src = p.add_mutually_exclusive_group(required=True)
  src.add_argument("--davis", metavar="ROOT", help="a DAVIS-layout root (segments every sequence of --set)")
  src.add_argument("--video", metavar="PATH", help="a video file or a folder of frames (needs --mask)")
  src.add_argument("--demo", action="store_true", help="the short DAVIS clip shipped in the package")
  p.add_argument("--set", default="val", help="DAVIS ImageSets/2017/<set>.txt (default: val)")
  p.add_argument("--sequences", nargs="+", metavar="SEQ", help="only these sequences of the set")
  p.add_argument("--resolution", default="480p", help="DAVIS resolution folder (default: 480p)")
  p.add_argument("--mask", metavar="PNG", help="first-frame id mask for --video (indexed PNG, ids 1..K)")
  p.add_argument("--out", required=True, metavar="DIR", help="output folder")
  p.add_argument("--method", default=None, choices=["auto", "vsreid", "propagate"],
                 help="vsreid: propagation + re-identification of lost objects (Algorithm 3); propagate: "
                 "propagation only (Algorithm 1); auto (default): vsreid when detector and ReID weights exist")
  p.add_argument("--detector", default=None, metavar="FILE", help="detector weights (default: shipped)")
  p.add_argument("--reid", default=None, metavar="FILE", help="ReID weights (default: shipped)")
  p.add_argument("--rho-reid", type=float, default=None, metavar="S",
                 help="similarity threshold of re-identification (default: the ReID net's)")
  p.add_argument("--retrieval-rule", default=None, choices=["original", "paper"],
                 help="which pairs re-identification considers: original (lost objects only, the original "
                 "test code; default) or paper (every frame and object: a mask that slid onto something "
                 "else is corrected too)")
  p.add_argument("--max-retrievals", type=int, default=None, metavar="N",
                 help="at most N recover-and-propagate rounds per video (default: 20)")
  p.add_argument("--net", default=None, metavar="NAME|FILE",
                 help="propagation net: default (shipped weights), identity (warp only) or a weights file")
  p.add_argument("--flow", default=None, choices=["dis-ultrafast", "dis-fast", "dis-medium"],
                 help="optical flow backend (default: dis-medium)")
  p.add_argument("--scales", default=None, metavar="M:S,...",
                 help="test scales as margin:crop pairs, e.g. 0.15:449,0.3:449 (averaged)")
  p.add_argument("--no-box", action="store_true", help="run N_mp on the whole frame (no bbox crop)")
  p.add_argument("--flip", action="store_true", help="average with horizontally flipped crops")
  p.add_argument("--online-steps", type=int, default=None, metavar="N",
                 help="fine-tune the net on each video's first frame for N steps before propagating "
                 "(0: off; default from the config: 0)")
  p.add_argument("--save-adapted", metavar="DIR", help="with --online-steps: write each video's adapted "
                 "weights to DIR/<sequence>.msgpack")
  p.add_argument("--flow-cache", metavar="DIR",
                 help="keep computed flow fields and detector/ReID candidates here (.npy/.npz) for reuse")
  p.add_argument("--overlay", action="store_true", help="also write OUT/<sequence>_overlay.mp4")
  p.add_argument("--eval", action="store_true", help="with --davis: evaluate the results afterwards")
  p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_eval(sub):
  p = sub.add_parser("eval", help="J&F of results with the official DAVIS 2017 semi-supervised protocol",
                     description="Evaluates RESULTS/<sequence>/<frame>.png against a DAVIS root's annotations; "
                     "writes global_results-<set>.csv and per-sequence_results-<set>.csv into RESULTS.")
  p.add_argument("--davis", required=True, metavar="ROOT", help="DAVIS-layout root with Annotations")
  p.add_argument("--set", default="val", help="ImageSets/2017/<set>.txt (default: val)")
  p.add_argument("--results", required=True, metavar="DIR", help="folder of result sequences")
  p.add_argument("--sequences", nargs="+", metavar="SEQ", help="only these sequences of the set")
  p.add_argument("--resolution", default="480p", help="DAVIS resolution folder (default: 480p)")
  p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_train(sub):
  from vsreid_jax.configs import PROPAGATION_CONFIGS
  p = sub.add_parser("train", help="train the propagation net N_mp (resumable)",
                     description="Trains N_mp on the DAVIS roots in --data-dir (held-out sequences excluded); "
                     "orbax checkpoints, metrics.csv and metrics.png go to --workdir. After any stop, the same "
                     "command with --resume continues exactly.")
  p.add_argument("--config", default="lite_cpu", choices=sorted(PROPAGATION_CONFIGS))
  p.add_argument("--workdir", required=True, metavar="DIR")
  p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --workdir")
  p.add_argument("--steps", type=int, default=None, help="stop after this global step (schedule unchanged)")
  p.add_argument("--data-dir", default=os.path.join("..", "shared", "data"), metavar="DIR",
                 help="folder holding davis2016-train and davis2016-train-240p (default ../shared/data)")
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
  p.add_argument("--no-progress", action="store_true")


def _add_convert(sub):
  p = sub.add_parser("convert-mask", help="convert an RGB colour mask (DAVIS palette colours) to an indexed PNG")
  p.add_argument("input", help="RGB PNG drawn with DAVIS palette colours")
  p.add_argument("output", help="indexed palette PNG to write")


def build_parser():
  parser = argparse.ArgumentParser(prog="vsreid", description="VS-ReID video object segmentation in JAX.")
  parser.add_argument("--version", action="version", version=f"vsreid-jax {__version__}")
  sub = parser.add_subparsers(dest="command", metavar="COMMAND")
  _add_segment(sub)
  _add_eval(sub)
  _add_train(sub)
  _add_convert(sub)
  return parser


def _segment_config(args):
  from vsreid_jax.configs import segment as segment_config
  config = segment_config.get_config()
  if args.net:
    config.net = args.net
  if args.method:
    config.method = args.method
  if args.detector:
    config.detector = args.detector
  if args.reid:
    config.reid = args.reid
  if args.rho_reid is not None:
    config.solver.rho_reid = args.rho_reid
  if args.retrieval_rule:
    config.solver.retrieval_rule = args.retrieval_rule
  if args.max_retrievals is not None:
    if args.max_retrievals < 0:
      raise InputError(f"--max-retrievals {args.max_retrievals}: must be >= 0")
    config.solver.max_retrievals = args.max_retrievals
  if args.flow:
    config.flow.preset = args.flow.split("-", 1)[1]
  if args.scales:
    config.propagation.scales = segment_config.parse_scales(args.scales)
  config.propagation.use_box = not args.no_box
  if args.flip:
    config.flip = True
  if args.online_steps is not None:
    if args.online_steps < 0:
      raise InputError(f"--online-steps {args.online_steps}: must be 0 (off) or a positive number of steps")
    config.online_steps = args.online_steps
  if args.save_adapted and config.online_steps <= 0:
    raise InputError(f"--save-adapted {args.save_adapted}: nothing to save without --online-steps N (N > 0)")
  return config


def _selected_sequences(ds, args):
  """The sequences of --set, restricted to --sequences when given."""
  names = ds.sequences(args.set)
  if args.sequences:
    unknown = sorted(set(args.sequences) - set(names))
    if unknown:
      raise InputError(f"--sequences: {', '.join(unknown)} not in set {args.set!r} of {ds.root}")
    names = [n for n in names if n in args.sequences]
  return names


def _jobs(args):
  """(sequence name, frames, first-mask path) for every video to segment."""
  from vsreid_jax.data import DavisDataset, open_frames
  if args.davis:
    ds = DavisDataset(args.davis, args.resolution)
    for seq in _selected_sequences(ds, args):
      frames = ds.frames(seq)
      yield seq, frames, ds.annotation_path(seq, frames.names[0])
  elif args.demo:
    seq = "demo"
    frames = open_frames(os.path.join(DEMO_DIR, "JPEGImages"))
    yield seq, frames, os.path.join(DEMO_DIR, "Annotations", frames.names[0] + ".png")
  else:
    if not args.mask:
      raise InputError(f"{args.video}: --video needs --mask FIRST_FRAME.png (an indexed PNG of object ids)")
    frames = open_frames(args.video)
    name = os.path.splitext(os.path.basename(os.path.normpath(args.video)))[0]
    yield name, frames, args.mask


def cmd_segment(args):
  from tqdm import tqdm
  from vsreid_jax.api import Segmenter
  from vsreid_jax.data import read_mask
  from vsreid_jax.data.results import SequenceWriter
  from vsreid_jax.utils import StageTimer, peak_rss_mb

  config = _segment_config(args)
  seg = Segmenter(config, flow_cache_dir=args.flow_cache)
  if seg.method == "vsreid":
    seg.reid_nets()  # bad detector/ReID weights fail here, before any output
  jobs = list(_jobs(args))
  if args.demo:
    print(f"demo clip: {open(os.path.join(DEMO_DIR, 'ATTRIBUTION.txt')).read().strip()}")
  total = StageTimer()
  n_frames = 0
  start = time.perf_counter()
  if config.online_steps > 0 and not seg.can_adapt:
    print(f"--online-steps: net={config.net} has no weights to adapt; propagating without online adaptation")
  for seq, frames, mask_path in jobs:
    state = seg.init_state(frames, name=seq)
    seg.add_mask(state, read_mask(mask_path), source=mask_path)
    info = seg.adapt(state, progress=not args.no_progress)
    if info is not None:
      print(f"{seq}: adapted {info['steps']} steps in {info['seconds']:.1f} s "
            f"(+{info['compile_seconds']:.1f} s compile), loss {info['loss'][0]:.4f} -> {info['loss'][-1]:.4f}")
      if args.save_adapted:
        seg.save_adapted(state, os.path.join(args.save_adapted, f"{seq}.msgpack"))
    with SequenceWriter(args.out, seq, overlay_fps=24.0 if args.overlay else 0.0) as writer:
      bar = tqdm(seg.segment(state, progress=not args.no_progress), total=len(frames), desc=seq, unit="frame",
                 disable=args.no_progress, leave=False)
      for i, ids in bar:
        writer.write(frames.names[i], ids, frames[i] if args.overlay else None)
    total.merge(state.timer)
    n_frames += len(frames)
    print(f"{seq}: {len(frames)} frames, {len(state.object_ids)} objects -> {os.path.join(args.out, seq)}")
    if state.result is not None:
      _report_retrievals(args.out, seq, state)
  wall = time.perf_counter() - start
  print(f"\nmethod={seg.method} net={config.net} flow=dis-{config.flow.preset} scales={seg.propagator.config.scales} "
        f"box={config.propagation.use_box} online_steps={config.online_steps if seg.can_adapt else 0}")
  print(total.table(n_frames))
  print(f"{n_frames} frames in {wall:.1f} s wall ({n_frames / wall:.1f} frames/s end to end, "
        f"{len(jobs)} sequences), peak RSS {peak_rss_mb():.0f} MiB")
  if args.eval and args.davis:
    _run_eval(args, args.out)


def _report_retrievals(out, seq, state):
  """Prints the solver's retrievals and writes them to OUT/<seq>_retrievals.json."""
  from vsreid_jax.solver.algorithm3 import describe, retrieval_log, write_retrievals
  result = state.result
  for r in retrieval_log(result, state.object_ids):
    print(f"  {describe(r)}")
  path = os.path.join(out, f"{seq}_retrievals.json")
  write_retrievals(path, seq, result, state.object_ids)
  print(f"  {len(result.retrievals)} retrievals, {result.net_calls} N_mp calls, solver {result.seconds:.1f} s -> {path}")


def _run_eval(args, results):
  from vsreid_jax.data import DavisDataset
  from vsreid_jax.eval.davis import evaluate_sequences, format_tables, write_csv
  ds = DavisDataset(args.davis, args.resolution)
  result = evaluate_sequences(ds, _selected_sequences(ds, args), results, progress=not args.no_progress)
  paths = write_csv(result, results, args.set)
  print(format_tables(result, args.set))
  print(f"\nwrote {paths[0]} and {paths[1]} ({result.seconds:.1f} s)")


def cmd_eval(args):
  if not os.path.isdir(args.results):
    raise InputError(f"{args.results}: results folder not found")
  _run_eval(args, args.results)


def cmd_train(args):
  from vsreid_jax import configs
  from vsreid_jax.configs import train_propagation
  from vsreid_jax.train import loop
  if not os.path.isdir(args.data_dir):
    raise InputError(f"{args.data_dir}: data folder not found; pass --data-dir DIR holding the DAVIS roots")
  config = train_propagation.get_config(args.config)
  config.data.data_dir = os.path.abspath(args.data_dir)
  for assignment in args.set:
    configs.override(config, assignment)
  out = loop.train(config, args.workdir, resume=args.resume, stop_at=args.steps, progress=not args.no_progress)
  rows = out["train_rows"]
  if rows:
    print(f"step {int(rows[-1]['step'])}: loss {rows[-1]['loss']:.4f}; metrics in {args.workdir}/metrics.csv")


def cmd_convert(args):
  import numpy as np
  from PIL import Image
  from vsreid_jax.data.palette import rgb_to_ids, write_mask
  if not os.path.isfile(args.input):
    raise InputError(f"{args.input}: file not found")
  im = Image.open(args.input)
  if im.mode in ("P", "L"):
    raise InputError(f"{args.input}: is already an indexed ({im.mode}) image; no conversion needed")
  ids = rgb_to_ids(np.array(im.convert("RGB")), args.input)
  write_mask(args.output, ids)
  print(f"{args.output}: ids {sorted(int(i) for i in np.unique(ids) if i)}")


def main(argv=None):
  parser = build_parser()
  args = parser.parse_args(argv)
  if args.command is None:
    parser.print_help()
    return 2
  try:
    {"segment": cmd_segment, "eval": cmd_eval, "train": cmd_train, "convert-mask": cmd_convert}[args.command](args)
  except InputError as e:
    print(f"vsreid: error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print("vsreid: interrupted; sequences not finished were not written", file=sys.stderr)
    return 130
  return 0


if __name__ == "__main__":
  sys.exit(main())
