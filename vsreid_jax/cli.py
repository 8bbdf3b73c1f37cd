"""`vsreid`: segment videos, evaluate results with the DAVIS 2017 protocol, convert masks.

Bad input ends with one line `vsreid: error: <file>: <what is wrong and how to fix it>` and exit
status 2, never a traceback.
"""
import argparse
import os
import signal
import sys
import time

from vsreid_jax import __version__
from vsreid_jax import signals
from vsreid_jax import distributed
from vsreid_jax import flow as flow_lib
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
  src.add_argument("--youtube-vos", metavar="ROOT", help="a YouTube-VOS / MOSE split folder (JPEGImages/, "
                   "Annotations/, meta.json): segments every video from its first annotated frame; results in "
                   "OUT/Annotations/<video>/<frame>.png")
  p.add_argument("--set", default="val", help="DAVIS ImageSets/2017/<set>.txt (default: val)")
  p.add_argument("--sequences", nargs="+", metavar="SEQ", help="only these sequences of the set (or videos)")
  p.add_argument("--resolution", default="480p", help="DAVIS resolution folder (default: 480p)")
  p.add_argument("--zip", action="store_true", help="also write OUT/submission.zip: with --youtube-vos "
                 "Annotations/<video>/<frame>.png, what the YouTube-VOS / MOSE servers take; with --davis "
                 "<sequence>/<frame>.png, what the DAVIS challenge server takes (e.g. --set test-dev)")
  p.add_argument("--mask", action="append", metavar="[FRAME:]PNG",
                 help="id mask for --video (indexed PNG, ids 1..K; a grey 0/255 PNG is one object) at frame 0, or "
                 "at FRAME (0-based index) with FRAME:PNG; repeatable: objects first given at a later frame are "
                 "propagated from there (absent before it, unless --backward)")
  p.add_argument("--box", action="append", metavar="[FRAME:]ID:x0,y0,x1,y1",
                 help="with --video: object ID given by its box (pixels; x1, y1 exclusive) at frame 0 or FRAME; its "
                 "mask is made by N_mp's recovery path; repeatable, with or without --mask")
  p.add_argument("--use-all-masks", action="store_true",
                 help="with --davis: also read the annotations after frame 0; an object first appearing in a later "
                 "annotation is added at that frame (--youtube-vos always does this)")
  p.add_argument("--backward", action="store_true",
                 help="also propagate objects given after the first frame backward from their frame to frame 0 "
                 "(default: absent before it)")
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
  p.add_argument("--retrieval-rule", default=None, choices=["original", "paper"],
                 help="which pairs re-identification considers: original (lost objects only, the original "
                 "test code; default) or paper (every frame and object: a mask that slid onto something "
                 "else is corrected too)")
  p.add_argument("--max-retrievals", type=int, default=None, metavar="N",
                 help="at most N recover-and-propagate rounds per video (default: 20)")
  p.add_argument("--net", default=None, metavar="NAME|FILE",
                 help="propagation net: default (shipped weights), identity (warp only) or a weights file")
  p.add_argument("--flow", default=None, choices=flow_lib.NAMES,
                 help=f"optical flow backend (default: {flow_lib.DEFAULT}); raft-* read a torchvision RAFT "
                 "state_dict given with --override flow_weights=FILE.pth")
  p.add_argument("--scales", default=None, metavar="M:S,...",
                 help="test scales as margin:crop pairs, e.g. 0.15:449,0.3:449 (averaged)")
  p.add_argument("--no-box", action="store_true", help="run N_mp on the whole frame (no bbox crop)")
  p.add_argument("--flip", action="store_true", help="average with horizontally flipped crops")
  p.add_argument("--max-size", type=int, default=None, metavar="N",
                 help="segment frames shrunk so the long side is at most N pixels (less memory and time); "
                 "masks are written at the input size (nearest-neighbour upsampling)")
  add_test_time_switches(p)
  p.add_argument("--online-steps", type=int, default=None, metavar="N",
                 help="fine-tune the net on each video's first frame for N steps before propagating "
                 "(0: off; default from the config: 0)")
  p.add_argument("--save-adapted", metavar="DIR", help="with --online-steps: write each video's adapted "
                 "weights to DIR/<sequence>.msgpack")
  p.add_argument("--flow-cache", metavar="DIR",
                 help="keep computed flow fields and detector/ReID candidates here (.npy/.npz) for reuse")
  p.add_argument("--overlay", action="store_true", help="also write the overlay video OUT/<sequence>_overlay.mp4 "
                 "(H.264) or .webm (VP9), whichever this OpenCV can encode, at the source size and frame rate")
  p.add_argument("--fps", type=float, default=None, metavar="F", help="frame rate of the overlay video (default: "
                 "the video's own; 24 for frame folders)")
  p.add_argument("--per-object", action="store_true", help="also write each object's binary mask (0/255 PNG) "
                 "to OUT/<sequence>/objects/<id>/<frame>.png")
  p.add_argument("--eval", action="store_true", help="with --davis: evaluate the results afterwards")
  p.add_argument("--report", action="store_true", help="write the HTML report OUT/report/index.html at the end "
                 "(scores with --davis and --eval)")
  p.add_argument("--num-shards", type=int, metavar="N",
                 help="with --davis: split the set into N shards balanced by frame count, all writing into --out "
                      "(default: the process count of a multi-process job)")
  p.add_argument("--shard", type=int, metavar="I", help="with --num-shards: segment shard I (0..N-1) only "
                 "(default: the process index of a multi-process job)")
  p.add_argument("--no-progress", action="store_true", help="no progress bars")
  p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                 help="set a field of configs/segment.py, after the options above (repeatable), e.g. "
                 "propagation.lost_ratio=0.05; an unknown key is an error")
  p.add_argument("--no-compile-cache", action="store_true",
                 help="do not use the persistent compilation cache (~/.cache/vsreid_jax/xla, or "
                 "$VSREID_COMPILE_CACHE; VSREID_COMPILE_CACHE=0 also turns it off)")
  distributed.add_arguments(p)


