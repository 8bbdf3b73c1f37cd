"""Frames and their flows read ahead on one background thread while the device runs N_mp.

    with prefetch.forward(frames, flows, range(1, n), timer, enabled=True) as items:
      for i, image, flow in items:   # image = frames[i], flow = flows.get(i, i - 1)
        ...

While the main thread runs N_mp on frame i, the worker decodes frame i + 1 and computes its flow
(DIS on the CPU: both release the GIL in OpenCV). The worker reads a reopened copy of the frames
(`frames.reopen()`: its own decoder and recent-frame cache; the caches are not thread-safe) and
only `FlowCache.fetch`, which changes nothing in memory; the main thread keeps each flow with
`FlowCache.put`. So the results are those of reading in the main thread, in the same order.

The thread never outlives the `with`: leaving it (the loop ended, an exception, Ctrl-C or SIGTERM
raised as `signals.Interrupted` in the main thread) stops the worker after the item it is on and
joins it. An exception on the worker (a corrupt frame's InputError) is raised in the main thread at
the item that failed. The worker is a daemon thread, so `signals.hard_exit` never waits for it.
"""
import contextlib
import queue
import threading
from typing import Iterable, Iterator, Tuple

import numpy as np

from vsreid_jax.flow.cache import FlowCache, frame_size

# Items decoded ahead: one is enough to overlap the next frame's reading with this frame's net
# call; two absorb an uneven frame (a keyframe of a video, a slow disk read). Each item holds a
# frame and a flow (427x240: 0.3 + 0.8 MB; 1080p: 6 + 17 MB).
DEPTH = 2
# How often a blocked worker or reader looks whether the other side has stopped (seconds).
POLL_S = 0.05

_DONE = object()


class Prefetcher:
  """Runs load(i) for each of `indices` in order on one worker thread, at most `depth` ahead of
  the reader; iterate to get (i, load(i)). Use as a context manager (or call close())."""

  def __init__(self, load, indices: Iterable[int], depth: int = DEPTH):
    self._load = load
    self._indices = list(indices)
    self._queue = queue.Queue(maxsize=depth)
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._work, name="vsreid-prefetch", daemon=True)
    self._thread.start()

  def _put(self, item) -> bool:
    while not self._stop.is_set():
      try:
        self._queue.put(item, timeout=POLL_S)
        return True
      except queue.Full:
        pass
    return False

  def _work(self):
    try:
      for i in self._indices:
        if self._stop.is_set() or not self._put((i, self._load(i), None)):
          return
    except BaseException as e:  # pylint: disable=broad-except  # raised again in the reader's thread
      self._put((None, None, e))
      return
    self._put(_DONE)

  def __iter__(self) -> Iterator[Tuple[int, object]]:
    while True:
      try:
        item = self._queue.get(timeout=POLL_S)
      except queue.Empty:
        if not self._thread.is_alive() and self._queue.empty():
          raise RuntimeError("prefetch thread ended without a result") from None
        continue
      if item is _DONE:
        return
      i, value, error = item
      if error is not None:
        raise error
      yield i, value

  def close(self) -> None:
    """Stops the worker after its current item and waits for it; idempotent."""
    self._stop.set()
    while True:  # free a worker blocked on a full queue at once
      try:
        self._queue.get_nowait()
      except queue.Empty:
        break
    self._thread.join()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def _reopened(frames):
  """A copy of the frames another thread may read, or None when the source cannot be reopened."""
  try:
    return frames.reopen()
  except AttributeError:
    return None


@contextlib.contextmanager
def forward(frames, flows, indices: Iterable[int], timer, enabled: bool = True
            ) -> Iterator[Iterator[Tuple[int, np.ndarray, np.ndarray]]]:
  """(i, frames[i], flows.get(i, i - 1)) for each i of `indices` (each >= 1), read ahead on a
  thread when `enabled`, the frames can be reopened and `flows` is a FlowCache, else in this thread.

  Args:
    frames: a frame sequence (data/frames.py).
    flows: the flow.cache.FlowCache of those frames (or anything with `get(i, j, timer)`).
    indices: frames to yield, in order.
    timer: a utils.StageTimer. Read in this thread, "read" and "flow" book their own time; read
      ahead, "read" books only the time this thread waited (what reading still costs it), and the
      flows computed meanwhile go to `flows.seconds` alone.
    enabled: read ahead (segment config `prefetch`).
  Yields:
    an iterator of (i, image [H, W, 3] uint8, flow i -> i-1 [H, W, 2] float32).
  """
  # Read ahead only a reopenable source and a FlowCache (whose fetch/put split the work between
  # the threads); anything else (arrays, stub flows in tests) is read in this thread.
  reader = _reopened(frames) if enabled and isinstance(flows, FlowCache) else None
  if reader is None:
    def inline():
      for i in indices:
        with timer.stage("read"):
          image = frames[i]
        yield i, image, flows.get(i, i - 1, timer)
    yield inline()
    return
  # Computed lazily from the frames, so here in this thread before the worker starts: the first
  # frame's size (FlowCache reads it) and the content fingerprint of the cache folder.
  frames.size  # pylint: disable=pointless-statement
  frame_size(flows.frames)
  flows.cache_dir  # pylint: disable=pointless-statement

  def load(i):
    image = reader[i]
    return image, flows.fetch(i, i - 1, reader)

  with Prefetcher(load, indices) as ahead:
    def items():
      it = iter(ahead)
      while True:
        with timer.stage("read"):
          got = next(it, None)
        if got is None:
          return
        i, (image, (flow, seconds)) = got
        flows.put(i, i - 1, flow, seconds)
        yield i, image, flow
    yield items()
