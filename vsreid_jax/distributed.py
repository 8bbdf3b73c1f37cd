"""Multi-process jobs: joining the job (`jax.distributed.initialize`) and who this process is.

One process runs per host (TPU pod worker, SLURM task, or a local process). `initialize` joins
them into one JAX job before any JAX computation:

- explicit: `--coordinator HOST:PORT --num-processes N --process-id I` (all three, on every
  process; process 0 listens on PORT);
- from the cluster: `--distributed` (JAX reads the TPU pod, SLURM, Open MPI or Kubernetes
  environment), which is also the default inside an `srun` step of more than one task
  (`SLURM_STEP_NUM_TASKS` > 1);
- otherwise one process, nothing to join.

On CPU the processes exchange data through gloo collectives (`jax_cpu_collectives_implementation`),
as in the 2-process tests on one machine.
"""
import os
from typing import Optional

import numpy as np

from vsreid_jax.errors import InputError


def add_arguments(parser) -> None:
  """The flags of a multi-process job, for `vsreid train` and `vsreid segment`."""
  g = parser.add_argument_group("multi-process job (one process per host; see README 'Past one machine')")
  g.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0 (with --num-processes, --process-id)")
  g.add_argument("--num-processes", type=int, metavar="N", help="number of processes of the job")
  g.add_argument("--process-id", type=int, metavar="I", help="this process, 0..N-1")
  g.add_argument("--distributed", action="store_true",
                 help="join the job described by the cluster environment (TPU pod, SLURM, Open MPI); automatic "
                      "in an srun step of more than one task")


def _slurm_tasks() -> int:
  """Tasks of the current `srun` step (only srun sets SLURM_STEP_NUM_TASKS; a batch script's own
  shell, with SLURM_NTASKS of the whole allocation, is one process and must not wait for others)."""
  value = os.environ.get("SLURM_STEP_NUM_TASKS", "")
  return int(value) if value.isdigit() else 1


def initialize(coordinator: Optional[str] = None, num_processes: Optional[int] = None,
               process_id: Optional[int] = None, from_environment: bool = False) -> bool:
  """Joins the multi-process job when one is asked for; returns whether this is one.

  Args:
    coordinator: "HOST:PORT" of process 0, or None.
    num_processes: processes of the job (with `coordinator`).
    process_id: this process's index 0..num_processes-1 (with `coordinator`).
    from_environment: let JAX read the job from the cluster environment (TPU pod, SLURM, MPI).

  Returns:
    True when `jax.distributed` is initialised (now or before): then `jax.process_index()` and
    `jax.process_count()` describe the job and `jax.devices()` spans every process.

  Raises:
    InputError: an incomplete or inconsistent set of flags.
  """
  import jax  # pylint: disable=g-import-not-at-top
  if jax.distributed.is_initialized():
    return True
  explicit = (coordinator, num_processes, process_id)
  if any(v is not None for v in explicit):
    if any(v is None for v in explicit):
      raise InputError("--coordinator, --num-processes and --process-id go together: pass all three on every "
                       "process (or none, for one process)")
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit():
      raise InputError(f"--coordinator {coordinator!r}: expected HOST:PORT, e.g. 10.0.0.1:1234")
    if num_processes < 1 or not 0 <= process_id < num_processes:
      raise InputError(f"--process-id {process_id} --num-processes {num_processes}: need 0 <= I < N")
    if num_processes == 1:
      return False
    _cpu_collectives()
    jax.distributed.initialize(coordinator, num_processes, process_id)
    return True
  if from_environment or _slurm_tasks() > 1:
    _cpu_collectives()
    jax.distributed.initialize()
    return True
  return False


def _cpu_collectives() -> None:
  """CPU processes need a collectives backend to exchange arrays (no-op for GPU/TPU devices)."""
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_cpu_collectives_implementation", "gloo")


def process() -> tuple:
  """(process index, process count) of this job: (0, 1) when not a multi-process job."""
  import jax  # pylint: disable=g-import-not-at-top
  if not jax.distributed.is_initialized():
    return 0, 1
  return jax.process_index(), jax.process_count()


