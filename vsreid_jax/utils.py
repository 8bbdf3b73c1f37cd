"""Small shared helpers: stage timing that separates XLA compilation from steady state."""
import collections
import contextlib
import os
import resource
import sys
import time


def jit_cache_size(fn) -> int:
  """Number of compiled signatures of a `jax.jit` function, or of the jitted function a wrapper
  exposes as `.jitted` (0 for plain Python callables)."""
  size = getattr(fn, "_cache_size", None) or getattr(getattr(fn, "jitted", None), "_cache_size", None)
  return size() if size is not None else 0


class StageTimer:
  """Accumulates wall time per named stage.

  A call that made any of the watched jit functions compile is booked under "compile" instead of
  its stage, so that steady-state frames/s is not polluted by one-off XLA compilation.
  """

  def __init__(self):
    self.seconds = collections.defaultdict(float)
    self.calls = collections.defaultdict(int)

  @contextlib.contextmanager
  def stage(self, name, *jitted):
    before = sum(jit_cache_size(f) for f in jitted)
    t = time.perf_counter()
    yield
    dt = time.perf_counter() - t
    compiled = sum(jit_cache_size(f) for f in jitted) > before
    key = "compile" if compiled else name
    self.seconds[key] += dt
    self.calls[key] += 1

  def add(self, name, seconds, calls=1):
    self.seconds[name] += seconds
    self.calls[name] += calls

  def merge(self, other: "StageTimer"):
    for k, v in other.seconds.items():
      self.seconds[k] += v
      self.calls[k] += other.calls[k]

  def table(self, frames: int) -> str:
    """A table of per-stage seconds, ms/frame and frames/s over `frames` frames."""
    lines = [f"{'stage':<10} {'seconds':>9} {'ms/frame':>9} {'frames/s':>9}"]
    steady = 0.0
    for name, sec in self.seconds.items():
      if name != "compile":
        steady += sec
      per = 1000 * sec / max(frames, 1)
      fps = frames / sec if sec > 0 else float("inf")
      lines.append(f"{name:<10} {sec:9.2f} {per:9.1f} {fps:9.1f}")
    fps = frames / steady if steady > 0 else float("inf")
    lines.append(f"{'total*':<10} {steady:9.2f} {1000 * steady / max(frames, 1):9.1f} {fps:9.1f}")
    lines.append("* total excludes one-off compilation")
    return "\n".join(lines)


def peak_rss_mb() -> float:
  """Peak resident memory of this process in MiB."""
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024