def add_test_time_switches(p):
  """--preset and the switches of the test-time extensions (README "The paper's test-time setting");
  `vsreid segment` and experiments/ablation.py share them."""
  p.add_argument("--preset", default=None, choices=["paper"],
                 help="paper: the paper's test-time behaviour (no flip, one recovery pass, the paper's "
                 "per-pair retrieval rule, no lost-area rule, no retrieval cap, the net's test scales); "
                 "switches given with it refine it")
  p.add_argument("--no-flip", action="store_true", help="no flip averaging, whatever the net's config says")
  p.add_argument("--recover-passes", type=int, default=None, metavar="N",
                 help="N_mp passes at a retrieved box: the guided one + N-1 fed back (default 5; paper 1)")
  p.add_argument("--lost-ratio", type=float, default=None, metavar="R",
                 help="an object below R x its first-frame area is lost and stops propagating "
                 "(default 0.1, the original code's; 0: only an empty mask is lost)")
  if "--retrieval-rule" not in p._option_string_actions:  # pylint: disable=protected-access
    # (segment's own parser may define it beside --rho-reid: one definition, whichever came first)
    p.add_argument("--retrieval-rule", default=None, choices=["original", "paper"],
                   help="Algorithm 2: original (lost objects only, the original test code; default) or "
                   "paper (every frame-object pair)")


