"""Motion continuity under the original (lost-only) rule: a lost object comes back beside a twin
that the ReID cannot tell from it; the retrieval takes the one near where the object was last seen.

Flow is zero, the net keeps the warped prior where the crop shows something (black background),
and the candidates are given: frames 6-9 show the object near its last box and an identical twin
far away, both embedded exactly as the object (the far one listed first, so it wins a tie)."""
import numpy as np

from tests.test_solver_paper_rule import H, W, ZeroFlows, seeing_net  # the same net and flows, one clip size
from vsreid_jax.data.frames import ArrayFrames
from vsreid_jax.propagation.algorithm1 import PropagationConfig, Propagator
from vsreid_jax.solver.algorithm3 import Solver, SolverConfig
from vsreid_jax.solver.caches import Candidates

T = 10
A = (10, 20, 30, 40)  # the object in frames 0-3; hidden (not drawn) in 4-5
NEAR = (20, 20, 40, 40)  # the object from frame 6 on
FAR = (70, 20, 90, 40)  # its twin from frame 6 on


def _clip():
  tex = np.random.default_rng(0).integers(60, 255, (H, W, 3)).astype(np.uint8)
  frames = np.zeros((T, H, W, 3), np.uint8)
  boxes = np.zeros((T, 2, 4), np.float32)
  valid = np.zeros((T, 2), bool)
  for t in range(T):
    shown = [A] if t < 4 else [] if t < 6 else [FAR, NEAR]
    for m, (x0, y0, x1, y1) in enumerate(shown):
      frames[t, y0:y1, x0:x1] = tex[y0:y1, 0:x1 - x0]
      boxes[t, m], valid[t, m] = (x0, y0, x1, y1), True
  emb = np.zeros((T, 2, 2), np.float32)
  emb[valid] = [1.0, 0.0]  # every shown box looks exactly like the object
  return frames, Candidates(boxes, valid.astype(np.float32), valid, emb)


def _run(frames, cands, first, templates, **config):
  """The solver over the seeing net on a clip (the original rule, the settings of these tests, then
  `config`)."""
  prop = Propagator(seeing_net, PropagationConfig(scales=((0.15, 65),)))
  solver = Solver(prop, SolverConfig(**dict(dict(rho_reid=0.5, rho_occ=0.3, max_retrievals=3, recover_passes=2,
                                                 guide_size=33, retrieval_rule="original", motion_weight=0.0),
                                            **config)))
  return solver.solve(ArrayFrames(frames), ZeroFlows(), first, first.sum(axis=(1, 2)), len(first), cands, templates)


def _solve_twin(cands=None, **config):
  """The twin clip (its candidates, or `cands` edited from them), the object given at frame 0."""
  frames, clip_cands = _clip()
  first = np.zeros((1, H, W), np.float32)
  x0, y0, x1, y1 = A
  first[0, y0:y1, x0:x1] = 1.0
  return _run(frames, clip_cands if cands is None else cands, first, np.array([[1.0, 0.0]], np.float32), **config)


def test_lost_object_without_motion_is_retrieved_at_the_twin():
  r = _solve_twin(motion_weight=0.0).retrievals[0]
  assert (r["frame"], tuple(r["box"])) == (6, FAR)


def test_lost_object_with_motion_is_retrieved_near_where_it_was_last_seen():
  result = _solve_twin(motion_weight=0.3)
  r = result.retrievals[0]
  # (frame 9: the bonus widens with the gap from the last box, so the latest frame ranks first;
  # re-propagation then rewrites 6-8 backward.)
  assert (r["kind"], tuple(r["box"])) == ("lost", NEAR) and r["frame"] >= 6
  assert r["frames_rewritten"] == [6, 7, 8, 9]
  x0, y0, x1, y1 = NEAR
  for t in range(6, T):
    prob = np.asarray(result.probs[t, 0])
    assert prob[y0:y1, x0:x1].mean() > 0.9 and prob[:, 60:].max() < 0.5, t


def test_motion_velocity_expects_the_object_further_along_its_path():
  # The object's box moves 6 px right a frame in frames 0-3, then it is lost. At frame 6 a candidate
  # where it was last seen (frame 3) and one where it would be at constant velocity: the plain
  # bonus prefers the first, motion_velocity 2 the second.
  n = 7
  boxes = np.zeros((n, 1, 4), np.float32)
  present = np.zeros((n, 1), bool)
  for t in range(4):
    boxes[t, 0] = (10 + 6 * t, 20, 30 + 6 * t, 40)
    present[t, 0] = True
  last, ahead = (28, 20, 48, 40), (46, 20, 66, 40)
  cands = Candidates(np.zeros((n, 2, 4), np.float32), np.ones((n, 2), np.float32), np.ones((n, 2), bool),
                     np.zeros((n, 2, 2), np.float32))
  cands.boxes[6] = [last, ahead]
  prop = Propagator(seeing_net, PropagationConfig(scales=((0.15, 65),)))
  plain = Solver(prop, SolverConfig(motion_weight=1.0))._motion(cands, boxes, present, present)(6)[:, 0]
  moving = Solver(prop, SolverConfig(motion_weight=1.0, motion_velocity=2))._motion(cands, boxes, present, present)(6)
  assert plain[0] > plain[1] and moving[1, 0] > moving[0, 0]
  np.testing.assert_allclose(moving[1, 0], 1.0, atol=1e-6)  # exactly where constant velocity puts it


