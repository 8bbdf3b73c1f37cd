"""The files a `vsreid segment` run leaves in its output folder, as the report reads them.

  OUT/<sequence>/<frame>.png         indexed id masks (the DAVIS results layout)
  OUT/<sequence>/objects/<id>/<frame>.png  with --per-object: each object's binary 0/255 mask
  OUT/<sequence>_overlay.mp4|.webm   with --overlay: the frames with the masks tinted (H.264 MP4
                                     or VP9 WebM, whichever OpenCV can encode; browser-playable)
  OUT/<sequence>_retrievals.json     with the vsreid method: the solver's retrieval log
  OUT/<sequence>_timing.json         per-stage seconds of the sequence (written by this module)
  OUT/report/index.html              with --report: the HTML report (vsreid_jax/report)
"""
import json
import os
from typing import Optional

from vsreid_jax.errors import InputError
from vsreid_jax.utils import StageTimer, write_text_atomic


def overlay_path(results_dir, seq: str) -> str:
  """The sequence's overlay video: the .mp4 or .webm that exists (the .mp4 name when neither)."""
  for suffix in (".mp4", ".webm"):
    path = os.path.join(results_dir, f"{seq}_overlay{suffix}")
    if os.path.isfile(path):
      return path
  return os.path.join(results_dir, f"{seq}_overlay.mp4")


def retrievals_path(results_dir, seq: str) -> str:
  return os.path.join(results_dir, f"{seq}_retrievals.json")


def timing_path(results_dir, seq: str) -> str:
  return os.path.join(results_dir, f"{seq}_timing.json")


def mask_names(results_dir, seq: str) -> list:
  """Sorted frame names (without .png) of a result sequence folder."""
  folder = os.path.join(results_dir, seq)
  if not os.path.isdir(folder):
    raise InputError(f"{folder}: result sequence folder not found; results are <results>/<sequence>/<frame>.png")
  return sorted(f[:-4] for f in os.listdir(folder) if f.endswith(".png") and not f.startswith("."))


def find_sequences(results_dir, exclude=()) -> list:
  """Names of the result sequences in a folder: non-hidden sub-folders holding PNG masks.

  `exclude`: folders to skip (the report's own folder when it is written inside the results).
  """
  excluded = {os.path.realpath(p) for p in exclude}
  names = []
  for name in sorted(os.listdir(results_dir)):
    path = os.path.join(results_dir, name)
    if name.startswith(".") or not os.path.isdir(path) or os.path.realpath(path) in excluded:
      continue
    if os.path.isfile(os.path.join(path, "index.html")):
      continue  # a report folder, not a sequence
    if any(f.endswith(".png") for f in os.listdir(path)):
      names.append(name)
  return names


def _write_json(path, payload) -> None:
  write_text_atomic(path, json.dumps(payload, indent=1))


def read_json(path) -> Optional[dict]:
  """A JSON file of the results folder, None when absent; a broken one is an InputError."""
  if not os.path.isfile(path):
    return None
  try:
    with open(path) as f:
      return json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise InputError(f"{path}: not valid JSON ({e}); delete it or rerun the segmentation") from None


def write_timing(path, seq: str, frames: int, objects: int, timer: StageTimer, wall_seconds: float) -> str:
  """Writes OUT/<seq>_timing.json: the sequence's per-stage seconds, steady-state frames/s (one-off
  XLA compilation excluded, as in the segment timing table) and wall time.

  Args:
    path: where to write (the results writer's side file, moved into place with the masks).
    seq: the sequence's name.
    frames: its frame count.
    objects: its object count.
    timer: its StageTimer.
    wall_seconds: its wall time.

  Returns:
    `path`.
  """
  seconds = {k: round(v, 4) for k, v in timer.seconds.items()}
  steady = sum(v for k, v in timer.seconds.items() if k != "compile")
  _write_json(path, dict(sequence=seq, frames=frames, objects=objects, seconds=seconds,
                         steady_seconds=round(steady, 4), compile_seconds=round(timer.seconds.get("compile", 0.0), 4),
                         frames_per_second=round(frames / steady, 3) if steady > 0 else None,
                         wall_seconds=round(wall_seconds, 4)))
  return path
