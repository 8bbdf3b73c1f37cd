"""Writing results: palette PNGs per sequence, atomically, and side files (overlay video, logs).

Results never cost a user a file:
- a sequence is written into a hidden temporary folder beside its destination and moved into
  place only when every frame is written, so an interrupted run never leaves a folder that looks
  complete (the DAVIS evaluator would score a half-written folder as missing frames);
- every folder this program writes holds a manifest, `.vsreid-results.json`; an existing
  OUT/<sequence> is replaced only when it holds one (or is empty), and the side files
  OUT/<sequence>_overlay.{mp4,webm}, _retrievals.json and _timing.json only when that manifest
  lists them;
- replacing is atomic: the old folder is renamed aside, the new one renamed in, then the old
  one deleted; a symlink at OUT/<sequence> is refused;
- hidden temporary folders of killed runs (`.vsreid-partial-<pid>-...`, `.vsreid-old-<pid>-...`,
  holding our manifest, their process gone) are cleaned by `clean_stale`: partial ones are
  deleted, an old one whose destination is missing is put back.
`check_destination` runs every check up front, with the inputs, so that outputs never overlap
inputs (the CLI calls it for every sequence before any work).
"""
import json
import os
import re
import secrets
import shutil
import socket
from typing import Iterable, List, Optional

import cv2
import numpy as np

from vsreid_jax import __version__
from vsreid_jax.data import media
from vsreid_jax.data.palette import PALETTE, write_mask
from vsreid_jax.errors import InputError
from vsreid_jax.utils import write_text_atomic

MANIFEST = ".vsreid-results.json"
PROGRAM = "vsreid-jax"
TMP_PREFIX = ".vsreid-"  # + "partial-<pid>-<sequence>-<random>" or "old-<pid>-<sequence>-<random>"
_TMP_RE = re.compile(r"^\.vsreid-(partial|old)-(\d+)-")
# Files OUT/<sequence><suffix> beside the folder. The overlay is H.264 MP4 or VP9 WebM, whichever
# this OpenCV can encode (data.media.browser_codec): both are browser-playable.
SIDE_SUFFIXES = ("_overlay.mp4", "_overlay.webm", "_retrievals.json", "_timing.json")
OBJECTS_DIR = "objects"  # per_object: OUT/<sequence>/objects/<id>/<frame>.png, binary 0/255 masks


def _within(path: str, folder: str) -> bool:
  """Whether real path `path` is `folder` or lies inside it (both already real paths)."""
  return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def inside_any(path, folders: Iterable) -> Optional[str]:
  """The first of `folders` that is or holds `path`, comparing real paths; None when none does."""
  real = os.path.realpath(os.fspath(path))
  for folder in folders:
    if _within(real, os.path.realpath(os.fspath(folder))):
      return os.fspath(folder)
  return None


def read_ours(path) -> Optional[dict]:
  """A JSON file this program wrote (a dict whose "program" is ours), else None (missing, a link,
  unreadable or foreign)."""
  path = os.fspath(path)
  if os.path.islink(path) or not os.path.isfile(path):
    return None
  try:
    with open(path) as f:
      payload = json.load(f)
  except (OSError, ValueError):
    return None
  return payload if isinstance(payload, dict) and payload.get("program") == PROGRAM else None


def read_manifest(folder) -> Optional[dict]:
  """The manifest of a results folder this program wrote, else None (no, unreadable or foreign file)."""
  return read_ours(os.path.join(os.fspath(folder), MANIFEST))


def check_sequence_name(name: str) -> str:
  """A sequence name is one plain path component: results go to OUT/<name>."""
  if (not name or name in (".", "..") or "/" in name or os.sep in name or "\0" in name
      or name.startswith(TMP_PREFIX)):
    raise InputError(f"{name!r}: not a usable sequence name (results go to OUT/<sequence>); rename the video "
                     "or its folder")
  return name


def sequence_name(path) -> str:
  """The sequence name of a frame folder or video file: its real name, extension dropped.

  `.`, `..` and symlinks resolve to the real folder's name (`--video .` is named after the
  current folder, never "." which would make OUT/<sequence> the output folder itself).
  """
  real = os.path.realpath(os.fspath(path))
  base = os.path.basename(real)
  name = base if os.path.isdir(real) else os.path.splitext(base)[0]
  if not name:
    raise InputError(f"{path}: cannot name a sequence after the root folder; move the frames into a named folder")
  return check_sequence_name(name)


