"""Algorithm 2 of VS-ReID: re-identify objects among a frame's detector candidates.

Host numpy on cached candidates (a frame has a few dozen), so the solver can re-run it over every
frame after each recovery at no network cost. Two rules (DESIGN.md "Retrieval, two readings"):

"original" (`reidentify`, the original test code): only objects that are lost in the frame are
considered; a candidate is accepted for lost object k when
  - its cosine similarity to k's template is > rho_reid,
  - it overlaps no present object's mask box with IoU > rho_occ (it is not someone already
    tracked), and
  - no other lost object is more similar to it (one box, one identity); with `rivals` set (issue
    20, off by default), no other object at all, present ones included, is more similar to it than
    its similarity to k minus `rivals`: a box on the occluder looks more like the occluder's own
    template than like the hidden object's.

"paper" (`reidentify_paper`, the paper's Algorithm 2): every (frame, object) pair, lost or not;
take the candidate most similar to k (the highest ranking score, which is the similarity unless
the solver adds evidence to it); accept it when its similarity is > rho_reid and its IoU with the
box of k's CURRENT mask is < rho_occ ("we believe that we have made a wrong prediction of P_i,k"):
a mask that slid onto an occluder or a distractor gets corrected, not only a lost one. A lost
object has no current box (IoU 0).

A stricter drift test (issue 20; `drift_iou` set, off in the paper) for a PRESENT object: its top
candidate is taken only when it is clearly elsewhere (IoU with the current mask box < drift_iou, a
small number: a detector box looser or tighter than a right mask overlaps it with IoU 0.1-0.3) and
clearly more like the object than what the current mask covers (similarity > the current mask's
evidence + drift_margin; the evidence is the best similarity to the object of a candidate on the
current mask box, 0 where none). `exclusive` (every pair) refuses a top candidate that another
present object's mask box covers (IoU >= rho_occ): that candidate is being tracked as someone else.

Templates are [K, D] (one per object) or [K, R, D] (R per object, e.g. frame 0 plus frames the
solver was confident in; the similarity to an object is the best over its R).
"""
import dataclasses
from typing import Optional

import numpy as np

from vsreid_jax.geometry import box_containment, box_iou


@dataclasses.dataclass(frozen=True)
class Retrieval:
  frame: int
  object_index: int  # 0..K-1 (not the palette id)
  candidate: int  # index into the frame's candidates
  score: float  # cosine similarity to the template
  box: tuple  # (x0, y0, x1, y1)


RULES = ("original", "paper")


def similarity(embeddings: np.ndarray, templates: np.ndarray) -> np.ndarray:
  """Cosine similarity [M, K] of L2-normalised embeddings[M, D] and templates[K, D] (or [K, R, D]:
  the best of each object's R templates)."""
  emb = np.asarray(embeddings, np.float32)
  tmpl = np.asarray(templates, np.float32)
  if tmpl.ndim == 2:
    return emb @ tmpl.T
  return np.einsum("md,krd->mkr", emb, tmpl).max(axis=-1)


