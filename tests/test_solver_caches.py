"""Per-video caches (solver/caches.py, flow/cache.py): candidates on demand, content keys, corrupt
files, compact probabilities."""
import os
import warnings

import cv2
import numpy as np
import pytest

from vsreid_jax.data import synthetic
from vsreid_jax.data.frames import ArrayFrames, FolderFrames
from vsreid_jax.flow import cache as flow_cache
from vsreid_jax.flow.cache import FlowCache
from vsreid_jax.flow.dis import DISFlow
from vsreid_jax.solver import caches

from tests.test_solver_algorithm3 import OracleNets, seeing_net


class Counting:
  """Wraps detector/ReID nets, counting the calls and the frames each call sees."""

  def __init__(self, nets):
    self.nets, self.detect_calls, self.embed_calls = nets, 0, 0

  def detect(self, images):
    self.detect_calls += 1
    return self.nets.detect(images)

  def embed(self, images, boxes):
    self.embed_calls += 1
    return self.nets.embed(images, boxes)


def _segmenter(tmp_path, method="vsreid"):
  from vsreid_jax.api import Segmenter  # pylint: disable=g-import-not-at-top
  from vsreid_jax.configs import segment as segment_config  # pylint: disable=g-import-not-at-top
  config = segment_config.get_config()
  config.net, config.method = "identity", method
  config.flow = "dis-ultrafast"
  config.propagation.scales = ((0.15, 65),)
  config.solver.rho_reid, config.solver.rho_occ, config.solver.recover_passes = 0.5, 0.3, 2
  seg = Segmenter(config, flow_cache_dir=str(tmp_path) if tmp_path else None)
  seg.propagator.net = seeing_net
  return seg


def _run(seg, frames, masks, nets, name="clip"):
  counting = Counting(nets)
  seg._reid = (counting, counting, "oracle")  # pylint: disable=protected-access
  state = seg.init_state(frames, name=name)
  seg.add_mask(state, masks[0])
  return dict(seg.segment(state)), state, counting


def test_default_method_never_calls_the_detector_when_no_object_is_lost():
  frames, masks = synthetic.moving_shapes(n_frames=12, speed=1.0, grow=1.0)
  seg = _segmenter(None)
  out, state, counting = _run(seg, frames, masks, OracleNets(frames, masks))
  assert state.result.alive[:, :2].all()  # nothing was lost ...
  assert counting.detect_calls == 0 and counting.embed_calls == 0  # ... so no detector, no ReID
  assert sorted(out) == list(range(12))


def test_detector_runs_only_on_batches_of_lost_frames():
  # The lost-only rule with one threshold (solver.rho_relative None; the default's per-object
  # thresholds read every frame's candidates once a retrieval passes rho_reid: below).
  frames, masks = synthetic.leave_and_return(n_frames=12, out=(4, 8), textured_background=False)
  seg = _segmenter(None)
  seg.config.solver.rho_relative = None
  out, state, counting = _run(seg, frames, masks, OracleNets(frames, masks))
  lost = np.flatnonzero(~state.result.alive[:, :2].all(axis=1))
  assert state.result.retrievals and state.result.retrievals[0]["frame"] == 8
  # Object 2 is lost from frame 5 (it leaves at 4) until it is re-identified at 8: frames 4..11
  # (two batches of 4) are detected at most, frames 0..3 never.
  assert 0 < counting.detect_calls <= 2 and 0 not in lost
  assert ((out[10] == 2) & (masks[10] == 2)).sum() > 0.7 * (masks[10] == 2).sum()


def test_relative_threshold_detects_every_frame_only_once_a_retrieval_passes_rho_reid():
  frames, masks = synthetic.leave_and_return(n_frames=12, out=(4, 8), textured_background=False)
  seg = _segmenter(None)
  assert seg.config.solver.rho_relative is not None  # the default
  out, state, counting = _run(seg, frames, masks, OracleNets(frames, masks))
  assert state.result.retrievals and state.result.retrievals[0]["frame"] == 8
  assert counting.detect_calls == 3  # frames 0..11 in batches of 4: each batch once
  assert ((out[10] == 2) & (masks[10] == 2)).sum() > 0.7 * (masks[10] == 2).sum()


