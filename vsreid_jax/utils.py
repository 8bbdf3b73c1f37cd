"""Small shared helpers: stage timing that separates XLA compilation from steady state."""
import collections
import contextlib
import os
import resource
import sys
import time
import warnings
from typing import Optional

# Persistent XLA compilation cache: "0"/"off" turns it off, a path moves it.
COMPILE_CACHE_ENV = "VSREID_COMPILE_CACHE"
# Compilations faster than this are not written to the cache (loading costs about as much).
COMPILE_CACHE_MIN_SECONDS = 0.05


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


def compile_cache_dir() -> Optional[str]:
  """The persistent compilation cache folder: $VSREID_COMPILE_CACHE, else
  $XDG_CACHE_HOME/vsreid_jax/xla (default ~/.cache/vsreid_jax/xla); None when turned off."""
  env = os.environ.get(COMPILE_CACHE_ENV, "").strip()
  if env.lower() in ("0", "off", "false", "no"):
    return None
  if env:
    return os.path.expanduser(env)
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "vsreid_jax", "xla")


def enable_compile_cache(folder: Optional[str] = "default") -> Optional[str]:
  """Turns on JAX's persistent compilation cache in `folder` ("default": `compile_cache_dir()`;
  None: leaves it off), so a second run on this machine loads compiled functions instead of
  compiling them. Call before the first compilation. Returns the folder used, or None (off, or
  the folder cannot be created: a warning, never an error)."""
  import jax  # pylint: disable=g-import-not-at-top
  folder = compile_cache_dir() if folder == "default" else folder
  if not folder:
    return None
  try:
    os.makedirs(folder, exist_ok=True)
  except OSError as e:
    warnings.warn(f"{folder}: cannot create the compilation cache ({e}); compiling without it")
    return None
  jax.config.update("jax_compilation_cache_dir", folder)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", COMPILE_CACHE_MIN_SECONDS)
  return folder


def write_text_atomic(path, text: str) -> None:
  """Writes a text file whole or not at all: a temporary file of this process, then a rename."""
  path = os.fspath(path)
  tmp = f"{path}.{os.getpid()}.tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)