def reidentify_paper(boxes: np.ndarray, valid: np.ndarray, sim: np.ndarray, consider: np.ndarray,
                     object_boxes: np.ndarray, present: np.ndarray, rho_reid: float, rho_occ: float,
                     rank: Optional[np.ndarray] = None, evidence: Optional[np.ndarray] = None,
                     drift_iou: Optional[float] = None, drift_margin: float = 0.0, exclusive: bool = False):
  """The paper's rule in one frame: per object, the accepted candidate (index, similarity) or -1.

  Args:
    boxes: [M, 4] the frame's candidate boxes; valid: [M] bool.
    sim: [M, K] similarity of each candidate to each object's template(s).
    consider: [K] bool, the objects to consider in this frame (all but frame 0's, in the solver).
    object_boxes: [K, 4] the box of each object's current mask; present: [K] (absent: IoU 0).
    rho_reid, rho_occ: the similarity above which (a float, or [K] per object), and the IoU with
      the current box below which, the most similar candidate is accepted.
    rank: [M, K] the score candidates are ranked by (default: sim); acceptance still tests sim.
    evidence: [K] the current mask's evidence (needed with drift_iou; module docstring).
    drift_iou, drift_margin: the stricter drift test of a present object (None: the paper's alone).
    exclusive: refuse a top candidate covered by another present object's mask box.
  Returns:
    (index [K] int64, -1 where none accepted; score [K] float32, the similarity of the top-ranked
    candidate, -inf where none is valid).
  """
  k = sim.shape[1]
  index = np.full(k, -1, np.int64)
  score = np.full(k, -np.inf, np.float32)
  valid = np.asarray(valid, bool)
  if not valid.any():
    return index, score
  rank = sim if rank is None else rank
  allowed = valid[:, None] & np.isfinite(rank)  # [M, K]: a rank of -inf rules a candidate out (a gate)
  top = np.argmax(np.where(allowed, rank, -np.inf), axis=0)  # [K] the most similar candidate
  present = np.asarray(present, bool)
  overlap = box_iou(boxes[top], object_boxes) * present[None, :]  # [K, K]: top of k vs mask box of j
  iou = np.diagonal(overlap)
  if drift_iou is not None and evidence is None:
    raise ValueError("the stricter drift test (drift_iou) needs the current masks' evidence")
  rho = np.broadcast_to(np.asarray(rho_reid, np.float32), (k,))
  for obj in np.flatnonzero(consider):
    if not allowed[top[obj], obj]:
      continue
    score[obj] = sim[top[obj], obj]
    ok = score[obj] > rho[obj] and iou[obj] < rho_occ
    if ok and drift_iou is not None and present[obj]:
      ok = iou[obj] < drift_iou and score[obj] > evidence[obj] + drift_margin
    if ok and exclusive:
      ok = not np.any(np.delete(overlap[obj], obj) >= rho_occ)
    if ok:
      index[obj] = top[obj]
  return index, score