def apply_test_time_switches(config, args):
  """The preset first, then each switch given (a segment ConfigDict, changed in place)."""
  from vsreid_jax.configs import segment as segment_config
  get = lambda name: getattr(args, name, None)  # callers' namespaces may lack switches they never add
  if get("preset"):
    segment_config.apply_preset(config, args.preset)
  if get("no_flip"):
    if get("flip"):
      raise InputError("--flip and --no-flip: choose one")
    config.flip = False
  if get("recover_passes") is not None:
    if args.recover_passes < 1:
      raise InputError(f"--recover-passes {args.recover_passes}: must be >= 1 (the guided pass)")
    config.solver.recover_passes = args.recover_passes
  if get("lost_ratio") is not None:
    if not 0.0 <= args.lost_ratio < 1.0:
      raise InputError(f"--lost-ratio {args.lost_ratio}: must be in [0, 1)")
    config.propagation.lost_ratio = args.lost_ratio
  if get("retrieval_rule"):
    config.solver.retrieval_rule = args.retrieval_rule


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
  from vsreid_jax import configs
  p = sub.add_parser("train", help="train N_mp, the detector or the ReID net (resumable)",
                     description="Trains a net (--net) on the DAVIS roots in --data-dir (held-out sequences "
                     "excluded) or on the datasets --dataset names (validated on, or for the retrieval nets held out: --val-dataset); orbax checkpoints and metrics go to --workdir. After any stop, the same "
                     "command with --resume continues exactly.")
  p.add_argument("--net", default="propagation", choices=["propagation", "detector", "reid"],
                 help="propagation: N_mp (default); detector, reid: the retrieval nets of Algorithm 2")
  p.add_argument("--config", default=None, help=f"propagation: {', '.join(configs.names('train'))} "
                 "(default lite_cpu); detector: lite_cpu, r50_fpn (default lite_cpu); reid: reid_lite_cpu")
  p.add_argument("--workdir", required=True, metavar="DIR")
  p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --workdir")
  p.add_argument("--steps", type=int, default=None, help="stop after this global step (schedule unchanged)")
  p.add_argument("--data-dir", default=None, metavar="DIR", help="folder holding davis2016-train and "
                 "davis2016-train-240p (default: ../shared/data beside the repository checkout, wherever the "
                 "command runs; a path given here is relative to the current folder)")
  p.add_argument("--dataset", action="append", default=[], metavar="SPEC",
                 help="train on this dataset instead of --data-dir's DAVIS-2016 split (repeatable; every net): "
                 "davis:ROOT[:RES[:SET]] (a DAVIS-2017-layout root, resolution folder RES, default 480p, set file "
                 "ImageSets/2017/SET.txt, default train; multi-object masks) or youtube-vos:ROOT (a YouTube-VOS "
                 "split folder with a mask at every frame, e.g. youtube-vos/train); needs --val-dataset")
  p.add_argument("--val-dataset", action="append", default=[], metavar="SPEC",
                 help="validate on this dataset (repeatable; same forms, the davis SET defaults to val), e.g. "
                 "davis:DAVIS:480p:val; its sequences must not be training ones (detector, reid: held out)")
  p.add_argument("--export", metavar="FILE", help="detector, reid: write the float16 inference weights here "
                 "at the end (what segment --detector/--reid load)")
  p.add_argument("--override", "--set", dest="override", action="append", default=[], metavar="KEY=VALUE",
                 help="set a field of the net's training config (repeatable; --set is an alias), e.g. "
                 "optimizer.lr=3e-4; an unknown key is an error")
  p.add_argument("--stage", default=None, choices=["rgb_static", "rgb", "flow", "joint"],
                 help="propagation: the paper's training stages (train/stages.py): rgb_static (RGB stream, "
                 "single frames with deformed GT masks as the guide), rgb (RGB stream on DAVIS pairs), flow "
                 "(flow stream initialised from the RGB stream), joint (both streams; default)")
  p.add_argument("--init-from", default=None, metavar="WORKDIR",
                 help="start from the previous stage's workdir (rgb <- rgb_static <- ..., joint <- flow)")
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
  from vsreid_jax import configs
  from vsreid_jax.configs import segment as segment_config
  config = configs.get("segment")
  apply_test_time_switches(config, args)
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
    config.flow = args.flow
  if args.scales:
    config.propagation.scales = segment_config.parse_scales(args.scales)
  config.propagation.use_box = not args.no_box
  if args.flip:
    config.flip = True
  if args.online_steps is not None:
    if args.online_steps < 0:
      raise InputError(f"--online-steps {args.online_steps}: must be 0 (off) or a positive number of steps")
    config.online_steps = args.online_steps
  if args.max_size is not None:
    from vsreid_jax.memory import MIN_MAX_SIZE
    if args.max_size < MIN_MAX_SIZE:
      raise InputError(f"--max-size {args.max_size}: must be at least {MIN_MAX_SIZE} pixels (the long side to "
                       "segment at)")
    config.max_size = args.max_size
  for assignment in args.override:
    configs.override(config, assignment)
  if args.save_adapted and config.online_steps <= 0:
    raise InputError(f"--save-adapted {args.save_adapted}: nothing to save without --online-steps N (N > 0)")
  if args.fps is not None:
    if not 0 < args.fps < float("inf"):
      raise InputError(f"--fps {args.fps}: must be a positive number of frames per second, e.g. 24")
    config.overlay_fps = args.fps
  return config


