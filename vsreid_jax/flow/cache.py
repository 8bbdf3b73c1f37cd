"""Flow between neighbouring frames, computed once per (sequence, pair, backend).

`FlowCache.get(i, j)` returns the flow from frame i to frame j (|i - j| == 1): the backward flow
i -> i-1 is what warps frame i-1's probability onto frame i. Kept in memory and, when `cache_dir`
is given, as float16 `.npy` files (halves the disk; flow error < 0.01 px for |flow| < 16 px).
"""
import os
import time
from typing import Dict, Optional, Tuple

import numpy as np

from vsreid_jax.flow.base import FlowBackend


class FlowCache:

  def __init__(self, frames, backend: FlowBackend, cache_dir: Optional[str] = None, key: str = ""):
    self.frames = frames
    self.backend = backend
    self.cache_dir = os.path.join(cache_dir, key, backend.name) if cache_dir else None
    self._mem: Dict[Tuple[int, int], np.ndarray] = {}
    self.seconds = 0.0  # time spent computing (not loading) flow
    self.computed = 0

  def _path(self, i, j):
    return os.path.join(self.cache_dir, f"{i:05d}_{j:05d}.npy")

  def get(self, i: int, j: int, timer=None) -> np.ndarray:
    """Flow i -> j; with a utils.StageTimer, the time spent computing it goes to its "flow" stage."""
    if timer is not None:
      before = self.seconds
      flow = self.get(i, j)
      timer.add("flow", self.seconds - before)
      return flow
    if abs(i - j) != 1:
      raise ValueError(f"flow is cached between neighbours only, got {i} -> {j}")
    if (i, j) in self._mem:
      return self._mem[(i, j)]
    flow = None
    if self.cache_dir and os.path.isfile(self._path(i, j)):
      flow = np.load(self._path(i, j)).astype(np.float32)
    if flow is None:
      t = time.perf_counter()
      flow = self.backend.flow(self.frames[i], self.frames[j])
      self.seconds += time.perf_counter() - t
      self.computed += 1
      if self.cache_dir:
        os.makedirs(self.cache_dir, exist_ok=True)
        tmp = self._path(i, j) + ".tmp.npy"
        np.save(tmp, flow.astype(np.float16))
        os.replace(tmp, self._path(i, j))
    self._mem[(i, j)] = flow
    return flow