def reidentify(boxes: np.ndarray, valid: np.ndarray, embeddings: np.ndarray, templates: np.ndarray,
               lost: np.ndarray, object_boxes: np.ndarray, present: np.ndarray,
               rho_reid: float, rho_occ: float, bonus: Optional[np.ndarray] = None,
               containment: Optional[float] = None, rivals: Optional[float] = None):
  """One frame: for every object, the accepted candidate (index, score) or (-1, best score seen).

  boxes[M, 4], valid[M], embeddings[M, D]: the frame's candidates; templates[K, D]; lost[K] bool;
  object_boxes[K, 4] and present[K]: the mask boxes of the objects present in this frame;
  rho_reid: a float or [K] (each object's threshold); bonus: None or [M, K] added to the
  similarity to pick each object's candidate (e.g. motion continuity; -inf: not a candidate for
  that object); acceptance still tests the similarity alone; containment: None, or a candidate is
  also not free when its intersection with a present object's box exceeds this share of the smaller
  of the two boxes (one box mostly inside the other: a partial box on an occluder, or a loose box
  around a smaller present object, overlap with IoU <= rho_occ); rivals: None, or a candidate is for
  lost object k only when its similarity to k is >= its similarity to every other object's template
  (present or lost) - rivals.
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
    others = np.asarray(object_boxes, np.float32)[np.asarray(present, bool)]
    overlap = box_iou(boxes, others).max(axis=1)
  else:
    others, overlap = None, np.zeros(len(boxes), np.float32)
  free = valid & (overlap <= rho_occ)
  if containment is not None and others is not None:
    free &= box_containment(boxes, others).max(axis=1) <= containment
  sim_lost = np.where(lost[None, :], sim, -np.inf)
  owner = np.argmax(sim_lost, axis=1)  # the lost object each candidate resembles most
  if rivals is not None and k > 1:
    eye = np.eye(k, dtype=bool)
    rival = np.where(eye[None], -np.inf, sim[:, None, :]).max(axis=2)  # [M, K] best other object
  for obj in np.flatnonzero(lost):
    mine = free & (owner == obj)
    if bonus is not None:
      mine &= np.isfinite(bonus[:, obj])  # a bonus of -inf rules a candidate out (the motion gate)
    if rivals is not None and k > 1:
      mine &= sim[:, obj] >= rival[:, obj] - rivals
    s = np.where(mine, sim[:, obj], -np.inf)
    best = int(np.argmax(s if bonus is None else np.where(mine, sim[:, obj] + bonus[:, obj], -np.inf)))
    score[obj] = s[best]
    if s[best] > np.broadcast_to(np.asarray(rho_reid, np.float32), (k,))[obj]:
      index[obj] = best
  return index, score


def best_retrieval(candidates, templates: np.ndarray, lost: np.ndarray, object_boxes: np.ndarray,
                   present: np.ndarray, rho_reid: float, rho_occ: float,
                   skip: Optional[set] = None, rule: str = "original", consider: Optional[np.ndarray] = None,
                   bonus=None, evidence: Optional[np.ndarray] = None, drift_iou: Optional[float] = None,
                   drift_margin: float = 0.0, exclusive: bool = False,
                   containment: Optional[float] = None, rivals: Optional[float] = None) -> Optional[Retrieval]:
  """Algorithm 2 over all frames: the single best accepted (frame, object), or None.

  Args:
    candidates: per frame (boxes[M, 4], valid[M], embeddings[M, D]) (a `solver.caches.Candidates`).
    templates: [K, D] or [K, R, D].
    lost: [T, K] the objects lost in each frame (the "original" rule considers only these).
    object_boxes: [T, K, 4] and present: [T, K], the boxes of the current masks.
    rho_reid, rho_occ: the thresholds of the rule (rho_reid a float or [K] per object).
    skip: (frame, object) pairs already tried (or not to be retrieved).
    rule: "original" or "paper" (module docstring).
    consider: [T, K] the pairs the "paper" rule considers (default: every pair but frame 0's).
    bonus: None or a function t -> [M, K] added to the similarity to rank candidates and pairs
      (either rule; e.g. motion continuity); acceptance still tests the similarity alone.
    evidence: [T, K] the current masks' evidence; drift_iou, drift_margin, exclusive: the stricter
      drift test of the "paper" rule (`reidentify_paper`; None: the paper's test alone).
    containment, rivals: the original rule's further free and owner tests (`reidentify`).
  Returns:
    The accepted pair with the highest ranking score (ties: the earliest frame, then the lowest
    object index), or None.
  """
  if rule not in RULES:
    raise ValueError(f"retrieval rule {rule!r}: choose one of {', '.join(RULES)}")
  if rule == "paper" and consider is None:
    consider = np.ones(np.shape(lost), bool)
    consider[0] = False  # frame 0 is given
  best, best_rank = None, -np.inf
  for t in range(len(lost)):
    todo = lost[t] if rule == "original" else consider[t]
    if not np.any(todo):
      continue
    boxes, valid, emb = candidates.boxes[t], candidates.valid[t], candidates.embeddings[t]
    rank = extra = None
    if rule == "original":
      extra = None if bonus is None else bonus(t)
      index, score = reidentify(boxes, valid, emb, templates, lost[t], object_boxes[t], present[t],
                                rho_reid, rho_occ, extra, containment, rivals)
    else:
      sim = similarity(emb, templates)
      rank = sim if bonus is None else sim + bonus(t)
      index, score = reidentify_paper(boxes, valid, sim, consider[t], object_boxes[t], present[t],
                                      rho_reid, rho_occ, rank, None if evidence is None else evidence[t],
                                      drift_iou, drift_margin, exclusive)
    for obj in np.flatnonzero(index >= 0):
      if skip and (t, int(obj)) in skip:
        continue
      if rank is not None:
        r = rank[index[obj], obj]
      else:  # the original rule: the accepted candidate's similarity is its score
        r = score[obj] if extra is None else score[obj] + extra[index[obj], obj]
      if best is None or r > best_rank:
        best, best_rank = Retrieval(t, int(obj), int(index[obj]), float(score[obj]),
                                    tuple(float(v) for v in boxes[index[obj]])), r
  return best
