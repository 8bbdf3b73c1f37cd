"""Algorithm 2: which candidate re-identifies which lost object (reid/algorithm2.py)."""
import types

import numpy as np
import pytest

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
def test_paper_rule_corrects_a_present_object_whose_mask_is_elsewhere():
  # Both objects are present. Object 0's current box is far from its most similar candidate (0):
  # accepted. Object 1's current box sits on its most similar candidate (1): IoU >= rho_occ, kept.
  sim = algorithm2.similarity(EMB, TEMPLATES)
  object_boxes = np.array([[100, 100, 110, 110], [21, 21, 31, 31]], np.float32)
  index, score = algorithm2.reidentify_paper(BOXES, VALID, sim, np.array([True, True]), object_boxes,
                                             np.array([True, True]), rho_reid=0.5, rho_occ=0.3)
  np.testing.assert_array_equal(index, [0, -1])
  np.testing.assert_allclose(score, [sim[0, 0], sim[1, 1]])
  # The original rule never looks at present objects.
  index, _ = algorithm2.reidentify(BOXES, VALID, EMB, TEMPLATES, np.array([False, False]), object_boxes,
                                   np.array([True, True]), rho_reid=0.5, rho_occ=0.3)
  np.testing.assert_array_equal(index, [-1, -1])


def test_paper_rule_takes_the_most_similar_before_testing_iou():
  # Object 0's most similar candidate (0) overlaps its current box: rejected, and the rule does
  # NOT fall back to a less similar free candidate (the original rule filters first).
  emb = _unit([[0.95, 0.05, 0], [0.8, 0.2, 0], [0, 0, 1]])
  sim = algorithm2.similarity(emb, TEMPLATES)
  object_boxes = np.array([[1, 1, 11, 11], [0, 0, 0, 0]], np.float32)
  index, _ = algorithm2.reidentify_paper(BOXES, VALID, sim, np.array([True, False]), object_boxes,
                                         np.array([True, False]), rho_reid=0.5, rho_occ=0.3)
  np.testing.assert_array_equal(index, [-1, -1])
  # A ranking bonus (e.g. motion continuity) changes which candidate is the top one; acceptance
  # still tests the similarity.
  rank = sim + np.array([[0, 0], [0.5, 0], [0, 0]], np.float32)
  index, score = algorithm2.reidentify_paper(BOXES, VALID, sim, np.array([True, False]), object_boxes,
                                             np.array([True, False]), 0.5, 0.3, rank=rank)
  np.testing.assert_array_equal(index, [1, -1])
  assert score[0] == sim[1, 0]
  index, _ = algorithm2.reidentify_paper(BOXES, VALID, sim, np.array([True, False]), object_boxes,
                                         np.array([True, False]), 0.98, 0.3, rank=rank)
  np.testing.assert_array_equal(index, [-1, -1])


def test_best_retrieval_paper_rule_over_frames_and_template_sets():
  cands = types.SimpleNamespace(boxes=np.stack([BOXES] * 3), valid=np.stack([VALID] * 3),
                                embeddings=np.stack([EMB] * 3))
  present = np.ones((3, 2), bool)
  obj_boxes = np.stack([BOXES[:2]] * 3).copy()  # every current mask on its own candidate
  obj_boxes[2, 1] = [70, 70, 80, 80]  # object 1's mask drifted away in frame 2
  lost = ~present
  assert algorithm2.best_retrieval(cands, TEMPLATES, lost, obj_boxes, present, 0.5, 0.3) is None  # original
  best = algorithm2.best_retrieval(cands, TEMPLATES, lost, obj_boxes, present, 0.5, 0.3, rule="paper")
  assert (best.frame, best.object_index, best.candidate) == (2, 1, 1)
  # Frame 0 is never considered, even when its box disagrees.
  obj_boxes[0, 0] = [70, 70, 80, 80]
  best = algorithm2.best_retrieval(cands, TEMPLATES, lost, obj_boxes, present, 0.5, 0.3, rule="paper")
  assert (best.frame, best.object_index) == (2, 1)
  # [K, R, D] templates: the best of each object's set.
  sets = np.stack([TEMPLATES, _unit([[0, 0, 1], [0, 0, 1]])], axis=1)
  np.testing.assert_allclose(algorithm2.similarity(EMB, sets)[2], [EMB[2, 2], EMB[2, 2]], rtol=1e-6)