def prepare_dir(path, option: str) -> str:
  """Checks that `path` is, or can be created as, a writable folder; creates nothing.

  Raises InputError naming `option` (e.g. "--out") for a file in the way, a missing parent that
  is a file, or a folder without write permission. Returns the path.
  """
  path = os.fspath(path)
  if not path:
    raise InputError(f"{option}: empty path; pass a folder")
  probe = os.path.abspath(path)
  if os.path.exists(probe) and not os.path.isdir(probe):
    raise InputError(f"{path}: {option} is a file, not a folder; pass a folder (it is created if missing)")
  while not os.path.exists(probe):
    parent = os.path.dirname(probe)
    if parent == probe:
      break
    probe = parent
  if os.path.lexists(probe) and not os.path.isdir(probe):
    raise InputError(f"{path}: cannot create {option} folder: {probe} is a file, not a folder")
  if not os.access(probe, os.W_OK | os.X_OK):
    raise InputError(f"{path}: {option} folder is not writable ({probe}: permission denied or read-only); "
                     "pass a folder you can write to")
  return path


def check_destination(out_dir, sequence: str, inputs: Iterable = (), input_folders: Iterable = ()) -> None:
  """Refuses, before any work, every way writing OUT/<sequence> could lose a file or touch an input.

  Args:
    out_dir: the output folder (need not exist yet).
    sequence: the sequence name; results go to OUT/<sequence> and OUT/<sequence><side suffix>.
    inputs: files and folders read for this sequence (frames, mask, video): none may lie in or be
      OUT/<sequence> or a side file.
    input_folders: folders holding inputs (frame folder, DAVIS JPEGImages and Annotations): the
      output folder may not lie inside one.
  """
  out_dir = os.fspath(out_dir)
  check_sequence_name(sequence)
  out_real = os.path.realpath(out_dir)
  folder = inside_any(out_dir, input_folders)
  if folder is not None:
    raise InputError(f"{out_dir}: --out is inside the input folder {folder}; results would mix with (or "
                     "overwrite) the inputs, pass an output folder outside it")
  final = os.path.join(out_dir, sequence)
  final_real = os.path.join(out_real, sequence)
  sides = [final + s for s in SIDE_SUFFIXES]
  for path in inputs:
    real = os.path.realpath(os.fspath(path))
    if _within(real, final_real) or any(real == os.path.join(out_real, sequence + s) for s in SIDE_SUFFIXES):
      raise InputError(f"{path}: input lies in the output {final}; writing results would overwrite it, pass "
                       "another --out")
  if os.path.islink(final):
    raise InputError(f"{final}: is a symlink; results are not written through links, remove it or pass "
                     "another --out")
  manifest = None
  if os.path.lexists(final):
    if not os.path.isdir(final):
      raise InputError(f"{final}: a file is in the way of the results folder; move it or pass another --out")
    manifest = read_manifest(final)
    if manifest is None and os.listdir(final):
      raise InputError(f"{final}: folder exists and was not written by vsreid (no {MANIFEST}); refusing to "
                       "replace it, move it or pass another --out")
  ours = set(manifest.get("side_files", [])) if manifest else set()
  for side in sides:
    if os.path.islink(side) or (os.path.lexists(side) and not os.path.isfile(side)):
      raise InputError(f"{side}: not a plain file; refusing to replace it, remove it or pass another --out")
    if os.path.lexists(side) and os.path.basename(side) not in ours:
      raise InputError(f"{side}: file exists and was not written by vsreid; refusing to replace it, move it "
                       "or pass another --out")


def _pid_alive(pid: int) -> bool:
  if pid == os.getpid():
    return True
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True  # someone else's live process
  return True


