"""Builds the static HTML report of a results folder (`vsreid report`, `vsreid segment --report`).

REPORT_DIR/index.html opens from disk in any browser, without a server or network: the page is
self-contained (inline CSS and the few lines of JavaScript that sort the table) and refers only
to files in REPORT_DIR/assets/ (small videos, JPEG thumbnails, matplotlib PNGs). REPORT_DIR/report.json
holds the table's figures unrounded. Scores come from the project's evaluator (eval/davis.py),
the very code `vsreid eval` runs, so the report's table and `vsreid eval`'s CSV files agree.

Per sequence, "lost" means the object has no pixel in the written mask of a frame, and
"re-identified" a frame whose mask of the object a retrieval of the solver's log rewrote.
"""
import csv
import dataclasses
import glob
import os
import shutil
import tempfile
from typing import Dict, List, Optional

import cv2
import numpy as np
from tqdm import tqdm

from vsreid_jax.configs import report as report_config
from vsreid_jax.data.frames import VideoFrames
from vsreid_jax.data.palette import PALETTE, read_mask
from vsreid_jax.data.results import overlay
from vsreid_jax.errors import InputError
from vsreid_jax.eval.davis import EvalResult, evaluate_sequences, summarize
from vsreid_jax.data import media
from vsreid_jax.report import layout, page, plots

ASSETS = "assets"
MASK_BACKGROUND = 48  # grey level behind the masks when no frames are at hand


@dataclasses.dataclass
class SequenceReport:
  """What the page shows of one sequence; paths are relative to the report folder."""
  name: str
  frames: int
  object_ids: List[int]
  states: np.ndarray  # int [K, T]: plots.LOST / PRESENT / REIDENTIFIED
  retrievals: Optional[List[dict]]  # None: no retrieval log (propagation only)
  timing: Optional[dict]
  scores: Optional[Dict[str, float]]  # GLOBAL_COLUMNS of this sequence's objects
  video: Optional[str]
  video_mime: Optional[str]
  poster: str
  plot: str
  frame_source: str
  thumbs: List[str] = dataclasses.field(default_factory=list)  # one per retrieval

  @property
  def fps(self) -> Optional[float]:
    return (self.timing or {}).get("frames_per_second")


@dataclasses.dataclass
class AblationTable:
  name: str  # the CSV file name
  caption: str  # first line of the matching .md (sequences, objects, set)
  columns: List[str]
  rows: List[List[str]]
  plot: str


def _states(masks: np.ndarray, object_ids, retrievals) -> np.ndarray:
  """[K, T] states from the written masks [T, H, W] and the retrieval log."""
  states = np.zeros((len(object_ids), len(masks)), np.int64)
  for row, obj in enumerate(object_ids):
    present = (masks == obj).any(axis=(1, 2))
    rewritten = np.zeros(len(masks), bool)
    for r in retrievals or ():
      if r.get("object_id") == obj:
        rewritten[r["frames_rewritten"]] = True
    states[row] = np.where(present, np.where(rewritten, plots.REIDENTIFIED, plots.PRESENT), plots.LOST)
  return states


def _check_log(path: str, log: Optional[dict], n_frames: int) -> Optional[List[dict]]:
  """The retrievals of a log of algorithm3.write_retrievals, checked against the masks' frame count."""
  if log is None:
    return None
  retrievals = log.get("retrievals") if isinstance(log, dict) else None
  if not isinstance(retrievals, list) or not all(
      isinstance(r, dict) and {"frame", "object_id", "score", "frames_rewritten"} <= set(r) for r in retrievals):
    raise InputError(f"{path}: not a retrieval log of `vsreid segment` (needs retrievals with frame, object_id, "
                     "score, frames_rewritten); delete it or rerun the segmentation")
  for r in retrievals:
    if not all(0 <= i < n_frames for i in [r["frame"], *r["frames_rewritten"]]):
      raise InputError(f"{path}: retrieval at frame {r['frame']} is outside the {n_frames} result frames; "
                       "the log belongs to another run (rerun the segmentation)")
  return retrievals


def _frame_source(results_dir, seq, n, dataset, frames):
  """(frames or None, already overlaid?, description) for the sequence's video."""
  if frames is not None and seq in frames:
    return frames[seq], False, "the input frames"
  if dataset is not None:
    return dataset.frames(seq), False, f"frames of {dataset.root}"
  path = layout.overlay_path(results_dir, seq)
  if os.path.isfile(path):
    video = VideoFrames(path)
    if len(video) == n:
      return video, True, os.path.basename(path)
  return None, False, "masks only (no frames: pass --davis, or segment with --overlay)"


def _draw_box(image: np.ndarray, box, scale: float, colour) -> np.ndarray:
  """The image with a box given in full-frame pixels (the image is the frame times `scale`)."""
  out = image.copy()
  x0, y0, x1, y1 = (int(round(v * scale)) for v in box)
  thickness = max(1, image.shape[1] // 128)
  cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), tuple(int(c) for c in colour), thickness)
  return out


