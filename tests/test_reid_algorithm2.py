"""Algorithm 2: which candidate re-identifies which lost object (reid/algorithm2.py)."""
import types

import numpy as np

from vsreid_jax.reid import algorithm2


def _unit(v):
  v = np.asarray(v, np.float32)
  return v / np.linalg.norm(v, axis=-1, keepdims=True)


TEMPLATES = _unit([[1, 0, 0], [0, 1, 0]])
BOXES = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], np.float32)
EMB = _unit([[0.9, 0.1, 0], [0.2, 0.8, 0.1], [0.1, 0, 1]])
VALID = np.array([True, True, True])


def test_accepts_the_most_similar_candidate_above_rho_reid():
  index, score = algorithm2.reidentify(BOXES, VALID, EMB, TEMPLATES, lost=np.array([True, True]),
                                       object_boxes=np.zeros((2, 4)), present=np.array([False, False]),
                                       rho_reid=0.5, rho_occ=0.3)
  np.testing.assert_array_equal(index, [0, 1])
  np.testing.assert_allclose(score, [EMB[0, 0], EMB[1, 1]], rtol=1e-6)
  # A higher threshold rejects both.
  index, _ = algorithm2.reidentify(BOXES, VALID, EMB, TEMPLATES, np.array([True, True]), np.zeros((2, 4)),
                                   np.array([False, False]), rho_reid=0.995, rho_occ=0.3)
  np.testing.assert_array_equal(index, [-1, -1])


def test_present_objects_are_not_retrieved_and_block_overlapping_boxes():
  # Object 1 is present with a box on candidate 1: only object 0 is considered; and a candidate
  # overlapping object 1's box (IoU > rho_occ) is not given to object 0 even if similar.
  emb = _unit([[0.2, 0.9, 0], [0.95, 0.05, 0], [0.1, 0, 1]])
  index, _ = algorithm2.reidentify(BOXES, VALID, emb, TEMPLATES, lost=np.array([True, False]),
                                   object_boxes=np.array([[0, 0, 0, 0], [21, 21, 31, 31]], np.float32),
                                   present=np.array([False, True]), rho_reid=0.5, rho_occ=0.3)
  np.testing.assert_array_equal(index, [-1, -1])
  index, _ = algorithm2.reidentify(BOXES, VALID, emb, TEMPLATES, lost=np.array([True, False]),
                                   object_boxes=np.array([[0, 0, 0, 0], [100, 100, 110, 110]], np.float32),
                                   present=np.array([False, True]), rho_reid=0.5, rho_occ=0.3)
  np.testing.assert_array_equal(index, [1, -1])


def test_one_box_one_identity_and_invalid_candidates():
  # Candidate 0 resembles both lost objects, object 0 more: object 1 may not take it.
  emb = _unit([[0.8, 0.6, 0], [0, 0, 1], [0, 0, 1]])
  index, _ = algorithm2.reidentify(BOXES, VALID, emb, TEMPLATES, np.array([True, True]), np.zeros((2, 4)),
                                   np.array([False, False]), rho_reid=0.5, rho_occ=0.3)
  np.testing.assert_array_equal(index, [0, -1])
  index, _ = algorithm2.reidentify(BOXES, np.array([False, True, True]), emb, TEMPLATES, np.array([True, True]),
                                   np.zeros((2, 4)), np.array([False, False]), rho_reid=0.5, rho_occ=0.3)
  np.testing.assert_array_equal(index, [-1, -1])


def test_best_retrieval_over_frames_skips_tried_pairs():
  cands = types.SimpleNamespace(boxes=np.stack([BOXES] * 3), valid=np.stack([VALID] * 3),
                                embeddings=np.stack([EMB, _unit([[1, 0, 0], [0, 1, 0], [0, 0, 1]]), EMB]))
  lost = np.array([[False, False], [True, False], [True, True]])
  present = ~lost
  obj_boxes = np.zeros((3, 2, 4), np.float32)
  obj_boxes[1, 1] = [100, 100, 110, 110]
  best = algorithm2.best_retrieval(cands, TEMPLATES, lost, obj_boxes, present, 0.5, 0.3)
  assert (best.frame, best.object_index, best.candidate) == (1, 0, 0)
  assert best.score > 0.99 and best.box == (0.0, 0.0, 10.0, 10.0)
  nxt = algorithm2.best_retrieval(cands, TEMPLATES, lost, obj_boxes, present, 0.5, 0.3, skip={(1, 0)})
  assert (nxt.frame, nxt.object_index) == (2, 0)
  assert algorithm2.best_retrieval(cands, TEMPLATES, lost, obj_boxes, present, 0.5, 0.3,
                                   skip={(1, 0), (2, 0), (2, 1)}) is None


def test_occlusion_filter_uses_rho_occ_not_rho_reid():
  # Candidate 1 resembles lost object 0 (similarity ~1) but overlaps present object 1's box with
  # IoU 60 / 140 = 0.43: it is someone already tracked exactly when rho_occ < 0.43, whatever rho_reid.
  emb = _unit([[0.2, 0.9, 0], [0.95, 0.05, 0], [0.1, 0, 1]])
  object_boxes = np.array([[0, 0, 0, 0], [24, 20, 34, 30]], np.float32)

  def given(rho_reid, rho_occ):
    index, _ = algorithm2.reidentify(BOXES, VALID, emb, TEMPLATES, lost=np.array([True, False]),
                                     object_boxes=object_boxes, present=np.array([False, True]),
                                     rho_reid=rho_reid, rho_occ=rho_occ)
    return int(index[0])

  assert given(rho_reid=0.5, rho_occ=0.3) == -1  # IoU 0.43 > rho_occ: blocked
  assert given(rho_reid=0.3, rho_occ=0.5) == 1  # IoU 0.43 <= rho_occ: free, similarity 0.99 > rho_reid
  assert given(rho_reid=0.9, rho_occ=0.45) == 1
  assert given(rho_reid=0.3, rho_occ=0.4) == -1
