"""Algorithm 2 of VS-ReID: re-identify lost objects among a frame's detector candidates.

Host numpy on cached candidates (a frame has a few dozen), so the solver can re-run it over every
frame after each recovery at no network cost. The rule follows the original implementation
(DESIGN.md): only objects that are lost in the frame are considered; a candidate is accepted for
lost object k when
  - its cosine similarity to k's frame-0 template is > rho_reid,
  - it overlaps no present object's mask box with IoU > rho_occ (it is not someone already
    tracked: the paper's "IoU with Box(P > 0.5) < rho_occ"), and
  - no other lost object is more similar to it (one box, one identity).
The paper's single-object form is the case K = 1 with the object's current box as the only
present box.
"""
import dataclasses
from typing import Optional

import numpy as np

from vsreid_jax.data.objects import box_iou


@dataclasses.dataclass(frozen=True)
class Retrieval:
  frame: int
  object_index: int  # 0..K-1 (not the palette id)
  candidate: int  # index into the frame's candidates
  score: float  # cosine similarity to the template
  box: tuple  # (x0, y0, x1, y1)


def similarity(embeddings: np.ndarray, templates: np.ndarray) -> np.ndarray:
  """Cosine similarity [M, K] of L2-normalised embeddings[M, D] and templates[K, D]."""
  return np.asarray(embeddings, np.float32) @ np.asarray(templates, np.float32).T


def reidentify(boxes: np.ndarray, valid: np.ndarray, embeddings: np.ndarray, templates: np.ndarray,
               lost: np.ndarray, object_boxes: np.ndarray, present: np.ndarray,
               rho_reid: float, rho_occ: float):
  """One frame: for every object, the accepted candidate (index, score) or (-1, best score seen).

  boxes[M, 4], valid[M], embeddings[M, D]: the frame's candidates; templates[K, D]; lost[K] bool;
  object_boxes[K, 4] and present[K]: the mask boxes of the objects present in this frame.
  """
  k = templates.shape[0]
  index = np.full(k, -1, np.int64)
  score = np.full(k, -np.inf, np.float32)
  valid = np.asarray(valid, bool)
  lost = np.asarray(lost, bool)
  if not valid.any() or not lost.any():
    return index, score
  sim = similarity(embeddings, templates)  # [M, K]
  if np.any(present):
    overlap = box_iou(boxes, np.asarray(object_boxes)[np.asarray(present, bool)]).max(axis=1)
  else:
    overlap = np.zeros(len(boxes), np.float32)
  free = valid & (overlap <= rho_occ)
  sim_lost = np.where(lost[None, :], sim, -np.inf)
  owner = np.argmax(sim_lost, axis=1)  # the lost object each candidate resembles most
  for obj in np.flatnonzero(lost):
    s = np.where(free & (owner == obj), sim[:, obj], -np.inf)
    best = int(np.argmax(s))
    score[obj] = s[best]
    if s[best] > rho_reid:
      index[obj] = best
  return index, score


def best_retrieval(candidates, templates: np.ndarray, lost: np.ndarray, object_boxes: np.ndarray,
                   present: np.ndarray, rho_reid: float, rho_occ: float,
                   skip: Optional[set] = None) -> Optional[Retrieval]:
  """Algorithm 2 over all frames: the single most similar accepted (frame, object), or None.

  candidates: per frame (boxes[M, 4], valid[M], embeddings[M, D]) (a `solver.caches.Candidates`);
  lost[T, K], object_boxes[T, K, 4], present[T, K]; `skip`: (frame, object) pairs already tried.
  """
  best = None
  for t in range(len(lost)):
    if not lost[t].any():
      continue
    boxes, valid, emb = candidates.boxes[t], candidates.valid[t], candidates.embeddings[t]
    index, score = reidentify(boxes, valid, emb, templates, lost[t], object_boxes[t], present[t],
                              rho_reid, rho_occ)
    for obj in np.flatnonzero(index >= 0):
      if skip and (t, int(obj)) in skip:
        continue
      if best is None or score[obj] > best.score:
        best = Retrieval(t, int(obj), int(index[obj]), float(score[obj]), tuple(float(v) for v in boxes[index[obj]]))
  return best