def _overlay_fps(args, config, frames) -> float:
  """The overlay's frame rate: --fps, else the video's own, else the config's (frame folders)."""
  if args.fps is not None:
    return args.fps
  return getattr(frames, "fps", 0.0) or float(config.overlay_fps)


def _selected_sequences(ds, args):
  """The sequences of --set, restricted to --sequences when given."""
  names = ds.sequences(args.set)
  if args.sequences:
    unknown = sorted(set(args.sequences) - set(names))
    if unknown:
      raise InputError(f"--sequences: {', '.join(unknown)} not in set {args.set!r} of {ds.root}")
    names = [n for n in names if n in args.sequences]
  return names


def _results_dir(args) -> str:
  """Where segment writes OUT/<sequence>/: OUT itself, or OUT/Annotations for --youtube-vos."""
  from vsreid_jax.data import youtube_vos
  return os.path.join(args.out, youtube_vos.RESULTS_DIR) if args.youtube_vos else args.out


def _mask_arg(text: str):
  """--mask [FRAME:]PNG -> (frame index, path); a path that exists is taken whole (it may hold a colon)."""
  if os.path.exists(text) or ":" not in text:
    return 0, text
  head, path = text.split(":", 1)
  try:
    return int(head), path
  except ValueError:
    raise InputError(f"--mask {text}: FRAME {head!r} is not an integer; pass --mask FRAME:PNG (FRAME a 0-based "
                     "frame index) or --mask PNG for frame 0") from None


def _box_arg(text: str):
  """--box [FRAME:]ID:x0,y0,x1,y1 -> (frame index, object id, (x0, y0, x1, y1))."""
  fix = "pass --box [FRAME:]ID:x0,y0,x1,y1, e.g. --box 1:10,20,110,220 or --box 5:2:10,20,110,220"
  parts = text.split(":")
  if len(parts) not in (2, 3):
    raise InputError(f"--box {text}: expected 2 or 3 fields separated by ':'; {fix}")
  *frame, oid, coords = parts
  try:
    frame_idx = int(frame[0]) if frame else 0
  except ValueError:
    raise InputError(f"--box {text}: FRAME {frame[0]!r} is not an integer; {fix}") from None
  try:
    oid = int(oid)
  except ValueError:
    raise InputError(f"--box {text}: ID {oid!r} is not an integer; {fix}") from None
  try:
    box = tuple(float(v) for v in coords.split(","))
  except ValueError:
    box = ()
  if len(box) != 4:
    raise InputError(f"--box {text}: {coords!r} is not 4 numbers x0,y0,x1,y1; {fix}")
  return frame_idx, oid, box


def _later_annotations(ds, seq, names):
  """--use-all-masks: (frame index, annotation path, "new") for each annotated frame after the first."""
  prompts = []
  for i, name in enumerate(names[1:], 1):
    path = ds.annotation_path(seq, name)
    if os.path.isfile(path):
      prompts.append((i, path, "new"))
  return prompts


