"""Flow between neighbouring frames, computed once per (video content, pair, backend).

`FlowCache.get(i, j)` returns the flow from frame i to frame j (|i - j| == 1): the backward flow
i -> i-1 is what warps frame i-1's probability onto frame i.

Memory stays flat in video length: only the last `keep` flows are held (the solver reads a pair
and its neighbour); older ones are read back from disk when `cache_dir` is given (float16 `.npy`
files: half the disk, flow error < 0.01 px for |flow| < 16 px), else recomputed.

On disk a video's flows live in `<cache_dir>/<key>/<backend name>-<content hash>/`: `key` (the
sequence name) is only for people; the content hash (`frames_fingerprint`: frame count, size and
the frames' file stats and bytes) and the backend's name and weights fingerprint decide reuse, so
two different videos of one name never share flows. An unreadable cache file is recomputed with a
warning; files are written under unique temporary names and renamed, so runs can share a cache.
"""
import collections
import contextlib
import hashlib
import os
import tempfile
import time
import warnings
import weakref
from typing import Optional

import numpy as np

from vsreid_jax.flow.base import FlowBackend

# Flows kept in memory: the solver reads i -> i-1 and, when recovering, its neighbours.
RECENT_FLOWS = 4
# Bytes hashed from the start of a video file (with its size and modification time).
VIDEO_HEAD_BYTES = 1 << 20

_FINGERPRINTS = weakref.WeakKeyDictionary()


def _hash_file(h, path, limit: Optional[int] = None) -> None:
  with open(path, "rb") as f:
    h.update(f.read() if limit is None else f.read(limit))


def frame_size(frames):
  """(height, width) of a frame sequence (opened frames, or a [T, H, W, 3] array)."""
  return frames.shape[1:3] if isinstance(frames, np.ndarray) else tuple(frames.size)


def frames_fingerprint(frames) -> str:
  """Short hash of a video's content, the key of every per-video cache.

  Frame count and size, and for a frame folder every file's name, size and modification time
  plus the bytes of the first and last file; for a video file its size, modification time and
  first MiB; for frames in memory the bytes of every frame. Computed once per frames object.
  """
  from vsreid_jax.data.frames import FolderFrames, VideoFrames  # pylint: disable=g-import-not-at-top
  try:
    return _FINGERPRINTS[frames]
  except (KeyError, TypeError):
    pass
  h = hashlib.sha1()
  height, width = frame_size(frames)
  h.update(f"{len(frames)}x{height}x{width}".encode())
  if isinstance(frames, FolderFrames):
    paths = [frames.path(i) for i in range(len(frames))]
    for p in paths:
      st = os.stat(p)
      h.update(f"{os.path.basename(p)}:{st.st_size}:{st.st_mtime_ns};".encode())
    for p in {paths[0], paths[-1]}:
      _hash_file(h, p)
  elif isinstance(frames, VideoFrames):
    st = os.stat(frames.path_)
    h.update(f"{st.st_size}:{st.st_mtime_ns};".encode())
    _hash_file(h, frames.path_, VIDEO_HEAD_BYTES)
  else:
    for i in range(len(frames)):
      h.update(np.ascontiguousarray(frames[i]).tobytes())
  digest = h.hexdigest()[:16]
  with contextlib.suppress(TypeError):
    _FINGERPRINTS[frames] = digest
  return digest


def atomic_write(path: str, write) -> None:
  """Calls write(file object) on a unique temporary file beside `path`, then renames it to `path`
  (two processes writing the same cache entry never read each other's half-written file)."""
  folder = os.path.dirname(path)
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      write(f)
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    raise


def warn_corrupt(path: str, error: Exception) -> None:
  warnings.warn(f"{path}: unreadable cache file ({type(error).__name__}: {error}); recomputing it", stacklevel=3)


class FlowCache:

  def __init__(self, frames, backend: FlowBackend, cache_dir: Optional[str] = None, key: str = "",
               keep: int = RECENT_FLOWS):
    self.frames = frames
    self.backend = backend
    self._root = os.path.join(cache_dir, key) if cache_dir else None
    self._dir = None
    self.keep = keep
    self._mem = collections.OrderedDict()  # (i, j) -> flow, the `keep` most recently used
    self.seconds = 0.0  # time spent computing (not loading) flow
    self.computed = 0

  @property
  def cache_dir(self) -> Optional[str]:
    """This video's folder of flow files (content-keyed), or None without a cache folder."""
    if self._root and self._dir is None:
      settings = self.backend.name + getattr(self.backend, "fingerprint", "")
      self._dir = os.path.join(self._root, f"{settings}-{frames_fingerprint(self.frames)}")
    return self._dir

  def _path(self, i, j):
    return os.path.join(self.cache_dir, f"{i:05d}_{j:05d}.npy")

  def _load(self, i, j) -> Optional[np.ndarray]:
    path = self._path(i, j)
    if not os.path.isfile(path):
      return None
    try:
      flow = np.load(path).astype(np.float32)
      h, w = frame_size(self.frames)
      if flow.shape != (h, w, 2):
        raise ValueError(f"shape {flow.shape}, expected {(h, w, 2)}")
      return flow
    except Exception as e:  # pylint: disable=broad-except  # any unreadable file: recompute
      warn_corrupt(path, e)
      return None

  def get(self, i: int, j: int, timer=None) -> np.ndarray:
    """Flow i -> j; with a utils.StageTimer, the time spent computing it goes to its "flow" stage."""
    if timer is not None:
      before = self.seconds
      flow = self.get(i, j)
      timer.add("flow", self.seconds - before)
      return flow
    if abs(i - j) != 1:
      raise ValueError(f"flow is cached between neighbours only, got {i} -> {j}")
    if (i, j) in self._mem:
      self._mem.move_to_end((i, j))
      return self._mem[(i, j)]
    flow, seconds = self.fetch(i, j, self.frames)
    self.put(i, j, flow, seconds)
    return flow

  def fetch(self, i: int, j: int, frames) -> tuple:
    """(flow i -> j, seconds spent computing it: None when read from the cache folder), reading the
    images from `frames` (this cache's, or a reopened copy of them on a prefetch thread) and
    touching nothing in memory, so one other thread may call it; `put` keeps the result.
    Call `cache_dir` once first (the content fingerprint is computed there, not thread-safe)."""
    flow = self._load(i, j) if self.cache_dir else None
    if flow is not None:
      return flow, None
    t = time.perf_counter()
    flow = self.backend.flow(frames[i], frames[j])
    seconds = time.perf_counter() - t
    if self.cache_dir:
      half = flow.astype(np.float16)
      atomic_write(self._path(i, j), lambda f: np.save(f, half))
      # What a later run reads back: a run with a cold cache answers exactly as one with a warm one.
      flow = half.astype(np.float32)
    return flow, seconds

  def put(self, i: int, j: int, flow: np.ndarray, seconds: Optional[float]) -> None:
    """Keeps flow i -> j among the recent ones; `seconds` not None: it was computed (not loaded)."""
    if seconds is not None:
      self.seconds += seconds
      self.computed += 1
    self._mem[(i, j)] = flow
    self._mem.move_to_end((i, j))
    while len(self._mem) > self.keep:
      self._mem.popitem(last=False)
