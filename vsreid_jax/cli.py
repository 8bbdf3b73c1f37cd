"""`vsreid`: segment videos, evaluate results with the DAVIS 2017 protocol, convert masks.

Bad input ends with one line `vsreid: error: <file>: <what is wrong and how to fix it>` and exit
status 2, never a traceback.
"""
import argparse
import os
import sys
import time

from vsreid_jax import __version__
from vsreid_jax import distributed
from vsreid_jax.errors import InputError

DEMO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "demo")


class _Parser(argparse.ArgumentParser):
  """Usage errors on one line too: `vsreid: error: <problem> (see vsreid <command> --help)`."""

  def error(self, message):
    self.exit(2, f"vsreid: error: {message} (see `{self.prog} --help`)\n")


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
  p.add_argument("--mask", metavar="PNG", help="first-frame id mask for --video (indexed PNG, ids 1..K; "
                 "a grey 0/255 PNG is one object)")
  p.add_argument("--resize-mask", action="store_true",
                 help="resize a mask of another size than the frames by nearest neighbour (default: refuse it)")
  p.add_argument("--out", required=True, metavar="DIR", help="output folder")
  p.add_argument("--method", default=None, choices=["auto", "vsreid", "propagate"],
                 help="vsreid: propagation + re-identification of lost objects (Algorithm 3); propagate: "
                 "propagation only (Algorithm 1); auto (default): vsreid when detector and ReID weights exist")
  p.add_argument("--detector", default=None, metavar="FILE", help="detector weights (default: shipped)")
  p.add_argument("--reid", default=None, metavar="FILE", help="ReID weights (default: shipped)")
  p.add_argument("--rho-reid", type=float, default=None, metavar="S",
                 help="similarity threshold of re-identification (default: the ReID net's)")
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
  p.add_argument("--report", action="store_true", help="write the HTML report OUT/report/index.html at the end "
                 "(scores with --davis and --eval)")
  p.add_argument("--num-shards", type=int, metavar="N",
                 help="with --davis: split the set into N shards balanced by frame count, all writing into --out "
                      "(default: the process count of a multi-process job)")
  p.add_argument("--shard", type=int, metavar="I", help="with --num-shards: segment shard I (0..N-1) only "
                 "(default: the process index of a multi-process job)")
  p.add_argument("--no-progress", action="store_true", help="no progress bars")
  distributed.add_arguments(p)


def _add_eval(sub):
  p = sub.add_parser("eval", help="J&F of results with the official DAVIS 2017 semi-supervised protocol",
                     description="Evaluates RESULTS/<sequence>/<frame>.png against a DAVIS root's annotations; "
                     "writes global_results-<set>.csv and per-sequence_results-<set>.csv into RESULTS.")
  p.add_argument("--davis", required=True, metavar="ROOT", help="DAVIS-layout root with Annotations")
  p.add_argument("--set", default="val", help="ImageSets/2017/<set>.txt (default: val)")
  p.add_argument("--results", required=True, metavar="DIR", help="folder of result sequences")
  p.add_argument("--sequences", nargs="+", metavar="SEQ", help="only these sequences of the set")
  p.add_argument("--resolution", default="480p", help="DAVIS resolution folder (default: 480p)")
  p.add_argument("--allow-missing", action="store_true",
                 help="score the sequences present when some have no results yet (a shard still running); "
                      "without it missing sequences are an error, as in the official evaluation")
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
  distributed.add_arguments(p)


def _add_extract_frame(sub):
  p = sub.add_parser("extract-frame", help="write one frame of a video (or frame folder) as a PNG to draw a mask on",
                     description="Writes frame N of a video file or frame folder as a PNG, e.g. to draw the "
                                 "first-frame mask on it with any paint tool.")
  p.add_argument("video", help="a video file or a folder of frames")
  p.add_argument("--frame", type=int, default=0, metavar="N", help="frame index, from 0 (default: 0)")
  p.add_argument("--out", required=True, metavar="PNG", help="the PNG to write")