def clean_stale(out_dir) -> List[str]:
  """Cleans hidden temporary folders that killed runs left in `out_dir`; returns what was done.

  Only folders named with our prefix, holding our manifest, written on this host, whose process is
  gone (so shards of one job writing into a shared folder, on this host or others, never touch
  each other's live folders): a partial folder is deleted; an old folder (renamed aside while being replaced) is
  put back when its destination is missing, else deleted.
  """
  out_dir = os.fspath(out_dir)
  if not os.path.isdir(out_dir):
    return []
  done = []
  for entry in sorted(os.listdir(out_dir)):
    m = _TMP_RE.match(entry)
    path = os.path.join(out_dir, entry)
    if not m or os.path.islink(path) or not os.path.isdir(path) or _pid_alive(int(m.group(2))):
      continue
    manifest = read_manifest(path)
    # An old folder is named after the pid replacing it, on the host recorded as "replaced_by_host".
    host = manifest.get("replaced_by_host", manifest.get("host")) if manifest else None
    if manifest is None or host != socket.gethostname():
      continue  # maybe a live run (another shard) on another machine sharing this folder: its pid is not ours
    if m.group(1) == "partial":
      shutil.rmtree(path, ignore_errors=True)
      done.append(f"removed {path} (partial results of an interrupted run)")
    else:
      seq = manifest.get("sequence")
      try:
        check_sequence_name(seq if isinstance(seq, str) else "")
      except InputError:
        continue
      final = os.path.join(out_dir, seq)
      if not os.path.lexists(final):
        os.rename(path, final)
        done.append(f"restored {final} (the run replacing it was interrupted)")
      else:
        shutil.rmtree(path, ignore_errors=True)
        done.append(f"removed {path} (earlier results already replaced)")
  return done


def _write_manifest(folder: str, manifest: dict) -> None:
  write_text_atomic(os.path.join(folder, MANIFEST), json.dumps(manifest, indent=2))


def overlay_suffix() -> str:
  """"_overlay.mp4" (H.264) or "_overlay.webm" (VP9): the first browser codec this OpenCV can
  encode (data.media.browser_codec, probed once); InputError when it has neither."""
  codec = media.browser_codec()
  if codec is None:
    raise InputError("--overlay: this OpenCV can encode neither H.264 (avc1) nor VP9, so the overlay would not "
                     "play in a browser; install the opencv-python wheel (its FFmpeg has VP9) or leave out --overlay")
  return "_overlay" + codec[1]


