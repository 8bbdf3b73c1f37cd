"""Orbax checkpoints of the train state and the data iterator position (exact resume)."""
import os
from typing import Optional, Tuple

import jax
import orbax.checkpoint as ocp

from vsreid_jax.errors import InputError


class Checkpointer:
  """Keeps the last `max_to_keep` checkpoints under `directory`, one per saved step.

  Each holds `state` (params, batch_stats, optimiser state, step) and `data` (a small JSON dict:
  the iterator position). Dropout randomness is a function of the step, so nothing else is
  needed to continue exactly.
  """

  def __init__(self, directory, max_to_keep: int = 3):
    self.directory = os.path.abspath(os.fspath(directory))
    self.manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def save(self, step: int, state, data_state: dict) -> None:
    self.manager.save(int(step), args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                         data=ocp.args.JsonSave(dict(data_state))))

  def restore(self, template, step: Optional[int] = None) -> Tuple[object, dict]:
    """Restores into the structure, dtypes and shardings of `template` (e.g. a fresh state)."""
    step = self.latest_step() if step is None else step
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    out = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                             data=ocp.args.JsonRestore()))
    return out["state"], dict(out["data"])

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def open_workdir(workdir, config, max_to_keep: int, resume: bool) -> Checkpointer:
  """Creates `workdir`, refuses one that holds checkpoints unless resuming, records the config
  (config.json) and returns its Checkpointer: how every training entry point starts."""
  os.makedirs(workdir, exist_ok=True)
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep)
  if ckpt.latest_step() is not None and not resume:
    raise InputError(f"{workdir} already holds checkpoints (step {ckpt.latest_step()}); pass --resume to "
                     "continue, or use a new workdir")
  if jax.process_index() == 0:  # one writer in a multi-process job
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))
  return ckpt
