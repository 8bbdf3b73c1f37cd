"""The official DAVIS 2017 semi-supervised evaluation (J&F) of a folder of result masks.

Reproduces davisvideochallenge/davis2017-evaluation (`evaluation_method.py --task
semi-supervised`): objects are the ids 1..K of the first ground-truth frame, the first and last
frame of every sequence are not scored, each object gets J and F mean / recall / decay over its
frames, and the global figures average over all objects of all sequences. Results are
`<results_dir>/<sequence>/<frame>.png` id masks, one per ground-truth frame.

Where the official tool exits or crashes on bad input, this raises `InputError` instead, and a
result id that never appears scores as an empty mask (the official tool aborts when the highest
ground-truth id is missing from the results).
"""
import csv
import dataclasses
import os
import time

import numpy as np
from tqdm import tqdm

from vsreid_jax.data.davis import DavisDataset
from vsreid_jax.data.palette import VOID_ID, read_mask
from vsreid_jax.errors import InputError
from vsreid_jax.eval.metrics import f_measure, jaccard, statistics

GLOBAL_COLUMNS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
SEQUENCE_COLUMNS = ("Sequence", "J-Mean", "F-Mean")
# The first and last frames are not scored, so a sequence needs one frame in between.
MIN_FRAMES = 3


@dataclasses.dataclass
class EvalResult:
  """Scores of one evaluation; `per_frame` holds the scored frames only (first and last dropped)."""
  global_: dict  # The 7 figures, keyed by GLOBAL_COLUMNS.
  per_object: list  # [(f"{seq}_{id}", j_mean, f_mean), ...] in set order, then id order.
  per_frame: dict  # {f"{seq}_{id}": {"J": [T - 2], "F": [T - 2]}}.
  seconds: float


def _hw(mask: np.ndarray) -> str:
  return f"{mask.shape[1]}x{mask.shape[0]}"


def _read_stack(paths: list, reference: np.ndarray, reference_path: str) -> np.ndarray:
  """Reads id masks into a uint8 [T, H, W] stack; each must have the reference's size."""
  stack = np.empty((len(paths), *reference.shape), np.uint8)
  for t, path in enumerate(paths):
    mask = read_mask(path)
    if mask.shape != reference.shape:
      raise InputError(
          f"{path}: mask is {_hw(mask)} (WxH) but the ground truth {reference_path} is {_hw(reference)}; "
          "write every mask at the annotation resolution")
    stack[t] = mask
  return stack


def _result_paths(results_dir: str, seq: str, frame_names: list) -> list:
  """Result PNG per ground-truth frame; all must exist even though first and last are unscored."""
  paths = [os.path.join(results_dir, seq, name + ".png") for name in frame_names]
  for path in paths:
    if not os.path.isfile(path):
      raise InputError(
          f"{path}: result mask not found; results need one PNG per ground-truth frame, first frame "
          f"included, named like the annotations (<results>/{seq}/<frame>.png)")
  return paths


def _evaluate_sequence(dataset: DavisDataset, seq: str, results_dir: str, exclude_void: bool) -> dict:
  """Per-frame J and F of every object of one sequence: {f"{seq}_{id}": {"J": .., "F": ..}}."""
  frame_names = dataset.frames(seq).names
  if len(frame_names) < MIN_FRAMES:
    raise InputError(
        f"{os.path.join(dataset.image_dir, seq)}: has {len(frame_names)} frames, but the DAVIS evaluation "
        f"skips the first and last frame and so needs at least {MIN_FRAMES}")
  gt_paths = [dataset.annotation_path(seq, name) for name in frame_names]
  res_paths = _result_paths(results_dir, seq, frame_names)

  first_gt = dataset.annotation(seq, frame_names[0])
  num_objects = int(np.max(np.where(first_gt == VOID_ID, 0, first_gt)))
  # Only the scored frames are read, as the official tool does: ids in the unscored first and
  # last result frames neither count as objects nor raise errors.
  gt = _read_stack(gt_paths[1:-1], first_gt, gt_paths[0])
  res = _read_stack(res_paths[1:-1], first_gt, gt_paths[0])

  # The official tool zeroes void pixels in the ground truth before it looks for them, so they
  # end up scored as background; `exclude_void` leaves them out of J and F instead.
  void = gt == VOID_ID
  gt[void] = 0
  void = void if exclude_void else None

  res_max = int(res.max())
  if res_max > num_objects:
    offending = res_paths[1 + int(np.argmax(res.max(axis=(1, 2)) == res_max))]
    raise InputError(
        f"{offending}: result has object id {res_max} but the ground truth of frame 0 has only {num_objects} "
        f"objects ({gt_paths[0]}); result ids must be the first-frame ids 1..{num_objects}")

  scores = {}
  for obj_id in range(1, num_objects + 1):
    gt_obj, res_obj = gt == obj_id, res == obj_id
    scores[f"{seq}_{obj_id}"] = {"J": jaccard(gt_obj, res_obj, void), "F": f_measure(gt_obj, res_obj, void)}
  return scores