def _strict(sim, object_boxes, present, evidence, **kw):
  return algorithm2.reidentify_paper(BOXES, VALID, sim, np.ones(sim.shape[1], bool), object_boxes, present,
                                     rho_reid=0.5, rho_occ=0.3, evidence=evidence, **kw)[0]


def test_strict_drift_test_refuses_a_box_mismatch_the_paper_rule_takes():
  # Object 0's current mask box overlaps its top candidate (0) with IoU 0.2 (a looser detector
  # box, not a drifted mask): below rho_occ, so the paper's test takes it; the stricter test needs
  # the candidate clearly elsewhere (IoU < drift_iou 0.1) and refuses it.
  sim = algorithm2.similarity(EMB, TEMPLATES)
  object_boxes = np.array([[0, 0, 10, 2], [100, 100, 110, 110]], np.float32)
  np.testing.assert_allclose(algorithm2.box_iou(BOXES[:1], object_boxes[:1])[0, 0], 0.2, rtol=1e-6)
  present = np.array([True, True])
  evidence = np.zeros(2, np.float32)
  np.testing.assert_array_equal(_strict(sim, object_boxes, present, None), [0, 1])  # the paper's test
  np.testing.assert_array_equal(_strict(sim, object_boxes, present, evidence, drift_iou=0.1), [-1, 1])
  # A lost object has no current box: the stricter test does not apply to it.
  np.testing.assert_array_equal(_strict(sim, object_boxes, np.array([False, True]), evidence, drift_iou=0.1),
                                [0, 1])


def test_strict_drift_test_needs_the_candidate_to_beat_the_current_mask_evidence_by_the_margin():
  # Object 1's mask is far from its top candidate (IoU 0); what its current mask box covers is a
  # candidate as similar as 0.8 (its evidence). Top similarity 0.8/|(0.2,0.8,0.1)| = 0.963.
  sim = algorithm2.similarity(EMB, TEMPLATES)
  object_boxes = np.array([[0, 0, 10, 10], [100, 100, 110, 110]], np.float32)
  present = np.array([True, True])
  top = float(sim[1, 1])
  for evidence, margin, taken in ((0.0, 0.0, True), (top - 0.01, 0.0, True), (top - 0.01, 0.05, False),
                                  (top, 0.0, False)):
    index = _strict(sim, object_boxes, present, np.array([1.0, evidence], np.float32), drift_iou=0.1,
                    drift_margin=margin)
    assert index[1] == (1 if taken else -1), (evidence, margin)
    assert index[0] == -1  # object 0 sits on its own candidate
  try:
    _strict(sim, object_boxes, present, None, drift_iou=0.1)
  except ValueError as e:
    assert "evidence" in str(e)
  else:
    raise AssertionError("drift_iou without evidence must be refused")


def test_exclusive_refuses_a_candidate_another_present_object_covers():
  # Object 0 (lost) is most like candidate 0, but candidate 0 is where object 1's mask is (a twin
  # already tracked as object 1): exclusive refuses it; object 1 keeps its own.
  emb = _unit([[0.9, 0.4, 0], [0, 0, 1], [0, 0, 1]])
  sim = algorithm2.similarity(emb, TEMPLATES)
  object_boxes = np.array([[0, 0, 0, 0], [1, 1, 11, 11]], np.float32)
  present = np.array([False, True])
  kw = dict(rho_reid=0.5, rho_occ=0.3)
  consider = np.array([True, True])
  index, _ = algorithm2.reidentify_paper(BOXES, VALID, sim, consider, object_boxes, present, **kw)
  np.testing.assert_array_equal(index, [0, -1])
  index, _ = algorithm2.reidentify_paper(BOXES, VALID, sim, consider, object_boxes, present, exclusive=True, **kw)
  np.testing.assert_array_equal(index, [-1, -1])
  # The same box free of object 1 (elsewhere): taken.
  index, _ = algorithm2.reidentify_paper(BOXES, VALID, sim, consider, np.array([[0, 0, 0, 0], [50, 50, 60, 60]],
                                                                                 np.float32), present,
                                         exclusive=True, **kw)
  np.testing.assert_array_equal(index, [0, -1])


