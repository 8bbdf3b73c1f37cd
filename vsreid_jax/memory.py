"""The memory a segmentation needs, estimated before it starts, against what the machine has.

Peak resident memory of `vsreid segment` grows with objects x pixels (the probability maps of a
step and their intermediates); with video length only up to fixed budgets (the flow cache keeps
the last few flows in memory, the vsreid solver its uint8 maps up to 128 MiB, the rest on disk).
The table below was measured before those budgets (float16 maps and every flow in memory), so its
estimates for long videos are now higher than the need. Peaks measured by experiments/bench_memory.py
(`vsreid segment --net identity` on generated clips of moving textured rectangles, 2-core CPU),
against this estimate:

  frames  size       objects (bucket)  method     peak RSS   estimate
  4       480x270    8 (8)             propagate    443 MiB    579 MiB
  4       960x540    8 (8)             propagate    627 MiB    726 MiB
  4       960x540    22 (32)           propagate    974 MiB   1179 MiB
  4       1920x1080  23 (32)           propagate   2069 MiB   2407 MiB
  4       960x540    8 (8)             vsreid       868 MiB    957 MiB
  4       960x540    22 (32)           vsreid      1316 MiB   1506 MiB
  8       960x540    22 (32)           vsreid      1460 MiB   1648 MiB
  4       1920x1080  8 (8)             vsreid      1430 MiB   1640 MiB
  4       1920x1080  23 (32)           vsreid      2704 MiB   3114 MiB
  4       3840x2160  30 (32)           vsreid      9.3 GiB    9.3 GiB  (issue 12's report)

A least-squares fit of the measured rows is within 9% of each (base 374/570 MiB, 189 B a pixel,
15.2 B an object-bucket pixel, 8.3 MiB an object slot); the constants below are that fit rounded
up by about 15%: refusing a run that would just have fit costs a rerun with --max-size, starting
one that does not fit can take the machine down.
"""
import os
from typing import Optional, Sequence

from vsreid_jax.errors import InputError
from vsreid_jax.flow.cache import RECENT_FLOWS
from vsreid_jax.propagation.algorithm1 import PropagationConfig, object_bucket

GIB = 2 ** 30
MIB = 2 ** 20
# The process before any frame: Python, JAX, the nets and their compiled functions.
BASE_BYTES = {"propagate": 450 * MIB, "vsreid": 650 * MIB}
# Per frame pixel: decoded frames kept (RGB), DIS flow buffers, the frame on the device, id masks.
PIXEL_BYTES = 220
# Per object-bucket pixel: the float32 maps of one step (prior, warp, paste, merge), a few copies.
WORK_BYTES = 18
# Per object slot of the bucket, whatever the size: per-object buffers and compiled shapes.
OBJECT_BYTES = 10 * MIB
# Per object-bucket pixel and frame: the vsreid solver keeps [T, Kb, H, W] uint8 maps, in memory up
# to its budget (SolverConfig.prob_memory_mb) and in a temporary file past it.
STORED_BYTES = 1
STORED_MEMORY_BYTES = 128 * MIB  # = configs/segment.py solver.prob_memory_mb
# Per pixel and flow field: float32 (dx, dy); the flow cache keeps the RECENT_FLOWS last used in
# memory (the rest are recomputed or read back from its folder).
FLOW_BYTES = 8
# Long sides --max-size suggests, largest first (common video sizes, then halvings).
SUGGESTED_SIZES = (2560, 1920, 1280, 960, 854, 640, 480, 320, 240, 160, 128, 96, 64)
# The smallest --max-size: below, objects shrink to a few pixels, near the 8-pixel minimum box side
# of the crops (geometry.py), so a smaller value is a typo rather than a setting.
MIN_MAX_SIZE = SUGGESTED_SIZES[-1]


def estimate_bytes(num_frames: int, height: int, width: int, num_objects: int, method: str,
                   buckets: Sequence[int] = PropagationConfig.object_buckets) -> int:
  """Peak resident bytes of segmenting one video.

  Args:
    num_frames: the video's length T.
    height: frame height H in pixels (as segmented, after any --max-size).
    width: frame width W.
    num_objects: K objects of the first mask (padded to the next of `buckets`).
    method: "propagate" or "vsreid" (which also keeps every frame's maps, up to a budget).
    buckets: Algorithm 1's object buckets.

  Returns:
    The estimate in bytes.
  """
  if method not in BASE_BYTES:
    raise ValueError(f"method {method!r}: one of {sorted(BASE_BYTES)}")
  px = height * width
  kb = object_bucket(max(num_objects, 1), buckets)
  flows = min(num_frames, RECENT_FLOWS)
  total = BASE_BYTES[method] + PIXEL_BYTES * px + WORK_BYTES * kb * px + OBJECT_BYTES * kb + FLOW_BYTES * flows * px
  if method == "vsreid":
    total += min(STORED_BYTES * num_frames * kb * px, STORED_MEMORY_BYTES)
  return int(total)


def available_bytes() -> Optional[int]:
  """Memory the default JAX device can still take: an accelerator's free memory, else the host's
  available memory (MemAvailable of /proc/meminfo); None where unknown."""
  import jax  # pylint: disable=g-import-not-at-top
  device = jax.devices()[0]
  stats = device.memory_stats() if device.platform != "cpu" else None
  if stats and "bytes_limit" in stats:
    return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except (OSError, ValueError, IndexError):
    pass
  return None


def resident_bytes() -> int:
  """This process's resident memory now (counted in the estimate, no longer in `available_bytes`)."""
  try:
    with open("/proc/self/statm") as f:
      return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
  except (OSError, ValueError, IndexError):
    return 0


def fitting_long_side(num_frames: int, height: int, width: int, num_objects: int, method: str,
                      budget: int) -> Optional[int]:
  """The largest of SUGGESTED_SIZES (below the input's long side) whose estimate fits `budget`.

  Args:
    num_frames, height, width, num_objects, method: the video, as `estimate_bytes` takes it (at
      its input size).
    budget: bytes available.

  Returns:
    That long side in pixels (what `--max-size` takes), or None when no suggested size fits.
  """
  long_side = max(height, width)
  for size in SUGGESTED_SIZES:
    if size >= long_side:
      continue
    s = size / long_side
    if estimate_bytes(num_frames, round(height * s), round(width * s), num_objects, method) <= budget:
      return size
  return None


def check_crop(scales, n_objects: int, bytes_per_pixel: float, available: Optional[int] = None) -> None:
  """Refuses crop sizes whose N_mp pass cannot fit in memory, before any work.

  Args:
    scales: (margin, crop size) pairs; scales run one after another, so the largest counts.
    n_objects: objects cropped together (the object bucket).
    bytes_per_pixel: memory per crop pixel of one object (config.propagation.crop_bytes_per_pixel).
    available: bytes free; None: `available_bytes()` (no check where that is unknown).
  Raises:
    InputError with the estimate and the largest crop that fits.
  """
  size = max(int(s) for _, s in scales)
  if size < 1:
    raise InputError(f"--scales: crop size {size} must be a positive number of pixels, e.g. 449")
  need = float(size) ** 2 * bytes_per_pixel * n_objects
  available = available_bytes() if available is None else available
  if available is not None and need > available:
    fits = int((available / (bytes_per_pixel * n_objects)) ** 0.5)
    raise InputError(f"--scales: crop {size} needs about {need / 2**30:.1f} GiB for {n_objects} object(s) "
                     f"({size}x{size} px x {bytes_per_pixel:g} B/px each), but {available / 2**30:.1f} GiB are "
                     f"free; use a crop of at most {fits}")