def _add_report(sub):
  p = sub.add_parser("report", help="a static HTML report of a results folder (open index.html from disk)",
                     description="Writes REPORT_DIR/index.html (+ assets/): a sortable table of the sequences, per "
                     "sequence the overlay video, per-frame J and F per object and a timeline of each object "
                     "(present / lost / re-identified, from <sequence>_retrievals.json); ablation*.csv of "
                     "experiments/ablation.py beside the paper's numbers. No server or network needed.")
  p.add_argument("results", metavar="RESULTS_DIR", help="output folder of vsreid segment or experiments/ablation.py")
  p.add_argument("--out", required=True, metavar="REPORT_DIR", help="report folder (an earlier report is replaced)")
  p.add_argument("--davis", metavar="ROOT", help="DAVIS root with annotations: adds J&F (as vsreid eval) and "
                 "takes the video frames from it")
  p.add_argument("--set", default="val", help="with --davis: ImageSets/2017/<set>.txt (default: val)")
  p.add_argument("--sequences", nargs="+", metavar="SEQ", help="only these sequences")
  p.add_argument("--resolution", default="480p", help="DAVIS resolution folder (default: 480p)")
  p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_convert(sub):
  p = sub.add_parser("convert-mask", help="convert an RGB colour mask (DAVIS palette colours) to an indexed PNG")
  p.add_argument("input", help="RGB PNG drawn with DAVIS palette colours")
  p.add_argument("output", help="indexed palette PNG to write")


def build_parser():
  parser = _Parser(prog="vsreid", description="VS-ReID video object segmentation in JAX.")
  parser.add_argument("--version", action="version", version=f"vsreid-jax {__version__}")
  sub = parser.add_subparsers(dest="command", metavar="COMMAND")
  _add_segment(sub)
  _add_eval(sub)
  _add_train(sub)
  _add_report(sub)
  _add_convert(sub)
  _add_extract_frame(sub)
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
  """(sequence name, frames, first-mask path, inputs, input folders) for every video to segment:
  `inputs` and `input_folders` are what the results may not overlap (`check_destination`)."""
  from vsreid_jax.data import DavisDataset, open_frames, shards
  from vsreid_jax.data.results import sequence_name
  if args.davis:
    ds = DavisDataset(args.davis, args.resolution)
    folders = (os.path.join(ds.root, "JPEGImages"), os.path.join(ds.root, "Annotations"))
    names = _selected_sequences(ds, args)
    all_frames = {seq: ds.frames(seq) for seq in names}
    if args.shard_of is not None:
      shard, num_shards = args.shard_of
      names = shards.assign([(seq, len(all_frames[seq])) for seq in names], num_shards)[shard]
    for seq in names:
      frames = all_frames[seq]
      mask = ds.annotation_path(seq, frames.names[0])
      yield seq, frames, mask, (frames.folder, mask), folders
  elif args.demo:
    seq = "demo"
    frames = open_frames(os.path.join(DEMO_DIR, "JPEGImages"))
    mask = os.path.join(DEMO_DIR, "Annotations", frames.names[0] + ".png")
    yield seq, frames, mask, (frames.folder, mask), (DEMO_DIR,)
  else:
    if not args.mask:
      raise InputError(f"{args.video}: --video needs --mask FIRST_FRAME.png (an indexed PNG of object ids)")
    frames = open_frames(args.video)
    folders = (args.video,) if os.path.isdir(args.video) else ()
    yield sequence_name(args.video), frames, args.mask, (args.video, args.mask), folders