def evaluate_sequences(dataset: DavisDataset, sequences: list[str], results_dir: str, progress: bool = True,
                       exclude_void: bool = False) -> EvalResult:
  """Scores the results of `sequences` against `dataset`'s annotations.

  Args:
    dataset: the DAVIS-layout root with the ground truth.
    sequences: names of its sequences to score.
    results_dir: folder of <sequence>/<frame>.png id masks (the DAVIS results layout).
    progress: a progress bar.
    exclude_void: False reproduces the official numbers (void pixels, id 255, count as
      background); True leaves them out of J and F, as the official metric functions intend.

  Returns:
    The EvalResult: per-object J and F and the global table of the official protocol.
  """
  start = time.perf_counter()
  results_dir = os.fspath(results_dir)
  if not os.path.isdir(results_dir):
    raise InputError(f"{results_dir}: results folder not found; it must hold one folder of PNG masks per sequence")
  per_frame = {}
  for seq in tqdm(sequences, desc="J&F", unit="seq", disable=not progress):
    per_frame.update(_evaluate_sequence(dataset, seq, results_dir, exclude_void))
  if not per_frame:
    raise InputError(f"{dataset.anno_dir}: no objects in the first ground-truth frame of any evaluated sequence")

  per_object = [(key, statistics(scores["J"])[0], statistics(scores["F"])[0]) for key, scores in per_frame.items()]
  return EvalResult(global_=summarize(per_frame), per_object=per_object, per_frame=per_frame,
                    seconds=time.perf_counter() - start)


def summarize(per_frame: dict) -> dict:
  """The GLOBAL_COLUMNS figures of per-frame scores {key: {"J": .., "F": ..}}: Mean, Recall and
  Decay per object, averaged over the objects (the global row; of one sequence's objects, its row)."""
  j_stats = [statistics(scores["J"]) for scores in per_frame.values()]
  f_stats = [statistics(scores["F"]) for scores in per_frame.values()]
  j_mean, j_recall, j_decay = (float(v) for v in np.mean(j_stats, axis=0))
  f_mean, f_recall, f_decay = (float(v) for v in np.mean(f_stats, axis=0))
  return dict(zip(GLOBAL_COLUMNS, ((j_mean + f_mean) / 2, j_mean, j_recall, j_decay, f_mean, f_recall, f_decay)))


def evaluate(davis_root: str, subset: str, results_dir: str, resolution: str = "480p", progress: bool = True,
             exclude_void: bool = False) -> EvalResult:
  """Scores `results_dir` on the sequences of ImageSets/2017/<subset>.txt of a DAVIS root."""
  dataset = DavisDataset(davis_root, resolution)
  return evaluate_sequences(dataset, dataset.sequences(subset), results_dir, progress=progress,
                            exclude_void=exclude_void)


def _csv_float(value: float) -> str:
  """pandas `to_csv(float_format="%.3f")`: three decimals, NaN as an empty field."""
  return "" if np.isnan(value) else "%.3f" % value


def write_csv(result: EvalResult, results_dir: str, subset: str) -> tuple[str, str]:
  """Writes the official `global_results-<subset>.csv` and `per-sequence_results-<subset>.csv`."""
  global_path = os.path.join(results_dir, f"global_results-{subset}.csv")
  sequence_path = os.path.join(results_dir, f"per-sequence_results-{subset}.csv")
  with open(global_path, "w", newline="") as f:
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(GLOBAL_COLUMNS)
    writer.writerow([_csv_float(result.global_[name]) for name in GLOBAL_COLUMNS])
  with open(sequence_path, "w", newline="") as f:
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(SEQUENCE_COLUMNS)
    for name, j_mean, f_mean in result.per_object:
      writer.writerow([name, _csv_float(j_mean), _csv_float(f_mean)])
  return global_path, sequence_path


def _table(columns: tuple, rows: list) -> str:
  """Right-aligned text table like pandas `DataFrame.to_string(index=False)`, floats with three
  decimals as in the official CSV files."""
  cells = []
  for k, name in enumerate(columns):
    column = [row[k] for row in rows]
    cells.append(column if isinstance(column[0], str) else ["%.3f" % v for v in column])
  widths = [max(len(name), *(len(c) for c in column)) for name, column in zip(columns, cells)]
  lines = [" ".join(name.rjust(w) for name, w in zip(columns, widths))]
  for r in range(len(rows)):
    lines.append(" ".join(column[r].rjust(w) for column, w in zip(cells, widths)))
  return "\n".join(" " + line for line in lines)


def format_tables(result: EvalResult, subset: str) -> str:
  """The official console report: the global row, then J-Mean and F-Mean per object."""
  global_row = [tuple(result.global_[name] for name in GLOBAL_COLUMNS)]
  return "\n".join([
      f"--------------------------- Global results for {subset} ---------------------------",
      _table(GLOBAL_COLUMNS, global_row),
      "",
      f"---------- Per sequence results for {subset} ----------",
      _table(SEQUENCE_COLUMNS, result.per_object),
      "",
      f"Total time: {result.seconds:.2f} s",
  ])