def test_a_threshold_per_object_accepts_each_object_against_its_own():
  # Both candidates score 0.8 to their object (EMB rows 0 and 1 tilted): a threshold of 0.9 for
  # object 0 and 0.7 for object 1 takes object 1's only, under either rule.
  emb = _unit([[0.8, 0, 0.6], [0, 0.8, 0.6], [0.1, 0, 1]])
  rho = np.array([0.9, 0.7], np.float32)
  index, _ = algorithm2.reidentify(BOXES, VALID, emb, TEMPLATES, np.array([True, True]), np.zeros((2, 4)),
                                   np.array([False, False]), rho_reid=rho, rho_occ=0.3)
  np.testing.assert_array_equal(index, [-1, 1])
  index, _ = algorithm2.reidentify_paper(BOXES, VALID, algorithm2.similarity(emb, TEMPLATES), np.array([True, True]),
                                         np.zeros((2, 4)), np.array([False, False]), rho, 0.3)
  np.testing.assert_array_equal(index, [-1, 1])


def test_original_rule_with_motion_takes_the_look_alike_near_where_the_object_was():
  # A lost object and two look-alikes: the twin far away is a little more similar (0.95) than the
  # candidate near the object's last box (0.9). Similarity alone takes the twin; with a motion bonus
  # the near one; acceptance still tests the similarity (the near one at 0.92 threshold: refused).
  emb = _unit([[0.95, np.sqrt(1 - 0.95 ** 2), 0], [0.9, 0, np.sqrt(1 - 0.81)], [0, 0, 1]])
  args = (BOXES, VALID, emb, TEMPLATES[:1], np.array([True]), np.zeros((1, 4)), np.array([False]))
  index, _ = algorithm2.reidentify(*args, rho_reid=0.5, rho_occ=0.3)
  assert index[0] == 0
  near = np.array([[0.0], [0.3], [0.0]], np.float32)  # candidate 1 is near the object's last box
  index, score = algorithm2.reidentify(*args, rho_reid=0.5, rho_occ=0.3, bonus=near)
  assert index[0] == 1 and abs(score[0] - 0.9) < 1e-5
  index, _ = algorithm2.reidentify(*args, rho_reid=0.92, rho_occ=0.3, bonus=near)
  assert index[0] == -1
  # Over frames, pairs are ranked by similarity + bonus too: frame 1's near candidate (0.9 + 0.3)
  # beats frame 0's far twin (0.95).
  cands = types.SimpleNamespace(boxes=np.stack([BOXES] * 2), valid=np.stack([VALID] * 2),
                                embeddings=np.stack([_unit([[0.95, np.sqrt(1 - 0.95 ** 2), 0], [0, 1, 0], [0, 0, 1]]),
                                                     emb]))
  lost = np.array([[True], [True]])
  boxes0 = np.zeros((2, 1, 4), np.float32)
  best = algorithm2.best_retrieval(cands, TEMPLATES[:1], lost, boxes0, ~lost, 0.5, 0.3)
  assert (best.frame, best.candidate) == (0, 0)
  bonus = lambda t: near if t == 1 else np.zeros((3, 1), np.float32)
  best = algorithm2.best_retrieval(cands, TEMPLATES[:1], lost, boxes0, ~lost, 0.5, 0.3, bonus=bonus)
  assert (best.frame, best.candidate) == (1, 1) and abs(best.score - 0.9) < 1e-5