def cmd_segment(args):
  from tqdm import tqdm
  from vsreid_jax.api import Segmenter
  from vsreid_jax.data.palette import read_prompt_mask
  from vsreid_jax.data.results import SequenceWriter, check_destination, clean_stale, inside_any, prepare_dir
  from vsreid_jax.report.layout import write_timing
  from vsreid_jax.solver.algorithm3 import write_retrievals
  from vsreid_jax.utils import StageTimer, peak_rss_mb

  from vsreid_jax.data import shards
  config = _segment_config(args)
  args.shard_of = _shard_of(args)
  for path, option in ((args.out, "--out"), (args.flow_cache, "--flow-cache"), (args.save_adapted, "--save-adapted")):
    if path is not None:
      prepare_dir(path, option)
  jobs = list(_jobs(args))
  for seq, frames, _, inputs, input_folders in jobs:  # every output checked before any work
    if getattr(frames, "note", None):
      print(frames.note)
    for path in (args.flow_cache, args.save_adapted):
      folder = inside_any(path, input_folders) if path is not None else None
      if folder is not None:
        raise InputError(f"{path}: is inside the input folder {folder}; pass a folder outside the inputs")
      if path is not None and inside_any(path, [os.path.join(args.out, seq)]):
        raise InputError(f"{path}: is inside the results folder {os.path.join(args.out, seq)}, which is replaced "
                         "when written; pass a folder outside it")
    check_destination(args.out, seq, inputs, input_folders)
  if args.shard_of is not None:
    shards.check_timing_destination(args.out, *args.shard_of)
    print(f"shard {args.shard_of[0]} of {args.shard_of[1]}: {len(jobs)} sequences, "
          f"{sum(len(frames) for _, frames, *_ in jobs)} frames: {' '.join(seq for seq, *_ in jobs)}")
  for line in clean_stale(args.out):
    print(line)
  seg = Segmenter(config, flow_cache_dir=args.flow_cache)
  if seg.method == "vsreid":
    seg.reid_nets()  # bad detector/ReID weights fail here, before any output
  if args.demo:
    print(f"demo clip: {open(os.path.join(DEMO_DIR, 'ATTRIBUTION.txt')).read().strip()}")
  total = StageTimer()
  n_frames = 0
  start = time.perf_counter()
  if config.online_steps > 0 and not seg.can_adapt:
    print(f"--online-steps: net={config.net} has no weights to adapt; propagating without online adaptation")
  for seq, frames, mask_path, _, _ in jobs:
    seq_start = time.perf_counter()
    state = seg.init_state(frames, name=seq)
    mask, notes = read_prompt_mask(mask_path, frames.size, resize=args.resize_mask)
    for note in notes:
      print(f"note: {note}")
    seg.add_mask(state, mask, source=mask_path)
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
      if state.result is not None:
        write_retrievals(writer.side_path("_retrievals.json"), seq, state.result, state.object_ids)
      write_timing(writer.side_path("_timing.json"), seq, len(frames), len(state.object_ids), state.timer,
                   time.perf_counter() - seq_start)
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
  if args.shard_of is not None:
    os.makedirs(args.out, exist_ok=True)
    paths = shards.write_timing(args.out, *args.shard_of, [seq for seq, *_ in jobs], n_frames, total, wall)
    print(f"shard timing -> {paths[0]}")
  evaluation = _run_eval(args, args.out) if args.eval and args.davis else None
  if args.report:
    _segment_report(args, jobs, evaluation)


def _segment_report(args, jobs, evaluation):
  """segment --report: OUT/report/index.html of the sequences just written."""
  from vsreid_jax.data import DavisDataset
  from vsreid_jax.report import build_report
  dataset = DavisDataset(args.davis, args.resolution) if evaluation is not None else None
  path = build_report(args.out, os.path.join(args.out, "report"), dataset=dataset, subset=args.set,
                      sequences=[seq for seq, *_ in jobs], frames={seq: frames for seq, frames, *_ in jobs},
                      evaluation=evaluation, progress=not args.no_progress)
  print(f"report: {path}")


def _shard_of(args):
  """(I, N) of a sharded `segment --davis` run (flags, else the multi-process job), None if unsharded."""
  from vsreid_jax.data import shards
  distributed.initialize(args.coordinator, args.num_processes, args.process_id, args.distributed)
  shard_of = shards.resolve(args.num_shards, args.shard, distributed.process())
  if shard_of is None:
    return None
  if not args.davis:
    raise InputError("--num-shards/--shard (or a multi-process job) split a dataset: use them with --davis ROOT")
  if args.eval or args.report:
    flag = "--eval" if args.eval else "--report"
    raise InputError(f"{flag}: a shard sees only its own sequences; run `vsreid eval`/`vsreid report` on --out "
                     "once every shard has finished")
  return shard_of


def _report_retrievals(out, seq, state):
  """Prints the solver's retrievals (written to OUT/<seq>_retrievals.json with the results)."""
  from vsreid_jax.solver.algorithm3 import describe, retrieval_log
  result = state.result
  for r in retrieval_log(result, state.object_ids):
    print(f"  {describe(r)}")
  path = os.path.join(out, f"{seq}_retrievals.json")
  print(f"  {len(result.retrievals)} retrievals, {result.net_calls} N_mp calls, solver {result.seconds:.1f} s -> {path}")