def _jobs(args):
  """(sequence name, frames, prompts, inputs, input folders, names of frames before the prompt
  frame) for every video to segment: prompts are (frame index, mask path, which ids: None for all,
  "new" for those not given before, or a set), in frame order; `inputs` and `input_folders` are
  what the results may not overlap (`check_destination`); frames before the prompt frame are
  written as background."""
  from vsreid_jax.data import DavisDataset, open_frames, shards
  from vsreid_jax.data.results import sequence_name
  if args.mask and not args.video:
    raise InputError("--mask: only with --video (dataset roots read their Annotations/; --use-all-masks reads "
                     "those after frame 0)")
  if args.box and not args.video:
    raise InputError("--box: only with --video; pass the video or frame folder with --video")
  if args.use_all_masks and (args.video or args.demo):
    raise InputError("--use-all-masks: only with --davis or --youtube-vos; with --video pass each mask as "
                     "--mask FRAME:PNG")
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
      prompts = [(0, mask, None)] + (_later_annotations(ds, seq, frames.names) if args.use_all_masks else [])
      yield seq, frames, prompts, (frames.folder,) + tuple(p for _, p, _ in prompts), folders, ()
  elif args.youtube_vos:
    from vsreid_jax.data import youtube_vos
    ds = youtube_vos.YouTubeVOSDataset(args.youtube_vos)
    videos = ds.videos()
    if args.sequences:
      unknown = sorted(set(args.sequences) - set(videos))
      if unknown:
        raise InputError(f"--sequences: {', '.join(unknown)} not among the videos of {ds.root}")
      videos = [v for v in videos if v in args.sequences]
    for video in videos:
      prompt = ds.prompt(video)
      if prompt.later:
        print(youtube_vos.later_objects_note(video, prompt))
      frames = ds.frames_from(video, prompt.frame_index)
      before = ds.frames(video).names[:prompt.frame_index]
      prompts = [(0, prompt.mask_path, None)]
      for name in sorted(set(prompt.later.values()), key=frames.names.index):  # each object at its first frame
        prompts.append((frames.names.index(name), ds.annotation_path(video, name),
                        {oid for oid, first in prompt.later.items() if first == name}))
      yield (video, frames, prompts, (frames.folder,) + tuple(p for _, p, _ in prompts), (ds.image_dir, ds.anno_dir),
             before)
  elif args.demo:
    seq = "demo"
    frames = open_frames(os.path.join(DEMO_DIR, "JPEGImages"))
    mask = os.path.join(DEMO_DIR, "Annotations", frames.names[0] + ".png")
    yield seq, frames, [(0, mask, None)], (frames.folder, mask), (DEMO_DIR,), ()
  else:
    if not args.mask and not args.box:
      raise InputError(f"{args.video}: --video needs --mask FIRST_FRAME.png (an indexed PNG of object ids) or "
                       "--box ID:x0,y0,x1,y1")
    masks = sorted((_mask_arg(m) for m in args.mask or ()), key=lambda p: p[0])
    _ = [_box_arg(b) for b in args.box or ()]  # a bad --box fails here, before any work
    frames = open_frames(args.video)
    folders = (args.video,) if os.path.isdir(args.video) else ()
    yield (sequence_name(args.video), frames, [(i, path, None) for i, path in masks],
           (args.video,) + tuple(path for _, path in masks), folders, ())