def is_main() -> bool:
  """Whether this process writes logs, plots and other single-writer files (process 0)."""
  return process()[0] == 0


# The one mesh axis: data parallelism (the state replicated, batches sharded along their first axis).
DATA_AXIS = "data"


def make_mesh(devices=None):
  """A 1-D jax.sharding.Mesh over `devices` (default: all of the job's) along DATA_AXIS."""
  import jax  # pylint: disable=g-import-not-at-top  (jax only when used: the CLI parses flags first)
  return jax.sharding.Mesh(np.asarray(devices if devices is not None else jax.devices()), (DATA_AXIS,))


def replicated(mesh):
  """The sharding of what every device holds whole (the train state)."""
  import jax  # pylint: disable=g-import-not-at-top
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def data_sharded(mesh):
  """The sharding of a batch split along its first axis over the mesh's devices."""
  import jax  # pylint: disable=g-import-not-at-top
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(DATA_AXIS))


def shard_batch_local(batch: dict, mesh):
  """A single process's whole batch {key: [B, ...] numpy} put on the mesh, split along B."""
  import jax  # pylint: disable=g-import-not-at-top
  n = mesh.devices.size
  size = next(iter(batch.values())).shape[0]
  if size % n:
    raise ValueError(f"batch size {size} is not divisible by the {n} devices")
  return jax.device_put(batch, data_sharded(mesh))


def process_rows(mesh, batch_size: int) -> Optional[tuple]:
  """Rows (start, stop) of a global batch of `batch_size` that this process's devices hold when the
  batch is sharded along the mesh's data axis; None for a single-process job (all rows).

  jax.devices() lists each process's devices together, so a process's rows are contiguous.
  """
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_count() == 1:
    return None
  indices = data_sharded(mesh).addressable_devices_indices_map((batch_size,)).values()
  starts = sorted(i[0].start or 0 for i in indices)
  stops = sorted(batch_size if i[0].stop is None else i[0].stop for i in indices)
  if any(b != a for a, b in zip(stops[:-1], starts[1:])):
    raise ValueError(f"this process's devices hold non-contiguous rows of the batch: {list(zip(starts, stops))}")
  return starts[0], stops[-1]


def shard_batch(batch: dict, mesh, batch_size: int):
  """A batch of numpy arrays as one global jax.Array per key, sharded over `mesh`'s data axis.

  Single process: `batch` is the whole batch (device_put). Multi-process: `batch` is either this
  process's rows (`process_rows`, what each process reads in training) or the whole global batch
  (every process holds it, e.g. the validation crops), of which this process keeps its rows;
  `jax.make_array_from_process_local_data` assembles the global array without any copy between
  processes.
  """
  import jax  # pylint: disable=g-import-not-at-top
  rows = process_rows(mesh, batch_size)
  if rows is None:
    return shard_batch_local(batch, mesh)
  size = next(iter(batch.values())).shape[0]
  if size == batch_size:
    batch = {k: v[rows[0]:rows[1]] for k, v in batch.items()}
  elif size != rows[1] - rows[0]:
    raise ValueError(f"batch of {size} rows is neither the global batch {batch_size} nor this process's "
                     f"{rows[1] - rows[0]} rows")
  sharding = data_sharded(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, v, (batch_size, *v.shape[1:]))
          for k, v in batch.items()}


def agree(flag: bool) -> bool:
  """Process 0's `flag` on every process (decisions that must not differ, e.g. a time limit)."""
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_count() == 1:
    return bool(flag)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return bool(multihost_utils.broadcast_one_to_all(np.asarray(flag, np.bool_)))


class MemoryLog:
  """What `metrics.CsvLog` does, in memory: the logs of processes other than process 0, which
  compute the same rows but write no file."""

  path = os.devnull

  def __init__(self):
    self._rows = []

  def rows(self):
    return list(self._rows)

  def truncate(self, max_step: int) -> None:
    self._rows = [r for r in self._rows if r["step"] <= max_step]

  def append(self, row) -> None:
    self._rows.append(dict(row))