def _run_eval(args, results):
  from vsreid_jax.data import DavisDataset
  from vsreid_jax.eval.davis import evaluate_sequences, format_tables, write_csv
  from vsreid_jax.data import shards
  ds = DavisDataset(args.davis, args.resolution)
  names = _selected_sequences(ds, args)
  missing = [seq for seq in names if not os.path.isdir(os.path.join(results, seq))]
  if missing:
    line = (f"{results}: no results for {len(missing)} of {len(names)} sequences of set {args.set!r}: "
            f"{', '.join(_describe_missing(results, seq) for seq in missing)}")
    if len(missing) == len(names):
      raise InputError(f"{line}; nothing to score (segment the set into this folder first)")
    if not getattr(args, "allow_missing", False):
      raise InputError(f"{line}; wait for (or rerun) the shard that segments them, or pass --allow-missing to "
                       f"score the {len(names) - len(missing)} present")
    print(f"warning: {line}; scoring the {len(names) - len(missing)} present (not a score of the whole set, "
          "no CSV files written)")
    names = [seq for seq in names if seq not in missing]
  result = evaluate_sequences(ds, names, results, progress=not args.no_progress)
  print(format_tables(result, args.set))
  if not missing:
    paths = write_csv(result, results, args.set)
    print(f"\nwrote {paths[0]} and {paths[1]} ({result.seconds:.1f} s)")
  timing = shards.merged_timing(results)
  if timing is not None:
    print(f"\n{timing}")
  return result


def _describe_missing(results, seq):
  """A missing sequence's name, and who is writing it when a live run on this host is."""
  from vsreid_jax.data.results import TMP_PREFIX, read_manifest
  prefix = f"{TMP_PREFIX}partial-"
  for entry in sorted(os.listdir(results)):
    if entry.startswith(prefix) and entry[len(prefix):].partition("-")[2].rpartition("-")[0] == seq:
      manifest = read_manifest(os.path.join(results, entry)) or {}
      return f"{seq} (being written by pid {manifest.get('pid', '?')} on {manifest.get('host', '?')})"
  return seq


def cmd_eval(args):
  from vsreid_jax.data.results import inside_any, prepare_dir
  if not os.path.isdir(args.results):
    raise InputError(f"{args.results}: results folder not found")
  prepare_dir(args.results, "--results")  # the CSV files are written into it
  root = os.fspath(args.davis)
  folder = inside_any(args.results, (os.path.join(root, "JPEGImages"), os.path.join(root, "Annotations")))
  if folder is not None:
    raise InputError(f"{args.results}: --results is inside the DAVIS input folder {folder}; the CSV files would "
                     "be written among the inputs, copy the results elsewhere")
  _run_eval(args, args.results)


def cmd_train(args):
  from vsreid_jax import configs
  from vsreid_jax.configs import train_propagation
  from vsreid_jax.train import loop
  from vsreid_jax.data.results import prepare_dir
  # Before anything touches a device: a multi-process job is one job over every process's devices.
  distributed.initialize(args.coordinator, args.num_processes, args.process_id, args.distributed)
  prepare_dir(args.workdir, "--workdir")
  if not os.path.isdir(args.data_dir):
    raise InputError(f"{args.data_dir}: data folder not found; pass --data-dir DIR holding the DAVIS roots")
  config = train_propagation.get_config(args.config)
  config.data.data_dir = os.path.abspath(args.data_dir)
  for assignment in args.set:
    configs.override(config, assignment)
  import jax  # pylint: disable=g-import-not-at-top
  loop.global_batch_size(config.data, jax.device_count())  # a bad batch fails before the workdir is made
  out = loop.train(config, args.workdir, resume=args.resume, stop_at=args.steps, progress=not args.no_progress)
  rows = out["train_rows"]
  if rows and distributed.is_main():
    print(f"step {int(rows[-1]['step'])}: loss {rows[-1]['loss']:.4f}; metrics in {args.workdir}/metrics.csv")