def _sequence(results_dir, out_dir, seq, dataset, frames, evaluation, config) -> SequenceReport:
  names = layout.mask_names(results_dir, seq)
  if not names:
    raise InputError(f"{os.path.join(results_dir, seq)}: no PNG masks in the result sequence folder")
  masks = np.stack([read_mask(os.path.join(results_dir, seq, n + ".png")) for n in names])
  log_path = layout.retrievals_path(results_dir, seq)
  retrievals = _check_log(log_path, layout.read_json(log_path), len(names))
  timing = layout.read_json(layout.timing_path(results_dir, seq))

  scores, per_object = None, None
  if evaluation is not None:
    keys = [key for key in evaluation.per_frame if key.rsplit("_", 1)[0] == seq]
    object_ids = [int(key.rsplit("_", 1)[1]) for key in keys]
    if keys:
      scores = summarize({key: evaluation.per_frame[key] for key in keys})
      per_object = {obj: evaluation.per_frame[key] for obj, key in zip(object_ids, keys)}
  else:
    object_ids = [int(i) for i in np.unique(masks[0]) if 0 < i < 255]
  states = _states(masks, object_ids, retrievals)

  source, overlaid, source_text = _frame_source(results_dir, seq, len(names), dataset, frames)
  if source is not None and len(source) != len(names):
    raise InputError(f"{os.path.join(results_dir, seq)}: {len(names)} masks but {len(source)} frames; "
                     "the results do not belong to these frames")
  assets = os.path.join(out_dir, ASSETS)
  video = media.SmallVideo(os.path.join(assets, seq), config.video_width, config.video_fps)
  wanted = {r["frame"]: [] for r in retrievals or ()}
  # Everything is drawn at the video's width: cheaper than full frames, and outlines stay visible.
  scale = media.fit_width(masks[0], config.video_width).shape[1] / masks.shape[2]
  try:
    for t, full_ids in enumerate(masks):
      ids = media.fit_width(full_ids, config.video_width, interpolation=cv2.INTER_NEAREST)
      if source is None:
        image = np.where(ids[..., None] > 0, PALETTE[ids], np.uint8(MASK_BACKGROUND)).astype(np.uint8)
      else:
        image = source[t]
        if image.shape[:2] != full_ids.shape:
          raise InputError(f"{os.path.join(results_dir, seq, names[t])}.png: mask is {full_ids.shape[1]}x"
                           f"{full_ids.shape[0]} but its frame is {image.shape[1]}x{image.shape[0]}; pass the "
                           "--resolution of the run")
        image = media.fit_width(image, config.video_width)
        if not overlaid:
          image = overlay(image, ids, config.overlay_alpha)
      if t == 0:
        media.write_jpeg(os.path.join(assets, f"{seq}_poster.jpg"), image, config.video_width, config.jpeg_quality)
      if t in wanted:
        wanted[t] = image
      video.write(image)
  finally:
    video.close()
  thumbs = []
  for k, r in enumerate(retrievals or ()):
    name = f"{seq}_retrieval{k}.jpg"
    image = wanted[r["frame"]]
    if r.get("box"):
      image = _draw_box(image, r["box"], scale, PALETTE[r["object_id"]])
    media.write_jpeg(os.path.join(assets, name), image, config.thumb_width, config.jpeg_quality)
    thumbs.append(f"{ASSETS}/{name}")

  plot = f"{ASSETS}/{seq}_plot.png"
  plots.sequence_figure(os.path.join(out_dir, plot), object_ids, states, retrievals or [], per_object,
                        config.plot_width_in, config.plot_dpi)
  return SequenceReport(
      name=seq, frames=len(names), object_ids=object_ids, states=states, retrievals=retrievals, timing=timing,
      scores=scores, video=f"{ASSETS}/{os.path.basename(video.path)}" if video.path else None,
      video_mime=video.mime, poster=f"{ASSETS}/{seq}_poster.jpg", plot=plot, frame_source=source_text,
      thumbs=thumbs)


def _float(text: str) -> Optional[float]:
  try:
    return float(text)
  except ValueError:
    return None