def _occluder_clip():
  """Object 1 in frames 0-2, then gone; object 2, an occluder, in every frame. From frame 3 a narrow
  box on the occluder's left part (IoU 0.25 with its box, so free by the IoU test) looks like object 1."""
  tex = np.random.default_rng(1).integers(60, 255, (H, W, 3)).astype(np.uint8)
  n = 8
  a, occ, part = (10, 20, 30, 40), (40, 10, 80, 50), (40, 10, 50, 50)
  frames = np.zeros((n, H, W, 3), np.uint8)
  boxes = np.zeros((n, 2, 4), np.float32)
  emb = np.zeros((n, 2, 3), np.float32)
  for t in range(n):
    x0, y0, x1, y1 = occ
    frames[t, y0:y1, x0:x1] = tex[y0:y1, x0:x1]
    boxes[t, 1], emb[t, 1] = occ, (0, 1, 0)
    if t < 3:
      x0, y0, x1, y1 = a
      frames[t, y0:y1, x0:x1] = tex[y0:y1, x0:x1]
      boxes[t, 0], emb[t, 0] = a, (1, 0, 0)
    else:
      boxes[t, 0], emb[t, 0] = part, (1, 0, 0)
  valid = np.ones((n, 2), bool)
  first = np.zeros((2, H, W), np.float32)
  first[0, 20:40, 10:30] = 1.0
  first[1, 10:50, 40:80] = 1.0
  return frames, Candidates(boxes, valid.astype(np.float32), valid, emb), first


def test_free_cover_refuses_a_box_on_a_present_objects_mask():
  frames, cands, first = _occluder_clip()
  out = {cover: _run(frames, cands, first, np.eye(2, 3, dtype=np.float32), free_cover=cover) for cover in (None, 0.5)}
  taken = out[None].retrievals
  assert taken and taken[0]["object"] == 0 and tuple(taken[0]["box"]) == (40, 10, 50, 50)
  assert out[0.5].retrievals == []
  assert not out[0.5].alive[3:, 0].any() and out[0.5].alive[:, 1].all()


def test_rival_margin_refuses_a_box_that_looks_more_like_the_present_occluder():
  # The occluder clip, the narrow box on the occluder now embedded between the two objects, nearer
  # the occluder (similarity 0.6 to object 1, 0.8 to the occluder): taken by the original rule
  # (only lost objects compete for it), refused with rival_margin 0 (the occluder's own template is
  # more similar), taken again with a margin wide enough (0.3).
  frames, cands, first = _occluder_clip()
  cands.embeddings[3:, 0] = (0.6, 0.8, 0.0)
  out = {margin: _run(frames, cands, first, np.eye(2, 3, dtype=np.float32), rival_margin=margin)
         for margin in (None, 0.0, 0.3)}
  for margin in (None, 0.3):
    taken = out[margin].retrievals
    assert taken and taken[0]["object"] == 0 and tuple(taken[0]["box"]) == (40, 10, 50, 50), margin
  assert out[0.0].retrievals == [] and not out[0.0].alive[3:, 0].any()


def test_motion_gate_rules_out_a_look_alike_far_from_where_the_object_was():
  # Only the far twin is a candidate (the near box is not detected): motion ranks it first anyway and
  # it is retrieved; with motion_gate 0.5 (its continuity is far below) nothing is.
  _, cands = _clip()
  cands.valid[6:, 1] = False
  out = {gate: _solve_twin(cands, motion_weight=1.0, motion_gate=gate).retrievals for gate in (None, 0.5)}
  assert out[None] and tuple(out[None][0]["box"]) == FAR
  assert out[0.5] == []


def test_confirm_share_undoes_a_retrieval_the_reid_does_not_see_again():
  # The twin is a candidate at frame 6 only (the detector misses it after): the retrieval takes it
  # and re-propagation writes frames 6-9 onto it; the ReID confirms the object on 1 of those 4
  # frames. confirm_share 0.25 keeps the masks, 0.5 undoes them (the object is lost again there,
  # and the log says why).
  _, cands = _clip()
  cands.valid[:, 1] = False  # the near box is never detected
  cands.valid[7:, 0] = False  # the far one only at frame 6
  out = {share: _solve_twin(cands, confirm_share=share) for share in (None, 0.25, 0.5)}
  for share in (None, 0.25):
    r = out[share].retrievals[0]
    assert (r["frame"], tuple(r["box"]), r["frames_rewritten"]) == (6, FAR, [6, 7, 8, 9])
    assert out[share].alive[6:, 0].all()
  assert out[0.25].retrievals[0]["confirmed_share"] == 0.25 and "confirmed_share" not in out[None].retrievals[0]
  r = out[0.5].retrievals[0]
  assert r["frames_rewritten"] == [] and r["confirmed_share"] == 0.25 and len(out[0.5].retrievals) == 1
  assert not out[0.5].alive[4:, 0].any() and out[0.5].alive[:4, 0].all()
  np.testing.assert_array_equal(out[0.5].checkpoints[:, 0], np.zeros(T))
  assert np.asarray(out[0.5].probs[8])[0].max() < 0.5 and np.asarray(out[0.25].probs[8])[0].max() > 0.9