def cmd_report(args):
  from vsreid_jax.data import DavisDataset
  from vsreid_jax.report import build_report
  dataset = DavisDataset(args.davis, args.resolution) if args.davis else None
  if dataset is not None:
    sequences = _selected_sequences(dataset, args)
  elif args.sequences:
    sequences = args.sequences
  else:
    sequences = None
  path = build_report(args.results, args.out, dataset=dataset, subset=args.set, sequences=sequences,
                      progress=not args.no_progress)
  print(f"report: {path} (open it in a browser; no server needed)")


def _is_indexed_png(path) -> bool:
  """Whether `path` is a plain file holding a palette PNG (a mask convert-mask may overwrite)."""
  from PIL import Image
  if os.path.islink(path) or not os.path.isfile(path):
    return False
  try:
    with Image.open(path) as im:
      return im.format == "PNG" and im.mode == "P"
  except Exception:  # pylint: disable=broad-except  (any unreadable file: not a mask)
    return False


def cmd_convert(args):
  import numpy as np
  from PIL import Image
  from vsreid_jax.data.palette import rgb_to_ids, write_mask
  from vsreid_jax.data.results import prepare_dir
  if not os.path.isfile(args.input):
    raise InputError(f"{args.input}: file not found")
  if os.path.isdir(args.output) or not args.output.lower().endswith(".png"):
    raise InputError(f"{args.output}: pass the .png file to write (indexed masks are PNGs)")
  if os.path.exists(args.output) and os.path.samefile(args.input, args.output):
    raise InputError(f"{args.output}: is the input; pass another output file so the colour mask is kept")
  if os.path.lexists(args.output) and not _is_indexed_png(args.output):
    raise InputError(f"{args.output}: exists and is not an indexed mask; refusing to overwrite it, pass a new file")
  prepare_dir(os.path.dirname(os.path.abspath(args.output)), "output")
  try:
    im = Image.open(args.input)
    im.load()
  except Exception as e:  # PIL raises many types for files that are not images.
    raise InputError(f"{args.input}: cannot read image ({e.__class__.__name__}); pass an RGB PNG mask") from None
  if im.mode in ("P", "L"):
    raise InputError(f"{args.input}: is already an indexed ({im.mode}) image; no conversion needed")
  ids = rgb_to_ids(np.array(im.convert("RGB")), args.input)
  write_mask(args.output, ids)
  print(f"{args.output}: ids {sorted(int(i) for i in np.unique(ids) if i)}")


def cmd_extract_frame(args):
  import cv2
  from vsreid_jax.data import open_frames
  frames = open_frames(args.video)
  if not 0 <= args.frame < len(frames):
    raise InputError(f"{args.video}: --frame {args.frame} is outside the video's frames 0..{len(frames) - 1}")
  if not args.out.lower().endswith(".png"):
    raise InputError(f"{args.out}: --out must name a .png file (lossless, so a mask drawn on it keeps its ids)")
  if os.path.realpath(args.out) == os.path.realpath(args.video):
    raise InputError(f"{args.out}: --out is the input itself; choose another file name")
  parent = os.path.dirname(os.path.abspath(args.out))
  if not os.path.isdir(parent):
    raise InputError(f"{args.out}: folder {parent} does not exist; create it first")
  image = frames[args.frame]
  if not cv2.imwrite(args.out, cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
    raise InputError(f"{args.out}: cannot write the PNG (permissions?); choose a writable --out")
  h, w = image.shape[:2]
  print(f"{args.out}: frame {args.frame} of {len(frames)} ({w}x{h}); draw the mask at this size "
        "(ids 1..K on 0 background) and pass it with --mask")


def main(argv=None):
  parser = build_parser()
  args = parser.parse_args(argv)
  if args.command is None:
    parser.print_help()
    return 2
  try:
    {"segment": cmd_segment, "eval": cmd_eval, "train": cmd_train, "report": cmd_report,
     "convert-mask": cmd_convert, "extract-frame": cmd_extract_frame}[args.command](args)
  except InputError as e:
    print(f"vsreid: error: {e}", file=sys.stderr)
    return 2
  except OSError as e:  # a file system failure while writing (disk full, permissions changed meanwhile)
    where = f"{e.filename}: " if e.filename else ""
    print(f"vsreid: error: {where}{e.strerror or e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print("vsreid: interrupted; sequences not finished were not written", file=sys.stderr)
    return 130
  return 0


if __name__ == "__main__":
  sys.exit(main())