def _add_prompts(seg, state, prompts, boxes, size, resize: bool) -> None:
  """Adds a job's masks (`_jobs`) and --box prompts to `state`, printing the notes of reading."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from vsreid_jax.data.palette import VOID_ID, read_prompt_mask  # pylint: disable=g-import-not-at-top
  for frame_idx, path, which in prompts:
    mask, notes = read_prompt_mask(path, size, resize=resize)
    for note in notes:
      print(f"note: {note}")
    present = set(int(i) for i in np.unique(mask)) - {0, VOID_ID}
    if which == "new":  # a dataset's later annotation: only objects not given before
      which = present - set(state.prompts)
      if not which:
        continue
    elif which is not None and not which <= present:
      raise InputError(f"{path}: object(s) {', '.join(str(i) for i in sorted(which - present))} first appear at "
                       "this frame (meta.json) but the mask has no pixel of them; fix the annotation or meta.json")
    if which is not None:
      mask = np.where(np.isin(mask, sorted(which)), mask, 0).astype(np.uint8)
    seg.add_mask(state, mask, frame_idx, source=path)
  for text in boxes:
    frame_idx, oid, box = _box_arg(text)
    seg.add_box(state, box, frame_idx, oid, source=f"--box {text}")


def cmd_segment(args):
  if not args.no_compile_cache:  # before anything compiles
    from vsreid_jax.utils import enable_compile_cache  # pylint: disable=g-import-not-at-top
    enable_compile_cache()
  import functools
  from vsreid_jax.api import Segmenter, SequenceJob, segment_dataset
  from vsreid_jax.data.results import check_destination, clean_stale, inside_any, overlay_suffix, prepare_dir
  from vsreid_jax.utils import StageTimer, peak_rss_mb

  from vsreid_jax.data import shards
  config = _segment_config(args)
  args.shard_of = _shard_of(args)
  for path, option in ((args.out, "--out"), (args.flow_cache, "--flow-cache"), (args.save_adapted, "--save-adapted")):
    if path is not None:
      prepare_dir(path, option)
  jobs = list(_jobs(args))
  if args.report and args.youtube_vos:
    raise InputError("--report: not available with --youtube-vos yet (its results are sparse); run without it")
  if args.zip and not (args.youtube_vos or args.davis):
    raise InputError("--zip: only with --davis or --youtube-vos (the submission layouts of their servers)")
  out = _results_dir(args)
  for seq, frames, _, inputs, input_folders, _ in jobs:  # every output checked before any work
    if getattr(frames, "note", None):
      print(frames.note)
    for path in (args.flow_cache, args.save_adapted):
      folder = inside_any(path, input_folders) if path is not None else None
      if folder is not None:
        raise InputError(f"{path}: is inside the input folder {folder}; pass a folder outside the inputs")
      if path is not None and inside_any(path, [os.path.join(out, seq)]):
        raise InputError(f"{path}: is inside the results folder {os.path.join(out, seq)}, which is replaced "
                         "when written; pass a folder outside it")
    check_destination(out, seq, inputs, input_folders)
  if args.overlay:
    overlay_suffix()  # no browser codec: refused before any work
  if args.shard_of is not None:
    shards.check_timing_destination(out, *args.shard_of)
    print(f"shard {args.shard_of[0]} of {args.shard_of[1]}: {len(jobs)} sequences, "
          f"{sum(len(frames) for _, frames, *_ in jobs)} frames: {' '.join(seq for seq, *_ in jobs)}")
  for line in clean_stale(out):
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

  def add_prompts(prompts, size, seg_, state):
    _add_prompts(seg_, state, prompts, args.box or (), size, args.resize_mask)

  def check_memory(state, job):
    frames = job.frames
    seg.check_memory(state, source=getattr(frames, "folder", None) or getattr(frames, "path_", job.name))

  videos = [SequenceJob(name=seq, frames=frames, before=before,
                        prompts=functools.partial(add_prompts, prompts, frames.size),
                        overlay_fps=_overlay_fps(args, config, frames) if args.overlay else 0.0)
            for seq, frames, prompts, _, _, before in jobs]
  for done in segment_dataset(seg, videos, out, per_object=args.per_object, progress=not args.no_progress,
                              backward=args.backward, prepare=check_memory):
    seq, frames, state, info = done.job.name, done.job.frames, done.state, done.adapted
    if info is not None:
      print(f"{seq}: adapted {info['steps']} steps in {info['seconds']:.1f} s "
            f"(+{info['compile_seconds']:.1f} s compile), loss {info['loss'][0]:.4f} -> {info['loss'][-1]:.4f}")
      if args.save_adapted:
        seg.save_adapted(state, os.path.join(args.save_adapted, f"{seq}.msgpack"))
    total.merge(state.timer)
    n_frames += len(frames)
    print(f"{seq}: {len(frames)} frames, {len(state.object_ids)} objects -> {os.path.join(out, seq)}")
    if state.result is not None:
      _report_retrievals(out, seq, state)
    _print_outputs(done.writer, done.job.overlay_fps)
  wall = time.perf_counter() - start
  print(f"\nmethod={seg.method} net={config.net} flow={config.flow} scales={seg.propagator.config.scales} "
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
  if args.zip:
    from vsreid_jax.data import youtube_vos
    from vsreid_jax.data.davis import DavisDataset
    if args.youtube_vos:
      path = youtube_vos.write_submission(args.out, [seq for seq, *_ in jobs],
                                          youtube_vos.YouTubeVOSDataset(args.youtube_vos))
      print(f"submission: {path} (Annotations/<video>/<frame>.png of {len(jobs)} videos)")
    else:  # the DAVIS challenge servers take <sequence>/<frame>.png at the root of the zip
      path = youtube_vos.write_submission(args.out, [seq for seq, *_ in jobs],
                                          DavisDataset(args.davis, args.resolution), folder="")
      print(f"submission: {path} (<sequence>/<frame>.png of {len(jobs)} sequences)")


def _print_outputs(writer, fps: float) -> None:
  """Where each output of a sequence went (the side files as the manifest lists them)."""
  out = writer.out_dir
  print(f"  masks: {writer.final}{os.sep} ({writer.count} palette PNGs)")
  if writer.objects_dir:
    print(f"  per-object masks: {os.path.join(writer.objects_dir, '<id>', '<frame>.png')} "
          f"(ids {', '.join(str(i) for i in writer.object_ids)}; 0/255)")
  for name in writer.manifest["side_files"]:
    path = os.path.join(out, name)
    if name.endswith(("_overlay.mp4", "_overlay.webm")):
      print(f"  overlay: {path} ({'H.264 MP4' if name.endswith('.mp4') else 'VP9 WebM'}, {fps:g} fps)")
    elif name.endswith("_retrievals.json"):
      print(f"  retrieval log: {path}")
    elif name.endswith("_timing.json"):
      print(f"  timing: {path}")


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
  if args.zip:
    raise InputError("--zip: a shard sees only its own sequences; zip --out once every shard has finished "
                     "(`cd OUT && zip -r submission.zip */*.png`)")
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
  from vsreid_jax.data.splits import shared_data_dir
  from vsreid_jax.data.results import prepare_dir
  # Before anything touches a device: a multi-process job is one job over every process's devices.
  distributed.initialize(args.coordinator, args.num_processes, args.process_id, args.distributed)
  prepare_dir(args.workdir, "--workdir")
  named = args.dataset or args.val_dataset
  datasets, val_datasets = (), ()
  if named:
    from vsreid_jax.data import training_sets  # pylint: disable=g-import-not-at-top
    if not args.dataset or not args.val_dataset:
      raise InputError("--dataset and --val-dataset go together: name the training datasets and the validation "
                       "one (e.g. --dataset davis:DAVIS:480p:train --val-dataset davis:DAVIS:480p:val)")
    if args.data_dir:
      raise InputError("--data-dir with --dataset: the named datasets replace --data-dir's DAVIS-2016 split; "
                       "pass one or the other")
    specs = [training_sets.parse(t, "train", "--dataset") for t in args.dataset]
    val_specs = [training_sets.parse(t, "val", "--val-dataset") for t in args.val_dataset]
    datasets, val_datasets = tuple(map(str, specs)), tuple(map(str, val_specs))
    # A missing root, folder or set file, or a validation sequence also trained on, fails here, before jax loads.
    training_sets.split(datasets, val_datasets)
  else:
    args.data_dir = args.data_dir or str(shared_data_dir())
    if not os.path.isdir(args.data_dir):
      raise InputError(f"{args.data_dir}: data folder not found; pass --data-dir DIR holding the DAVIS roots")
  if args.net != "propagation":
    return _train_retrieval_net(args, datasets, val_datasets)
  if args.export:
    raise InputError(f"--export {args.export}: for --net propagation use experiments/export_weights.py "
                     "--workdir WORKDIR --out FILE --float16")
  # The stage sets several fields (streams, priors): applied first, so --override can still refine them.
  stage = args.stage or next((a.split("=", 1)[1] for a in reversed(args.override) if a.startswith("stage=")),
                             "joint")
  from vsreid_jax.train import stages  # pylint: disable=g-import-not-at-top
  if (args.config or "lite_cpu") not in configs.names("train"):
    raise InputError(f"--config {args.config}: not a propagation config; one of {', '.join(configs.names('train'))}")
  config = configs.get("train", args.config or "lite_cpu")
  stages.apply_stage(config, stage)
  if named:
    config.data.datasets, config.data.val_datasets = datasets, val_datasets
  else:
    config.data.data_dir = os.path.abspath(args.data_dir)
  for assignment in args.override:
    if not assignment.startswith("stage="):
      configs.override(config, assignment)
  if args.init_from:
    config.init.from_stage_workdir = os.path.abspath(args.init_from)
  import jax  # pylint: disable=g-import-not-at-top
  from vsreid_jax.train import loop  # after the config checks: a bad key fails before jax loads
  loop.global_batch_size(config.data, jax.device_count())  # a bad batch fails before the workdir is made
  out = loop.train(config, args.workdir, resume=args.resume, stop_at=args.steps, progress=not args.no_progress)
  rows = out["train_rows"]
  if rows and distributed.is_main():
    print(f"step {int(rows[-1]['step'])}: loss {rows[-1]['loss']:.4f}; metrics in {args.workdir}/metrics.csv")


def _train_retrieval_net(args, datasets=(), val_datasets=()):
  """vsreid train --net detector|reid (vsreid_jax/retrieval_nets.py), on --data-dir's DAVIS-2016
  split or on the named `datasets` (canonical strings; `val_datasets` held out)."""
  from vsreid_jax import retrieval_nets
  if args.export:
    if not args.export.endswith(".msgpack") or os.path.isdir(args.export):
      raise InputError(f"--export {args.export}: pass the .msgpack weights file to write")
    parent = os.path.dirname(os.path.abspath(args.export))
    if not os.path.isdir(parent) and parent != os.path.abspath(args.workdir):  # the run makes its workdir
      raise InputError(f"--export {args.export}: folder {parent} does not exist; create it first")
  kw = dict(resume=args.resume, steps=args.steps, export=args.export, progress=not args.no_progress)
  if args.net == "detector":
    config = retrieval_nets.detector_config(args.config or "lite_cpu", args.override)
  else:
    config = retrieval_nets.reid_config(args.config or "reid_lite_cpu", args.override)
  if datasets:
    config.data.datasets, config.data.val_datasets = datasets, val_datasets
  data_dir = os.path.abspath(args.data_dir) if args.data_dir else ""
  train = retrieval_nets.train_detector if args.net == "detector" else retrieval_nets.train_reid
  train(config, args.workdir, data_dir, **kw)


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
  """Runs one command; returns the exit status. Called as the program (argv None), an interrupt
  (SIGINT or SIGTERM) ends the process at once after the cleanup (`signals.hard_exit`)."""
  parser = build_parser()
  args = parser.parse_args(argv)
  if args.command is None:
    parser.print_help()
    return 2
  try:
    with signals.handled():
      {"segment": cmd_segment, "eval": cmd_eval, "train": cmd_train, "report": cmd_report,
       "convert-mask": cmd_convert, "extract-frame": cmd_extract_frame}[args.command](args)
  except InputError as e:
    print(f"vsreid: error: {e}", file=sys.stderr)
    return 2
  except OSError as e:  # a file system failure while writing (disk full, permissions changed meanwhile)
    where = f"{e.filename}: " if e.filename else ""
    print(f"vsreid: error: {where}{e.strerror or e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt as e:
    code = e.exit_code if isinstance(e, signals.Interrupted) else 128 + signal.SIGINT
    what = "interrupted" if code == 128 + signal.SIGINT else f"stopped by {signal.Signals(code - 128).name}"
    done = {"segment": "sequences not finished were not written",
            "train": "the last checkpoint stands; --resume continues"}.get(args.command, "nothing was written")
    print(f"vsreid: {what}; {done}", file=sys.stderr)
    if argv is None:
      signals.hard_exit(code)
    return code
  return 0


if __name__ == "__main__":
  sys.exit(main())
