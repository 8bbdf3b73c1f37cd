"""Orbax checkpoints of the train state and the data iterator position (exact resume).

Resuming restores the newest checkpoint that reads back: an unreadable one (a disk that filled, a
copy cut short) is moved aside to `<workdir>/corrupt_checkpoints/` with a warning, and the one
before it is used. `config.json` is written when a run starts afresh, and on resume only once a
checkpoint was restored; a resume whose model config differs from the recorded one is refused.
"""
import json
import os
import shutil
import sys
from typing import List, Optional, Tuple

import jax
import jax.experimental.multihost_utils
import orbax.checkpoint as ocp

from vsreid_jax.errors import InputError
from vsreid_jax.utils import write_text_atomic

# Config parts that must match to resume: the architecture (a checkpoint of one model does not
# restore into another). Optimiser, schedule length, data and loop settings may change.
MODEL_KEYS = ("name", "model")


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
    self.pending_config = None  # (workdir, config JSON) that restore() records once it succeeds

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def save(self, step: int, state, data_state: dict) -> None:
    self.manager.save(int(step), args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                         data=ocp.args.JsonSave(dict(data_state))))

  def _restore(self, template, step: int) -> Tuple[object, dict]:
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    out = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                             data=ocp.args.JsonRestore()))
    return out["state"], dict(out["data"])

  def restore(self, template, step: Optional[int] = None) -> Tuple[object, dict]:
    """Restores into the structure, dtypes and shardings of `template` (e.g. a fresh state).

    step None: the newest checkpoint that reads back; newer unreadable ones are moved aside to
    `corrupt_checkpoints/` beside this folder, with a warning. InputError when none reads back
    (nothing is moved then: the template, not the files, may be what is wrong).
    """
    if step is not None:
      out = self._restore(template, step)
    else:
      failed: List[Tuple[int, Exception]] = []
      out = None
      for s in sorted(self.manager.all_steps(), reverse=True):
        try:
          out = self._restore(template, s)
          break
        except Exception as e:  # pylint: disable=broad-except  # orbax/tensorstore raise many kinds
          failed.append((s, e))
      if out is None:
        detail = "; ".join(f"step {s}: {e.__class__.__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"
                           for s, e in failed)
        raise InputError(f"{self.directory}: no checkpoint reads back ({detail or 'none found'}); "
                         "train in a new workdir, or restore the folder from a copy")
      if failed and jax.process_count() > 1:
        jax.experimental.multihost_utils.sync_global_devices("vsreid: checkpoints read")  # all read, then move
      for s, e in failed:
        if jax.process_index() != 0:  # one mover in a multi-process job
          continue
        aside = self._move_aside(s)
        print(f"vsreid: warning: {os.path.join(self.directory, str(s))}: checkpoint unreadable "
              f"({e.__class__.__name__}); moved to {aside}, resuming from the one before", file=sys.stderr)
      if failed:
        if jax.process_count() > 1:
          jax.experimental.multihost_utils.sync_global_devices("vsreid: corrupt checkpoints moved")
        self.manager.reload()
    if self.pending_config is not None:
      write_config(*self.pending_config)
      self.pending_config = None
    return out

  def _move_aside(self, step: int) -> str:
    """Moves checkpoint `step` out of the manager's folder (kept, never deleted); returns where."""
    root = os.path.join(os.path.dirname(self.directory), "corrupt_checkpoints")
    os.makedirs(root, exist_ok=True)
    dest, n = os.path.join(root, str(step)), 1
    while os.path.exists(dest):
      dest, n = os.path.join(root, f"{step}.{n}"), n + 1
    shutil.move(os.path.join(self.directory, str(step)), dest)
    return dest

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def write_config(workdir, text: str) -> None:
  """Writes workdir/config.json atomically (by process 0 alone in a multi-process job)."""
  if jax.process_index() != 0:
    return
  write_text_atomic(os.path.join(workdir, "config.json"), text)


def _flat(tree, prefix=""):
  if isinstance(tree, dict):
    out = {}
    for k, v in tree.items():
      out.update(_flat(v, f"{prefix}{k}."))
    return out
  return {prefix[:-1]: tree}


def model_differences(recorded: dict, config: dict) -> List[str]:
  """"key: recorded -> new" for every MODEL_KEYS entry that differs between two config dicts."""
  a = {k: v for k, v in _flat(recorded).items() if k.split(".")[0] in MODEL_KEYS}
  b = {k: v for k, v in _flat(config).items() if k.split(".")[0] in MODEL_KEYS}
  return [f"{k}: {a.get(k, '(absent)')} -> {b.get(k, '(absent)')}" for k in sorted(set(a) | set(b))
          if a.get(k, "(absent)") != b.get(k, "(absent)")]


def open_workdir(workdir, config, max_to_keep: int, resume: bool) -> Checkpointer:
  """Creates `workdir`, refuses one that holds checkpoints unless resuming, and one whose recorded
  model config differs from `config` when resuming; records the config (config.json: now on a
  fresh start, after the restore on resume) and returns its Checkpointer: how every training entry
  point starts."""
  os.makedirs(workdir, exist_ok=True)
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep)
  if ckpt.latest_step() is not None and not resume:
    raise InputError(f"{workdir} already holds checkpoints (step {ckpt.latest_step()}); pass --resume to "
                     "continue, or use a new workdir")
  text = config.to_json_best_effort(indent=2)
  if ckpt.latest_step() is None:
    write_config(workdir, text)
    return ckpt
  path = os.path.join(workdir, "config.json")
  if os.path.isfile(path):
    try:
      with open(path) as f:
        recorded = json.load(f)
    except ValueError:
      recorded = None  # unreadable: the checkpoint restore decides; rewritten after it
    if isinstance(recorded, dict):
      diff = model_differences(recorded, json.loads(text))
      if diff:
        raise InputError(f"{path}: --resume with a different model config ({'; '.join(diff)}); resume with the "
                         "recorded config, or train the new one in a new workdir")
  ckpt.pending_config = (workdir, text)
  return ckpt