class SequenceWriter:
  """Context manager: `with SequenceWriter(out_dir, seq) as w: w.write(name, ids)`.

  Side files (the overlay video, `side_path("_retrievals.json")`) are written inside the
  temporary folder and moved beside the sequence folder on success. Raises InputError up front
  (`check_destination`) when OUT/<sequence> is not ours to replace.

  Args:
    out_dir: the output folder; the masks go to OUT/<sequence>/<frame>.png.
    sequence: the sequence name.
    overlay_fps: > 0: also write the overlay video OUT/<sequence>_overlay.mp4 (H.264) or .webm
      (VP9), the codec `data.media.browser_codec` finds, at this frame rate and the frames' size.
    object_ids: also write each object's binary mask (0/255 grey PNG) to
      OUT/<sequence>/objects/<id>/<frame>.png, for every frame (None: not written).
  """

  def __init__(self, out_dir, sequence: str, overlay_fps: float = 0.0, object_ids=None):
    self.out_dir = os.fspath(out_dir)
    self.sequence = check_sequence_name(sequence)
    self.final = os.path.join(self.out_dir, sequence)
    self.overlay_fps = overlay_fps
    self.overlay_path = self.final + overlay_suffix() if overlay_fps else None
    self.object_ids = None if object_ids is None else [int(i) for i in object_ids]
    self.objects_dir = os.path.join(self.final, OBJECTS_DIR) if self.object_ids is not None else None
    self._video = None
    self._sides = set()
    self.count = 0
    self.tmp = None

  def __enter__(self):
    check_destination(self.out_dir, self.sequence)
    try:
      os.makedirs(self.out_dir, exist_ok=True)
      self.tmp = os.path.join(self.out_dir, f"{TMP_PREFIX}partial-{os.getpid()}-{self.sequence}-{secrets.token_hex(4)}")
      os.mkdir(self.tmp)
      self.manifest = {"program": PROGRAM, "version": __version__, "sequence": self.sequence, "complete": False,
                       "pid": os.getpid(), "host": socket.gethostname()}
      _write_manifest(self.tmp, self.manifest)
    except OSError as e:
      if self.tmp:
        shutil.rmtree(self.tmp, ignore_errors=True)
      raise InputError(f"{self.out_dir}: cannot write results here ({e.strerror}); pass another --out") from None
    return self

  def side_path(self, suffix: str) -> str:
    """Where to write the side file OUT/<sequence><suffix> (moved into place on success)."""
    if suffix not in SIDE_SUFFIXES:
      raise ValueError(f"side file suffix {suffix!r} not one of {SIDE_SUFFIXES}")
    self._sides.add(suffix)
    return os.path.join(self.tmp, suffix)

  def write(self, frame_name: str, ids: np.ndarray, image: np.ndarray = None):
    write_mask(os.path.join(self.tmp, frame_name + ".png"), ids)
    self.count += 1
    if self.object_ids is not None:
      for oid in self.object_ids:
        folder = os.path.join(self.tmp, OBJECTS_DIR, str(oid))
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, frame_name + ".png")
        if not cv2.imwrite(path, np.where(ids == oid, 255, 0).astype(np.uint8)):
          raise OSError(0, "cannot write the per-object mask", path)
    if self.overlay_path and image is not None:
      if self._video is None:
        self._video = media.SmallVideo(os.path.join(self.tmp, "_overlay"), None, self.overlay_fps)
        self.side_path(self.overlay_path[len(self.final):])
      self._video.write(overlay(image, ids))

  def __exit__(self, exc_type, exc, tb):
    if self._video is not None:
      self._video.close()
    if exc_type is not None:
      shutil.rmtree(self.tmp, ignore_errors=True)
      return False
    try:
      self._commit()
    except BaseException:
      shutil.rmtree(self.tmp, ignore_errors=True)
      raise
    return False

  def _commit(self):
    """Moves the finished results into place: side files, then old folder aside, new in, old deleted."""
    check_destination(self.out_dir, self.sequence)  # nothing foreign appeared meanwhile
    old_manifest = read_manifest(self.final) if os.path.isdir(self.final) else None
    sides = sorted(self._sides)
    self.manifest.update(complete=True, frames=self.count, side_files=[self.sequence + s for s in sides])
    _write_manifest(self.tmp, self.manifest)
    for suffix in sides:
      os.replace(os.path.join(self.tmp, suffix), self.final + suffix)
    for name in (old_manifest or {}).get("side_files", []):  # side files of the results replaced
      if name not in self.manifest["side_files"] and name in {self.sequence + s for s in SIDE_SUFFIXES}:
        path = os.path.join(self.out_dir, name)
        if os.path.isfile(path) and not os.path.islink(path):
          os.remove(path)
    old = None
    if os.path.isdir(self.final) and old_manifest is None:
      os.rmdir(self.final)  # an empty folder (check_destination); fails, losing nothing, if no longer empty
    elif os.path.lexists(self.final):
      old = os.path.join(self.out_dir, f"{TMP_PREFIX}old-{os.getpid()}-{self.sequence}-{secrets.token_hex(4)}")
      if old_manifest is not None:  # whose pid the old folder's name holds, for clean_stale on other hosts
        _write_manifest(self.final, dict(old_manifest, replaced_by_host=socket.gethostname()))
      os.rename(self.final, old)
    try:
      os.rename(self.tmp, self.final)
    except BaseException:
      if old is not None:
        os.rename(old, self.final)
      raise
    if old is not None:
      shutil.rmtree(old, ignore_errors=True)


def overlay(image: np.ndarray, ids: np.ndarray, alpha: float = 0.5) -> np.ndarray:
  """RGB frame with objects tinted in their DAVIS palette colour and outlined."""
  out = image.astype(np.float32)
  colour = PALETTE[ids].astype(np.float32)
  fg = ids > 0
  out[fg] = (1 - alpha) * out[fg] + alpha * colour[fg]
  edges = cv2.morphologyEx(ids, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
  out[edges] = colour[edges] * 0.6
  return out.clip(0, 255).astype(np.uint8)