def test_containment_refuses_a_partial_box_on_a_present_object_that_iou_lets_through():
  # Object 0 is lost; object 1 is present with a big box. Candidate 0, a narrow box inside object
  # 1's box (IoU 0.2 <= rho_occ), and candidate 1, a loose box around a small present object 2
  # (IoU 0.25), both look like object 0. The IoU test frees both; containment 0.5 frees neither;
  # candidate 2, apart from every present object, is free either way.
  templates = _unit([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
  boxes = np.array([[10, 10, 20, 60], [100, 0, 150, 50], [200, 0, 220, 20]], np.float32)
  emb = _unit([[1, 0.05, 0], [1, 0.1, 0], [1, 0.3, 0.3]])
  object_boxes = np.array([[0, 0, 0, 0], [0, 10, 50, 60], [110, 10, 135, 35]], np.float32)
  present = np.array([False, True, True])
  lost = np.array([True, False, False])
  np.testing.assert_allclose(algorithm2.box_iou(boxes[:2], object_boxes[1:]).diagonal(), [0.2, 0.25])
  index, _ = algorithm2.reidentify(boxes, np.array([True, True, False]), emb, templates, lost, object_boxes,
                                   present, rho_reid=0.5, rho_occ=0.3)
  assert index[0] == 0
  index, _ = algorithm2.reidentify(boxes, np.array([False, True, False]), emb, templates, lost, object_boxes,
                                   present, rho_reid=0.5, rho_occ=0.3)
  assert index[0] == 1
  index, _ = algorithm2.reidentify(boxes, np.array([True, True, False]), emb, templates, lost, object_boxes,
                                   present, rho_reid=0.5, rho_occ=0.3, containment=0.5)
  assert index[0] == -1
  index, _ = algorithm2.reidentify(boxes, VALID, emb, templates, lost, object_boxes, present, rho_reid=0.5,
                                   rho_occ=0.3, containment=0.5)
  assert index[0] == 2


def test_rivals_refuse_a_box_that_looks_more_like_a_present_object():
  # Object 0 is lost, object 1 (the occluder) present elsewhere. Candidate 0 is free (no overlap)
  # and passes rho_reid for object 0 (0.8) but is more like object 1 (0.9): the occluder seen where
  # the target hid. Only lost objects compete by default, so it is taken; with rivals 0 it is not,
  # and candidate 1, more like object 0 than like object 1, is taken instead; with a margin of 0.2
  # candidate 0 is within reach of object 0 again (0.8 >= 0.9 - 0.2) and ranks first.
  templates = _unit([[1, 0, 0], [0, 1, 0]])
  emb = np.array([[0.8, 0.9, 0.0], [0.7, 0.2, 0.0]], np.float32)  # similarities read off directly
  boxes = np.array([[10, 10, 40, 40], [200, 10, 230, 40]], np.float32)
  object_boxes = np.array([[0, 0, 0, 0], [100, 100, 140, 140]], np.float32)
  present, lost = np.array([False, True]), np.array([True, False])
  valid = np.array([True, True])
  args = (boxes, valid, emb, templates, lost, object_boxes, present)
  index, _ = algorithm2.reidentify(*args, rho_reid=0.5, rho_occ=0.3)
  assert index[0] == 0
  index, score = algorithm2.reidentify(*args, rho_reid=0.5, rho_occ=0.3, rivals=0.0)
  assert index[0] == 1 and score[0] == pytest.approx(0.7)
  index, _ = algorithm2.reidentify(*args, rho_reid=0.5, rho_occ=0.3, rivals=0.2)
  assert index[0] == 0
  index, _ = algorithm2.reidentify(boxes, np.array([True, False]), emb, templates, lost, object_boxes, present,
                                   rho_reid=0.5, rho_occ=0.3, rivals=0.0)
  assert index[0] == -1


def test_a_rank_of_minus_infinity_rules_a_candidate_out_under_either_rule():
  # One object lost, one candidate like it: accepted, unless its rank (similarity + bonus) is -inf
  # (the motion gate), under the original and the paper rule alike.
  boxes = np.array([[10, 10, 40, 40]], np.float32)
  valid, emb, templates = np.array([True]), _unit([[1, 0, 0]]), _unit([[1, 0, 0]])
  object_boxes, present, lost = np.zeros((1, 4), np.float32), np.array([False]), np.array([True])
  gate = np.array([[-np.inf]], np.float32)
  assert algorithm2.reidentify(boxes, valid, emb, templates, lost, object_boxes, present, 0.5, 0.3)[0][0] == 0
  assert algorithm2.reidentify(boxes, valid, emb, templates, lost, object_boxes, present, 0.5, 0.3, gate)[0][0] == -1
  sim = algorithm2.similarity(emb, templates)
  index, _ = algorithm2.reidentify_paper(boxes, valid, sim, np.array([True]), object_boxes, present, 0.5, 0.3)
  assert index[0] == 0
  index, _ = algorithm2.reidentify_paper(boxes, valid, sim, np.array([True]), object_boxes, present, 0.5, 0.3,
                                         rank=sim + gate)
  assert index[0] == -1