def test_candidate_source_computes_asked_batches_once_and_matches_the_full_pass():
  frames, masks = synthetic.leave_and_return(n_frames=10, out=(4, 8), textured_background=False)
  seq = ArrayFrames(frames)
  counting = Counting(OracleNets(frames, masks))
  full = caches.compute_candidates(seq, counting.nets, counting.nets, batch=4)
  source = caches.CandidateSource(seq, counting, counting, batch=4)
  got = source.get([9, 5])
  assert counting.detect_calls == 2 and source.frames_computed == 6  # batches 4..7 and 8..9
  source.get([6, 8, 4])
  assert counting.detect_calls == 2
  for k in caches.FIELDS:
    np.testing.assert_array_equal(getattr(got, k), getattr(full, k)[[9, 5]])
  with pytest.raises(IndexError):
    source.get([10])


def _write_folder(folder, frames):
  os.makedirs(folder)
  for i, f in enumerate(frames):
    cv2.imwrite(os.path.join(folder, f"{i:05d}.png"), f[..., ::-1])
  return FolderFrames(folder)


def test_two_videos_of_one_name_do_not_share_cached_flows_or_candidates(tmp_path):
  cache = tmp_path / "cache"
  a, masks_a = synthetic.leave_and_return(n_frames=12, out=(4, 8), textured_background=False, seed=0)
  b, masks_b = synthetic.leave_and_return(n_frames=12, out=(4, 8), textured_background=False, seed=3)
  video_a = _write_folder(str(tmp_path / "a" / "clip"), a)
  video_b = _write_folder(str(tmp_path / "b" / "clip"), b)
  seg = _segmenter(cache)
  _run(seg, video_a, masks_a, OracleNets(a, masks_a))
  out_b, _, counting = _run(seg, video_b, masks_b, OracleNets(b, masks_b))
  fresh_b, _, _ = _run(_segmenter(None), video_b, masks_b, OracleNets(b, masks_b))
  assert counting.detect_calls > 0  # b's candidates were computed, not read from a's
  for t in range(12):
    np.testing.assert_array_equal(out_b[t], fresh_b[t])
  assert len(list((cache / "clip").glob("dis-ultrafast-*"))) == 2
  assert len(list((cache / "clip").glob("candidates-oracle-*"))) == 2
  # A third run of b reads everything back: no flow or detector computation.
  out_b2, state, counting = _run(seg, video_b, masks_b, OracleNets(b, masks_b))
  assert counting.detect_calls == 0 and state.flows.computed == 0
  np.testing.assert_array_equal(out_b2[11], out_b[11])


def test_corrupt_cache_files_are_recomputed_with_a_warning(tmp_path):
  frames, masks = synthetic.leave_and_return(n_frames=8, out=(4, 8), textured_background=False)
  seq = ArrayFrames(frames)
  flows = FlowCache(seq, DISFlow("ultrafast"), str(tmp_path), key="clip")
  want = flows.get(1, 0)
  nets = Counting(OracleNets(frames, masks))
  source = caches.CandidateSource(seq, nets, nets, batch=4, cache_dir=str(tmp_path), key="clip", fingerprint="x")
  cands = source.get([1])
  flow_file, = (tmp_path / "clip").glob("dis-*/00001_00000.npy")
  cand_file, = (tmp_path / "clip").glob("candidates-x-*/b4-00000.npz")
  flow_file.write_bytes(b"not a numpy file")
  cand_file.write_bytes(b"PK\x03\x04 truncated zip")
  flows2 = FlowCache(seq, DISFlow("ultrafast"), str(tmp_path), key="clip")
  with pytest.warns(UserWarning, match="unreadable cache file"):
    again = flows2.get(1, 0)
  np.testing.assert_allclose(again, want, atol=0.02)  # float16 on disk
  assert flows2.computed == 1
  source2 = caches.CandidateSource(seq, nets, nets, batch=4, cache_dir=str(tmp_path), key="clip", fingerprint="x")
  with pytest.warns(UserWarning, match="unreadable cache file"):
    np.testing.assert_array_equal(source2.get([1]).boxes, cands.boxes)
  # Rewritten: the next run reads them without a warning or any computation.
  flows3 = FlowCache(seq, DISFlow("ultrafast"), str(tmp_path), key="clip")
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    flows3.get(1, 0)
  assert flows3.computed == 0
  assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_cache_writes_use_unique_temporary_names(tmp_path, monkeypatch):
  renamed = []
  real_replace = os.replace
  monkeypatch.setattr(flow_cache.os, "replace", lambda src, dst: (renamed.append(src), real_replace(src, dst)))
  target = str(tmp_path / "x.npy")
  for _ in range(2):
    flow_cache.atomic_write(target, lambda f: np.save(f, np.zeros(3)))
  assert len(set(renamed)) == 2 and os.listdir(tmp_path) == ["x.npy"]
  with pytest.raises(RuntimeError):
    flow_cache.atomic_write(target, lambda f: (_ for _ in ()).throw(RuntimeError("disk full")))
  assert os.listdir(tmp_path) == ["x.npy"]  # the old entry is intact, no temporary file left


