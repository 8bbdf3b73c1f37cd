"""What the solver keeps per video: detector candidates on demand, and compact probabilities.

Candidates. Algorithm 2 reads a frame's detector candidates only where the retrieval rule looks
(frames where some object is lost). `CandidateSource.get(frames)` runs the detector and the ReID
net on the frames asked for that it has not seen yet, in batches of `batch` aligned frames (the
compiled functions see one shape; the neighbours of an asked frame come with its batch), and keeps
them, in memory and, with a cache folder, on disk as one .npz per batch under
`<cache_dir>/<key>/candidates-<nets fingerprint>-<content hash>/` (the content hash of
`flow.cache.frames_fingerprint`: another video of the same name never reuses them). A video where
nothing is lost never runs the detector.

Probabilities. `ProbStore` holds the solver's [T, Kb, H, W] maps as uint8 (a quarter of float32,
thresholding at 0.5 unchanged), in memory up to a budget and in a temporary file past it, so the
memory of a solve does not grow with the video's length.
"""
import collections
import dataclasses
import hashlib
import math
import os
import shutil
import tempfile
from typing import Optional, Sequence

import numpy as np

from vsreid_jax.geometry import mask_box_np
from vsreid_jax.flow.cache import atomic_write, frames_fingerprint, warn_corrupt
from vsreid_jax.utils import StageTimer

FIELDS = ("boxes", "scores", "valid", "embeddings")
# Frames of candidates held in memory (about 17 KB a frame with 32 boxes and 128-d embeddings);
# older batches are read back from disk (the cache folder, else a temporary one).
MEMORY_FRAMES = 512


@dataclasses.dataclass
class Candidates:
  boxes: np.ndarray  # [T, M, 4] float32, (x0, y0, x1, y1) in frame pixels
  scores: np.ndarray  # [T, M] detector scores, descending
  valid: np.ndarray  # [T, M] bool
  embeddings: np.ndarray  # [T, M, D] float32, L2-normalised

  def __len__(self):
    return len(self.boxes)

  def get(self, frame_indices: Sequence[int]) -> "Candidates":
    """The candidates of these frames, in this order (the interface of CandidateSource)."""
    idx = np.asarray(frame_indices, np.int64)
    return Candidates(*(getattr(self, k)[idx] for k in FIELDS))


def concat(parts: Sequence[Candidates]) -> Candidates:
  return Candidates(*(np.concatenate([getattr(p, k) for p in parts]) for k in FIELDS))


def file_fingerprint(*paths) -> str:
  """Short hash of files' bytes: cached candidates are invalid once a weights file changes."""
  h = hashlib.sha1()
  for p in paths:
    with open(p, "rb") as f:
      h.update(f.read())
  return h.hexdigest()[:12]


def compute_candidates(frames, detector, embedder, batch: int = 4, timer: Optional[StageTimer] = None,
                       indices: Optional[Sequence[int]] = None) -> Candidates:
  """Runs detector.detect and embedder.embed over `indices` (default: all frames) in batches of
  `batch` (the last batch is padded with repeats of its final frame, so both nets compile once).

  Args:
    frames: the video's frames, uint8 [H, W, 3] RGB each (opened frames or an array [T, H, W, 3]).
    detector: a detection.detector.Detector (`detect(images [B, H, W, 3])`).
    embedder: a reid.embedder.Embedder (`embed(images, boxes [B, M, 4])`).
    batch: frames per call of each net.
    timer: books "detect" and "embed" (compilation to "compile").
    indices: the frames to run, in order; None: all.

  Returns:
    Candidates of those frames, in that order: boxes [N, M, 4], scores [N, M], valid [N, M],
    embeddings [N, M, D] (N = len(indices), M the detector's detections per frame).
  """
  timer = timer or StageTimer()
  indices = list(range(len(frames)) if indices is None else indices)
  parts = []
  for start in range(0, len(indices), batch):
    idx = indices[start:start + batch]
    keep = len(idx)
    images = np.stack([frames[i] for i in idx + idx[-1:] * (batch - keep)])
    with timer.stage("detect", detector):
      boxes, scores, valid = detector.detect(images)
    with timer.stage("embed", embedder):
      emb = embedder.embed(images, boxes)
    parts.append(Candidates(*(np.asarray(v)[:keep] for v in (boxes, scores, valid, emb))))
  out = concat(parts)
  return Candidates(out.boxes.astype(np.float32), out.scores.astype(np.float32), out.valid.astype(bool),
                    out.embeddings.astype(np.float32))


