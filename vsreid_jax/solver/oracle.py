"""An oracle detector and ReID net from ground truth: every row of an ablation read against its ceiling.

Candidates are the ground-truth boxes of each frame; the embedding of a candidate is one-hot of its
object (a perfect ReID: similarity 1 to its own template, 0 to every other), so retrieval never
errs and what is left is the rule, the recovery and N_mp. An object showing less than `min_area`
pixels in a frame (e.g. a sliver past an occluder) gives no candidate there: a detector would not
find it, and a recovery from it is lost at once (Algorithm 1's lost rule).
"""
from typing import Sequence, Tuple

import numpy as np

from vsreid_jax.geometry import box_iou, mask_box_np
from vsreid_jax.solver.caches import Candidates


def oracle_candidates(masks: Sequence[np.ndarray], object_ids: Sequence[int],
                      min_area: Sequence[float]) -> Tuple[Candidates, np.ndarray]:
  """(Candidates, templates [K, K + 1]) from ground-truth id masks.

  Args:
    masks: T id masks [H, W] (0 background; ids not in object_ids are other objects, embedded
      as "other", dimension K).
    object_ids: [K] the ids of the objects segmented (the first-frame mask's).
    min_area: [K] the fewest pixels of object k that make a candidate.
  Returns:
    Candidates with M = the most objects in any frame (at least 1): boxes [T, M, 4], scores 1
    where valid, valid [T, M], embeddings [T, M, K + 1]; and the templates eye(K, K + 1).
  """
  object_ids = [int(i) for i in object_ids]
  k = len(object_ids)
  per_frame = []
  for ids in masks:
    ids = np.asarray(ids)
    found = []
    for v in np.unique(ids):
      if v in (0, 255):
        continue
      m = ids == v
      j = object_ids.index(int(v)) if int(v) in object_ids else k
      if j < k and m.sum() < min_area[j]:
        continue
      found.append((mask_box_np(m), j))
    per_frame.append(found)
  t, mm = len(per_frame), max(1, max(len(f) for f in per_frame))
  boxes = np.zeros((t, mm, 4), np.float32)
  valid = np.zeros((t, mm), bool)
  emb = np.zeros((t, mm, k + 1), np.float32)
  for i, found in enumerate(per_frame):
    for m, (box, j) in enumerate(found):
      boxes[i, m], valid[i, m], emb[i, m, j] = box, True, 1.0
  return Candidates(boxes, valid.astype(np.float32), valid, emb), np.eye(k, k + 1, dtype=np.float32)


def oracle_identities(cands: Candidates, masks: Sequence[np.ndarray], object_ids: Sequence[int],
                      min_area: Sequence[float], min_iou: float = 0.5) -> Tuple[Candidates, np.ndarray]:
  """The detector's own boxes with a perfect ReID: half of the oracle, to tell the detector's losses
  from the ReID's.

  Args:
    cands: the detector's candidates of every frame (boxes [T, M, 4], scores, valid [T, M]).
    masks: T ground-truth id masks [H, W]; object_ids: [K] the objects segmented.
    min_area: [K] the fewest pixels of object k that make it findable in a frame (as oracle_candidates).
    min_iou: a box is object k's when its IoU with k's ground-truth box is at least this (the
      highest such k); otherwise it is "other".
  Returns:
    (Candidates with the same boxes, scores and valid, embeddings [T, M, K + 1] one-hot of the
    identity so found), templates eye(K, K + 1).
  """
  k = len(object_ids)
  t, m = cands.valid.shape
  gt, _ = oracle_candidates(masks, object_ids, min_area)  # the findable objects' GT boxes
  emb = np.zeros((t, m, k + 1), np.float32)
  for i in range(t):
    ident = np.full(m, k)
    ours = gt.valid[i] & (gt.embeddings[i, :, :k].sum(axis=1) > 0)  # the segmented objects, not "other"
    if ours.any():
      js = gt.embeddings[i][ours, :k].argmax(axis=1)
      iou = box_iou(cands.boxes[i], gt.boxes[i][ours])  # [M, n]
      best = iou.argmax(axis=1)
      ok = iou[np.arange(m), best] >= min_iou
      ident[ok] = js[best[ok]]
    emb[i, np.arange(m), ident] = 1.0
    emb[i, ~cands.valid[i]] = 0.0
  return Candidates(cands.boxes, cands.scores, cands.valid, emb), np.eye(k, k + 1, dtype=np.float32)


def oracle_boxes(frames, masks: Sequence[np.ndarray], object_ids: Sequence[int], min_area: Sequence[float],
                 embedder) -> Candidates:
  """Ground-truth boxes (as oracle_candidates: every object's, others' included) embedded by the
  ReID net: the other half of the oracle (a perfect detector, the real ReID). The templates stay the
  ReID's own (`caches.templates`).

  Args:
    frames: the T frames [H, W, 3] uint8; masks, object_ids, min_area: as oracle_candidates.
    embedder: a reid.embedder.Embedder (`embed(images [1, H, W, 3], boxes [1, M, 4])`).
  Returns:
    Candidates: boxes [T, M, 4], scores 1 where valid, valid [T, M], embeddings [T, M, D].
  """
  gt, _ = oracle_candidates(masks, object_ids, min_area)
  emb = np.stack([np.asarray(embedder.embed(np.asarray(frames[i])[None], gt.boxes[i][None]))[0]
                  for i in range(len(gt))]).astype(np.float32)
  emb[~gt.valid] = 0.0
  return Candidates(gt.boxes, gt.scores, gt.valid, emb)