def test_flow_cache_memory_holds_only_recent_flows():
  frames, _ = synthetic.moving_shapes(n_frames=10)
  flows = FlowCache(ArrayFrames(frames), DISFlow("ultrafast"))
  for i in range(1, 10):
    flows.get(i, i - 1)
  assert len(flows._mem) == flow_cache.RECENT_FLOWS  # pylint: disable=protected-access
  flows.get(1, 0)
  assert flows.computed == 10  # without a cache folder an evicted flow is recomputed


@pytest.mark.parametrize("budget_mb", [64.0, 0.0])
def test_prob_store_keeps_thresholds_in_memory_or_on_disk(budget_mb):
  rng = np.random.default_rng(0)
  probs = rng.uniform(0, 1, (5, 2, 7, 9)).astype(np.float32)
  probs[0, 0, 0, :3] = [0.5, np.nextafter(np.float32(0.5), np.float32(1)), 1.0]
  store = caches.ProbStore(probs.shape, budget_mb=budget_mb)
  assert store.on_disk == (budget_mb == 0)
  for t in range(5):
    store[t] = probs[t]
  store[3, 1] = np.zeros((7, 9))
  probs[3, 1] = 0
  got = np.stack([store[t] for t in range(5)])
  assert got.dtype == np.float32 and np.abs(got - probs).max() <= 0.5 / 255 + 1e-6
  np.testing.assert_array_equal(got > 0.5, probs > 0.5)
  np.testing.assert_array_equal(store[-1, 0], got[4, 0])
  folder = store._tmp  # pylint: disable=protected-access
  store.close()
  assert folder is None or not os.path.exists(folder)


def test_candidate_memory_is_bounded_and_evicted_batches_are_not_recomputed():
  frames, masks = synthetic.leave_and_return(n_frames=12, out=(4, 8), textured_background=False)
  counting = Counting(OracleNets(frames, masks))
  source = caches.CandidateSource(ArrayFrames(frames), counting, counting, batch=4, memory_frames=4)
  first = source.get([0, 5, 9])
  assert counting.detect_calls == 3 and len(source._chunks) == 1  # pylint: disable=protected-access
  again = source.get([0, 5, 9])  # read back from the temporary folder
  assert counting.detect_calls == 3
  np.testing.assert_array_equal(again.embeddings, first.embeddings)
  spill = source._spill  # pylint: disable=protected-access
  assert spill and os.listdir(spill)
  source.close()
  assert not os.path.exists(spill)


def test_retrieval_reading_candidates_in_blocks_finds_the_same_retrievals():
  from vsreid_jax.propagation.algorithm1 import PropagationConfig, Propagator  # pylint: disable=g-import-not-at-top
  from vsreid_jax.solver.algorithm3 import Solver, SolverConfig  # pylint: disable=g-import-not-at-top
  frames, masks = synthetic.leave_and_return(n_frames=12, out=(4, 8), textured_background=False)
  seq = ArrayFrames(frames)
  first = np.stack([(masks[0] == k).astype(np.float32) for k in (1, 2)])
  logs = []
  for block in (256, 1):
    nets = Counting(OracleNets(frames, masks))
    solver = Solver(Propagator(seeing_net, PropagationConfig(scales=((0.15, 65),))),
                    SolverConfig(rho_reid=0.5, rho_occ=0.3, recover_passes=2, guide_size=33, search_block=block))
    result = solver.solve(seq, FlowCache(seq, DISFlow("ultrafast")), first, first.sum(axis=(1, 2)), 2,
                          caches.CandidateSource(seq, nets, nets, batch=4),
                          lambda n=nets: caches.templates(n, frames[0], first))
    logs.append(result.retrievals)
  assert logs[0] and logs[0] == logs[1]
