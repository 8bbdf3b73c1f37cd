"""Sharded inference: which sequences a shard segments, and the shards' timing tables.

`vsreid segment --davis ROOT --set SET --out DIR --num-shards N --shard I` (or one process of a
multi-process job: I = jax.process_index(), N = jax.process_count()) segments `assign(...)[I]`.
Every shard writes into the same DIR: sequences are disjoint, each written atomically
(vsreid_jax/data/results.py), and the shard's timing table goes to

  DIR/timing-shard-<I>-of-<N>.json   per-stage seconds and calls, frames, sequences, wall time
  DIR/timing-shard-<I>-of-<N>.txt    the same as the table `vsreid segment` prints

`vsreid eval` scores the union and prints the shards' merged table (`merged_timing`).
"""
import glob
import json
import os
import re
import socket
from typing import Dict, List, Optional, Sequence, Tuple

from vsreid_jax import __version__
from vsreid_jax.data.results import PROGRAM, read_ours
from vsreid_jax.errors import InputError
from vsreid_jax.utils import StageTimer, write_text_atomic

_TIMING_RE = re.compile(r"^timing-shard-(\d+)-of-(\d+)\.json$")


def assign(frame_counts: Sequence[Tuple[str, int]], num_shards: int) -> List[List[str]]:
  """Deterministic shares of sequences, balanced by frame count.

  Greedy longest-first: sequences by decreasing frame count (ties by name) each go to the shard
  with the fewest frames so far (ties: the lowest shard index). The result depends only on the
  names and frame counts, so every process computes the same split on its own.

  Args:
    frame_counts: (sequence name, number of frames) of every sequence, in set order.
    num_shards: N >= 1.

  Returns:
    N lists of names, each in set order; together they hold every sequence exactly once (a
    shard gets none when there are fewer sequences than shards).
  """
  if num_shards < 1:
    raise ValueError(f"num_shards must be >= 1, got {num_shards}")
  loads = [0] * num_shards
  shard_of = {}
  for name, frames in sorted(frame_counts, key=lambda nf: (-nf[1], nf[0])):
    shard = min(range(num_shards), key=lambda s: (loads[s], s))
    shard_of[name] = shard
    loads[shard] += frames
  return [[name for name, _ in frame_counts if shard_of[name] == s] for s in range(num_shards)]


def resolve(num_shards: Optional[int], shard: Optional[int], process: Tuple[int, int]) -> Optional[Tuple[int, int]]:
  """(I, N) of this shard from --shard/--num-shards, else from the job's (process index, count).

  Returns None for an unsharded run (no flags, one process). Raises InputError for bad flags.
  """
  if shard is not None and num_shards is None:
    raise InputError(f"--shard {shard}: needs --num-shards N")
  if num_shards is not None:
    if num_shards < 1:
      raise InputError(f"--num-shards {num_shards}: must be >= 1")
    if shard is None:
      if process[1] != num_shards:
        raise InputError(f"--num-shards {num_shards}: pass --shard I (0..{num_shards - 1}) to say which shard "
                         "this process runs")
      shard = process[0]
    if not 0 <= shard < num_shards:
      raise InputError(f"--shard {shard}: must be 0..{num_shards - 1} for --num-shards {num_shards}")
    return shard, num_shards
  index, count = process
  return (index, count) if count > 1 else None


def timing_paths(out_dir, shard: int, num_shards: int) -> Tuple[str, str]:
  stem = os.path.join(os.fspath(out_dir), f"timing-shard-{shard}-of-{num_shards}")
  return stem + ".json", stem + ".txt"


def check_timing_destination(out_dir, shard: int, num_shards: int) -> None:
  """Refuses, before any work, to replace timing files this program did not write."""
  json_path, txt_path = timing_paths(out_dir, shard, num_shards)
  for path in (json_path, txt_path):
    if os.path.islink(path) or (os.path.lexists(path) and not os.path.isfile(path)):
      raise InputError(f"{path}: not a plain file; refusing to replace it, remove it or pass another --out")
  if os.path.lexists(json_path) and read_ours(json_path) is None:
    raise InputError(f"{json_path}: file exists and was not written by vsreid; refusing to replace it, move it "
                     "or pass another --out")
  if os.path.lexists(txt_path) and not os.path.lexists(json_path):
    raise InputError(f"{txt_path}: file exists and was not written by vsreid; refusing to replace it, move it "
                     "or pass another --out")


def write_timing(out_dir, shard: int, num_shards: int, sequences: List[str], frames: int, timer: StageTimer,
                 wall_seconds: float) -> Tuple[str, str]:
  """Writes this shard's timing table (JSON and text) beside its results.

  Args:
    out_dir: the results folder the shards share.
    shard: this shard, 0..num_shards-1.
    num_shards: how many there are.
    sequences: the sequences this shard segmented.
    frames: their frame count.
    timer: the StageTimer of all of them (per-stage seconds and calls).
    wall_seconds: the shard's wall time.

  Returns:
    (JSON path, text path).
  """
  json_path, txt_path = timing_paths(out_dir, shard, num_shards)
  payload = dict(program=PROGRAM, version=__version__, shard=shard, num_shards=num_shards, sequences=sequences,
                 frames=frames, seconds={k: round(v, 4) for k, v in timer.seconds.items()},
                 calls=dict(timer.calls), wall_seconds=round(wall_seconds, 4), host=socket.gethostname(),
                 pid=os.getpid())
  write_text_atomic(txt_path, f"shard {shard} of {num_shards}: {len(sequences)} sequences, {frames} frames, "
                          f"{wall_seconds:.1f} s wall\n{timer.table(frames)}\n")
  write_text_atomic(json_path, json.dumps(payload, indent=1))
  return json_path, txt_path


def merged_timing(results_dir) -> Optional[str]:
  """The shards' timing tables of `results_dir` merged into one (text), None when there are none.

  Shard files of several splits (runs with different N) are not mixed: the most recently written
  split is merged and the others are named. A missing shard is named too.
  """
  groups: Dict[int, Dict[int, dict]] = {}
  newest: Dict[int, float] = {}
  for path in glob.glob(os.path.join(glob.escape(os.fspath(results_dir)), "timing-shard-*-of-*.json")):
    m = _TIMING_RE.match(os.path.basename(path))
    payload = read_ours(path) if m else None
    if payload is None:
      continue
    shard, n = int(m.group(1)), int(m.group(2))
    groups.setdefault(n, {})[shard] = payload
    newest[n] = max(newest.get(n, 0.0), os.path.getmtime(path))
  if not groups:
    return None
  n = max(newest, key=newest.get)
  shards = groups[n]
  timer = StageTimer()
  frames = 0
  sequences = 0
  for payload in shards.values():
    for stage, seconds in payload.get("seconds", {}).items():
      timer.add(stage, float(seconds), int(payload.get("calls", {}).get(stage, 1)))
    frames += int(payload.get("frames", 0))
    sequences += len(payload.get("sequences", []))
  walls = [float(p.get("wall_seconds", 0.0)) for p in shards.values()]
  lines = [f"timing merged over {len(shards)} of {n} shards ({sequences} sequences, {frames} frames; "
           f"slowest shard {max(walls):.1f} s wall, sum {sum(walls):.1f} s):", timer.table(frames)]
  missing = [str(s) for s in range(n) if s not in shards]
  if missing:
    lines.append(f"no timing file yet for shard {', '.join(missing)} of {n}")
  others = sorted(k for k in groups if k != n)
  if others:
    lines.append(f"(older timing files of runs with {', '.join(map(str, others))} shards not merged)")
  return "\n".join(lines)
