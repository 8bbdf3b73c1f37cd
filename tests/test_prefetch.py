"""Frames and flows read ahead on a thread (flow/prefetch.py): the same results, no thread left."""
import os
import threading
import time

import cv2
import numpy as np
import pytest

from vsreid_jax.data import synthetic
from vsreid_jax.flow import prefetch
from vsreid_jax.data.frames import FolderFrames
from vsreid_jax.errors import InputError

from tests.test_solver_algorithm3 import OracleNets
from tests.test_solver_caches import _run, _segmenter


def _prefetch_threads():
  return [t for t in threading.enumerate() if t.name == "vsreid-prefetch"]


def _folder(tmp_path, frames):
  """The frames as lossless PNG files, read back as a (reopenable) FolderFrames."""
  folder = tmp_path / "frames"
  folder.mkdir()
  for t, image in enumerate(frames):
    cv2.imwrite(str(folder / f"{t:05d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
  return folder


@pytest.mark.parametrize("method", ["propagate", "vsreid"])
def test_prefetched_run_gives_the_results_of_a_run_in_one_thread(tmp_path, method):
  frames, masks = synthetic.leave_and_return(n_frames=12, out=(4, 8), textured_background=False)
  folder = _folder(tmp_path, frames)
  runs = {}
  for ahead in (False, True):
    seg = _segmenter(None, method)
    seg.config.prefetch = ahead
    seen = []  # prefetch threads alive while frame 1 comes out (propagate streams, vsreid solves first)
    seg.propagator.net = _watching(seg.propagator.net, seen)
    out, state, _ = _run(seg, FolderFrames(folder), masks, OracleNets(frames, masks))
    runs[ahead] = out, state
    assert bool(seen) and any(seen) == ahead  # the forward pass read ahead exactly when asked to
    assert not _prefetch_threads()
  (off, state_off), (on, state_on) = runs[False], runs[True]
  assert sorted(on) == list(range(12))
  for t in range(12):
    np.testing.assert_array_equal(on[t], off[t])
  assert state_on.flows.computed == state_off.flows.computed  # flows computed on the thread are counted
  if method == "propagate":
    assert state_on.flows.computed == 11  # each forward flow once
  if method == "vsreid":
    assert state_on.result.retrievals == state_off.result.retrievals and state_on.result.retrievals
    for t in range(12):
      np.testing.assert_array_equal(state_on.result.probs[t], state_off.result.probs[t])


def _watching(net, seen):
  def watched(image, flow, prob):
    seen.append(bool(_prefetch_threads()))
    return net(image, flow, prob)
  return watched


def test_no_prefetch_thread_is_left_after_a_corrupt_frame_or_an_abandoned_run(tmp_path):
  frames, masks = synthetic.moving_shapes(n_frames=10)
  folder = _folder(tmp_path, frames)
  (folder / "00006.png").write_bytes(b"not a png")
  seg = _segmenter(None, "propagate")
  with pytest.raises(InputError, match="00006.png: cannot decode"):  # raised in the caller's thread
    _run(seg, FolderFrames(folder), masks, None)
  assert not _prefetch_threads()
  state = seg.init_state(FolderFrames(folder), name="clip")
  seg.add_mask(state, masks[0])
  run = seg.segment(state)
  assert [next(run)[0] for _ in range(3)] == [0, 1, 2] and _prefetch_threads()
  run.close()  # the caller stops reading (its own error, a closed window)
  assert not _prefetch_threads()


def test_prefetcher_hands_items_in_order_and_stops_a_worker_blocked_on_a_full_queue():
  loaded = []

  def load(i):
    loaded.append(i)
    return i * i

  with prefetch.Prefetcher(load, range(100), depth=2) as ahead:
    it = iter(ahead)
    assert [next(it) for _ in range(3)] == [(0, 0), (1, 1), (2, 4)]
    time.sleep(0.2)  # the worker fills the queue and waits
    assert len(loaded) <= 3 + 2 + 1  # bounded: handed out + queued + the one it holds
    start = time.perf_counter()
  assert time.perf_counter() - start < 1.0 and not _prefetch_threads()
  with prefetch.Prefetcher(lambda i: 1 // (i - 2), range(5)) as ahead:
    got = []
    with pytest.raises(ZeroDivisionError):
      for i, _ in ahead:
        got.append(i)
  assert got == [0, 1] and not _prefetch_threads()