def _ablation(path: str, out_dir: str, config) -> AblationTable:
  """An ablation.csv of experiments/ablation.py with its paper column and a bar chart."""
  with open(path, newline="") as f:
    table = list(csv.reader(f))
  if len(table) < 2 or "J&F" not in table[0] or "row" not in table[0]:
    raise InputError(f"{path}: not an ablation table of experiments/ablation.py (needs columns row and J&F)")
  columns, rows = table[0], table[1:]
  jf = columns.index("J&F")
  paper = next((i for i, c in enumerate(columns) if c.startswith("paper")), None)
  stem = os.path.splitext(os.path.basename(path))[0]
  md = os.path.splitext(path)[0] + ".md"
  caption = open(md).readline().strip() if os.path.isfile(md) else ""
  here = [_float(r[jf]) or 0.0 for r in rows]
  paper_values = [_float(r[paper]) if paper is not None else None for r in rows]
  plot = f"{ASSETS}/{stem}.png"
  plots.ablation_figure(os.path.join(out_dir, plot), [r[columns.index("row")] for r in rows], here, paper_values,
                        f"{stem}: {caption}" if caption else stem, config.plot_width_in, config.plot_dpi)
  if paper is not None:
    columns = columns[:paper + 1] + ["J&F - paper"] + columns[paper + 1:]
    rows = [r[:paper + 1] + ["" if p is None else f"{h - p:+.3f}"] + r[paper + 1:]
            for r, h, p in zip(rows, here, paper_values)]
  return AblationTable(name=os.path.basename(path), caption=caption, columns=columns, rows=rows, plot=plot)


def _prepare_out(out_dir: str, results_dir: str) -> str:
  """A fresh temporary folder beside out_dir; out_dir must be absent, empty or an earlier report."""
  if os.path.exists(out_dir):
    if os.path.join(os.path.realpath(results_dir), "").startswith(os.path.join(os.path.realpath(out_dir), "")):
      raise InputError(f"{out_dir}: holds the results; choose an --out folder beside or inside them")
    if not os.path.isdir(out_dir):
      raise InputError(f"{out_dir}: exists and is not a folder; choose another --out")
    if os.listdir(out_dir) and not os.path.isfile(os.path.join(out_dir, "index.html")):
      raise InputError(f"{out_dir}: exists and is not an earlier report (no index.html); choose another --out "
                       "(the report replaces its folder)")
  parent = os.path.dirname(os.path.abspath(out_dir))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(out_dir))}.partial-", dir=parent)
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(tmp, 0o777 & ~umask)
  os.makedirs(os.path.join(tmp, ASSETS))
  return tmp


def build_report(results_dir, out_dir, dataset=None, subset: Optional[str] = None,
                 sequences: Optional[List[str]] = None, frames: Optional[dict] = None,
                 evaluation: Optional[EvalResult] = None, progress: bool = True, config=None) -> str:
  """Writes out_dir/index.html (+ assets/, report.json) for a results folder; returns the page's path.

  Args:
    results_dir: a `vsreid segment` output folder (DAVIS results layout) or an experiments/ablation.py
      output folder (ablation*.csv), or both.
    out_dir: the report folder; replaced atomically when complete (an earlier report there is
      overwritten, any other non-empty folder is refused).
    dataset: a DavisDataset with annotations: scores the sequences with the DAVIS 2017 evaluator
      (the same code as `vsreid eval`) and takes the video frames from it. None: no scores.
    subset: the ImageSets set name (with `dataset`: the sequences when `sequences` is None).
    sequences: the sequences to show (default: the set's with `dataset`, else every result folder).
    frames: {sequence: frame sequence} for the videos (the segment run's own input frames).
    evaluation: scores already computed for these sequences (skips the evaluation).
    progress: show a progress bar.
    config: vsreid_jax/configs/report.py ConfigDict (default get_config()).
  """
  config = config or report_config.get_config()
  results_dir, out_dir = os.fspath(results_dir), os.fspath(out_dir)
  if not os.path.isdir(results_dir):
    raise InputError(f"{results_dir}: results folder not found")
  if sequences is None:
    sequences = (dataset.sequences(subset) if dataset is not None and subset
                 else layout.find_sequences(results_dir, exclude=[out_dir]))
  ablation_csvs = sorted(glob.glob(os.path.join(results_dir, "ablation*.csv")))
  if not sequences and not ablation_csvs:
    raise InputError(f"{results_dir}: no result sequences (<sequence>/<frame>.png) and no ablation*.csv; "
                     "pass the --out folder of `vsreid segment` or of experiments/ablation.py")
  if dataset is not None and evaluation is None and sequences:
    evaluation = evaluate_sequences(dataset, sequences, results_dir, progress=progress)
  tmp = _prepare_out(out_dir, results_dir)
  try:
    seq_reports = [_sequence(results_dir, tmp, seq, dataset, frames, evaluation, config)
                   for seq in tqdm(sequences, desc="report", unit="seq", disable=not progress)]
    ablations = [_ablation(path, tmp, config) for path in ablation_csvs]
    text = page.render(results_dir, subset if dataset is not None else None, seq_reports,
                     evaluation.global_ if evaluation is not None else None, ablations,
                     media.browser_codec() is not None, config.video_width)
    with open(os.path.join(tmp, "index.html"), "w", encoding="utf-8") as f:
      f.write(text)
    page.write_json(os.path.join(tmp, "report.json"), results_dir, subset if dataset is not None else None,
                    seq_reports, evaluation.global_ if evaluation is not None else None, ablations)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  if os.path.isdir(out_dir):
    shutil.rmtree(out_dir)
  os.replace(tmp, out_dir)
  return os.path.join(out_dir, "index.html")

