"""Detector candidates and their ReID embeddings for every frame of a sequence, computed once.

The solver re-runs Algorithm 2 over all frames after every recovery; only propagation is
recomputed, never the detector or the ReID net. Frames go through both nets in batches (the
compiled functions see one shape), and the result can be kept on disk as one .npz per sequence,
keyed by the sequence name and a fingerprint of the nets (weights files) and the frame size.
"""
import dataclasses
import hashlib
import os
from typing import Optional

import numpy as np
from tqdm import tqdm

from vsreid_jax.data.objects import mask_box
from vsreid_jax.utils import StageTimer


@dataclasses.dataclass
class Candidates:
  boxes: np.ndarray  # [T, M, 4] float32, (x0, y0, x1, y1) in frame pixels
  scores: np.ndarray  # [T, M] detector scores, descending
  valid: np.ndarray  # [T, M] bool
  embeddings: np.ndarray  # [T, M, D] float32, L2-normalised

  def __len__(self):
    return len(self.boxes)


def file_fingerprint(*paths) -> str:
  """Short hash of files' bytes: cached candidates are invalid once a weights file changes."""
  h = hashlib.sha1()
  for p in paths:
    with open(p, "rb") as f:
      h.update(f.read())
  return h.hexdigest()[:12]


def compute_candidates(frames, detector, embedder, batch: int = 4, progress: bool = False,
                       desc: str = "", timer: Optional[StageTimer] = None, callback=None) -> Candidates:
  """Runs detector.detect and embedder.embed over all frames in batches of `batch` (the last batch
  is padded with repeats of its final frame, so both nets compile once). With a timer, the time
  goes to stages "detect" and "embed" (compilation to "compile"); `callback("detect+reid", frames
  done, frames)` after each batch (progress of a caller's own bar)."""
  timer = timer or StageTimer()
  n = len(frames)
  out = {"boxes": [], "scores": [], "valid": [], "embeddings": []}
  for start in tqdm(range(0, n, batch), desc=f"{desc} detect+reid".strip(), unit="batch", disable=not progress,
                    leave=False):
    idx = [min(i, n - 1) for i in range(start, start + batch)]
    images = np.stack([frames[i] for i in idx])
    with timer.stage("detect", detector):
      boxes, scores, valid = detector.detect(images)
    with timer.stage("embed", embedder):
      emb = embedder.embed(images, boxes)
    keep = min(batch, n - start)
    for key, val in zip(("boxes", "scores", "valid", "embeddings"), (boxes, scores, valid, emb)):
      out[key].append(np.asarray(val)[:keep])
    if callback is not None:
      callback("detect+reid", start + keep, n)
  arrays = {k: np.concatenate(v) for k, v in out.items()}
  return Candidates(arrays["boxes"].astype(np.float32), arrays["scores"].astype(np.float32),
                    arrays["valid"].astype(bool), arrays["embeddings"].astype(np.float32))


def cached_candidates(frames, detector, embedder, cache_dir: Optional[str], key: str, fingerprint: str,
                      batch: int = 4, progress: bool = False, timer: Optional[StageTimer] = None,
                      callback=None) -> Candidates:
  """compute_candidates, read from / written to <cache_dir>/<key>/candidates-<fingerprint>-<T>x<H>x<W>.npz."""
  if not cache_dir:
    return compute_candidates(frames, detector, embedder, batch, progress, key, timer, callback)
  h, w = frames.size
  path = os.path.join(cache_dir, key, f"candidates-{fingerprint}-{len(frames)}x{h}x{w}.npz")
  if os.path.isfile(path):
    with np.load(path) as z:
      return Candidates(z["boxes"], z["scores"], z["valid"], z["embeddings"])
  cands = compute_candidates(frames, detector, embedder, batch, progress, key, timer, callback)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = path + ".tmp.npz"
  np.savez(tmp, boxes=cands.boxes, scores=cands.scores, valid=cands.valid, embeddings=cands.embeddings)
  os.replace(tmp, path)
  return cands


def templates(embedder, image: np.ndarray, masks: np.ndarray) -> np.ndarray:
  """Frame-0 templates [K, D]: the embedding of each object's mask box (masks[K, H, W])."""
  boxes = np.stack([mask_box(m > 0.5) for m in masks]).astype(np.float32)
  return np.asarray(embedder.embed(image[None], boxes[None]))[0]