class CandidateSource:
  """Detector candidates and ReID embeddings of a video, computed when a retrieval rule asks.

  `get(frame_indices)` -> Candidates of those frames (in the order asked); frames never asked for
  are never detected. `detector_batches` / `frames_computed` count the work done. At most
  `memory_frames` frames are held in memory; without a cache folder, batches past that go to a
  temporary folder removed by close().
  """

  def __init__(self, frames, detector, embedder, batch: int = 4, cache_dir: Optional[str] = None, key: str = "",
               fingerprint: str = "", timer: Optional[StageTimer] = None, memory_frames: int = MEMORY_FRAMES):
    self.frames, self.detector, self.embedder = frames, detector, embedder
    self.batch = int(batch)
    self.timer = timer or StageTimer()
    self._root = os.path.join(cache_dir, key) if cache_dir else None
    self._fingerprint = fingerprint
    self._dir = None
    self._chunks = collections.OrderedDict()  # chunk c -> Candidates of frames [c * batch, (c + 1) * batch)
    self._keep = max(1, int(memory_frames) // self.batch)
    self._spill = None  # a private temporary folder when there is no cache folder
    self.frames_computed = 0
    self.detector_batches = 0

  def __len__(self):
    return len(self.frames)

  @property
  def cache_dir(self) -> Optional[str]:
    if self._root and self._dir is None:
      self._dir = os.path.join(self._root, f"candidates-{self._fingerprint}-{frames_fingerprint(self.frames)}")
    return self._dir

  @property
  def _store(self) -> Optional[str]:
    """Where batches are read back from: the cache folder, or the temporary one of evictions."""
    return self.cache_dir or self._spill

  def close(self) -> None:
    """Removes the temporary folder of batches evicted from memory (none with a cache folder)."""
    if self._spill:
      shutil.rmtree(self._spill, ignore_errors=True)
      self._spill = None

  def __del__(self):
    try:
      self.close()
    except Exception:  # pylint: disable=broad-except  # at interpreter exit modules may be gone
      pass

  def _chunk_frames(self, c):
    return list(range(c * self.batch, min((c + 1) * self.batch, len(self.frames))))

  def _path(self, c):
    return os.path.join(self._store, f"b{self.batch}-{c:05d}.npz")

  def _load(self, c) -> Optional[Candidates]:
    path = self._path(c)
    if not os.path.isfile(path):
      return None
    try:
      with np.load(path) as z:
        cands = Candidates(*(z[k] for k in FIELDS))
      if len(cands) != len(self._chunk_frames(c)) or len({len(getattr(cands, k)) for k in FIELDS}) != 1:
        raise ValueError(f"{len(cands)} frames, expected {len(self._chunk_frames(c))}")
      return cands
    except Exception as e:  # pylint: disable=broad-except  # any unreadable file: recompute
      warn_corrupt(path, e)
      return None

  def _compute(self, c) -> Candidates:
    cands = compute_candidates(self.frames, self.detector, self.embedder, self.batch, self.timer,
                               self._chunk_frames(c))
    self.detector_batches += 1
    self.frames_computed += len(cands)
    if self.cache_dir:
      atomic_write(self._path(c), lambda f: np.savez(f, **{k: getattr(cands, k) for k in FIELDS}))
    return cands

  def get(self, frame_indices: Sequence[int]) -> Candidates:
    """Candidates of these frames, computing (or reading from disk) the batches not yet held."""
    idx = np.asarray(frame_indices, np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= len(self.frames)):
      raise IndexError(f"frames {idx.min()}..{idx.max()} outside a video of {len(self.frames)} frames")
    parts = {}
    for c in sorted(set((idx // self.batch).tolist())):
      if c in self._chunks:
        self._chunks.move_to_end(c)
      else:
        cands = self._load(c) if self._store else None
        self._chunks[c] = cands if cands is not None else self._compute(c)
      parts[c] = self._chunks[c]
      while len(self._chunks) > self._keep:
        old, cands = self._chunks.popitem(last=False)
        if not self.cache_dir:  # keep evicted batches on disk: the detector is the costly part
          self._spill = self._spill or tempfile.mkdtemp(prefix="vsreid-candidates-")
          atomic_write(self._path(old), lambda f, x=cands: np.savez(f, **{k: getattr(x, k) for k in FIELDS}))
    if not idx.size:
      return Candidates(np.zeros((0, 0, 4), np.float32), np.zeros((0, 0), np.float32), np.zeros((0, 0), bool),
                        np.zeros((0, 0, 0), np.float32))
    return concat([parts[int(t) // self.batch].get([int(t) % self.batch]) for t in idx])


def templates(embedder, image: np.ndarray, masks: np.ndarray) -> np.ndarray:
  """Frame-0 templates [K, D]: the embedding of each object's mask box (masks[K, H, W])."""
  boxes = np.stack([mask_box_np(m > 0.5) for m in masks]).astype(np.float32)
  return np.asarray(embedder.embed(image[None], boxes[None]))[0]


def templates_at_starts(embedder, frames, first_prob: np.ndarray, starts: np.ndarray) -> np.ndarray:
  """Each object's template [K, D] from the frame that gives it.

  Args:
    embedder: a reid.embedder.Embedder; frames: the video's frames (indexable, [H, W, 3] uint8 each).
    first_prob: [K, H, W] each object's mask on its giving frame; starts: [K] that frame's index.
  """
  k = len(starts)
  out = [None] * k
  for s in np.unique(starts):
    js = np.flatnonzero(starts == s)
    for j, t in zip(js, templates(embedder, frames[int(s)], first_prob[js])):
      out[j] = t
  return np.stack(out)


def quantize(prob) -> np.ndarray:
  """Probabilities in [0, 1] -> uint8 q with q >= 128 exactly where p > 0.5 (error <= 0.5/255)."""
  return np.clip(np.ceil(np.asarray(prob, np.float32) * 255.0 - 0.5), 0, 255).astype(np.uint8)


def dequantize(q) -> np.ndarray:
  return np.asarray(q, np.float32) / 255.0


class ProbStore:
  """Probabilities [T, Kb, H, W] stored as uint8, in memory up to `budget_mb`, else in a file.

  store[t] -> float32 [Kb, H, W]; store[t, k] -> [H, W]; assignments take float maps. Past the
  budget, frames are read and written with plain file I/O on a file in a temporary folder (not a
  memory map: mapped pages count as the process's resident memory), removed by close().
  """

  def __init__(self, shape, budget_mb: float = 128.0, folder: Optional[str] = None):
    self.shape = tuple(int(s) for s in shape)
    self.frame_bytes = math.prod(self.shape[1:])
    self._tmp = self._file = None
    if self.shape[0] * self.frame_bytes <= budget_mb * 2 ** 20:
      self._data = np.zeros(self.shape, np.uint8)
    else:
      self._data = None
      self._tmp = tempfile.mkdtemp(prefix="vsreid-probs-", dir=folder)
      self._file = open(os.path.join(self._tmp, "probs.u8"), "w+b")
      self._file.truncate(self.shape[0] * self.frame_bytes)

  @property
  def on_disk(self) -> bool:
    return self._data is None

  def __len__(self):
    return self.shape[0]

  def _read(self, t) -> np.ndarray:
    if self._data is not None:
      return self._data[t]
    self._file.seek(t * self.frame_bytes)
    return np.frombuffer(self._file.read(self.frame_bytes), np.uint8).reshape(self.shape[1:])

  def _write(self, t, q) -> None:
    if self._data is not None:
      self._data[t] = q
    else:
      self._file.seek(t * self.frame_bytes)
      self._file.write(np.ascontiguousarray(q, np.uint8).tobytes())

  def _split(self, index):
    """(frame, object or None) of store[t] / store[t, k]; negative frames count from the end."""
    t, k = (index if isinstance(index, tuple) else (index, None))
    return range(self.shape[0])[t], k

  def __getitem__(self, index) -> np.ndarray:
    t, k = self._split(index)
    q = self._read(t)
    return dequantize(q if k is None else q[k])

  def __setitem__(self, index, value) -> None:
    t, k = self._split(index)
    if k is None:
      self._write(t, np.broadcast_to(quantize(value), self.shape[1:]))
    else:
      q = np.array(self._read(t))
      q[k] = quantize(value)
      self._write(t, q)

  def close(self) -> None:
    """Removes the file of a store past its budget (a closed store cannot be read)."""
    if self._file is not None:
      self._file.close()
      shutil.rmtree(self._tmp, ignore_errors=True)
      self._file = None

  def __del__(self):
    try:
      self.close()
    except Exception:  # pylint: disable=broad-except  # at interpreter exit modules may be gone
      pass
