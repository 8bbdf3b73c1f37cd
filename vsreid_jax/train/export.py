"""Exports the inference variables of a training checkpoint to a portable weights file."""
import json
import os
from typing import Optional

import numpy as np
import orbax.checkpoint as ocp

from vsreid_jax.errors import InputError
from vsreid_jax.models.weights import save_weights


def export_checkpoint(workdir, out_path, step: Optional[int] = None, dtype=np.float32) -> int:
  """Writes params + batch_stats of checkpoint `step` (default: latest) of `workdir` as a
  `models.weights` file (float16 for the shipped default); returns the step exported."""
  workdir = os.path.abspath(os.fspath(workdir))
  config_path = os.path.join(workdir, "config.json")
  if not os.path.isfile(config_path):
    raise InputError(f"{config_path}: not found; is {workdir} a training workdir?")
  with open(config_path) as f:
    config_json = f.read()
  name = json.loads(config_json)["name"]
  ckpt_dir = os.path.join(workdir, "checkpoints")
  steps = sorted(int(d) for d in os.listdir(ckpt_dir) if d.isdigit()) if os.path.isdir(ckpt_dir) else []
  if not steps:
    raise InputError(f"{ckpt_dir}: no checkpoints yet")
  step = steps[-1] if step is None else step
  if step not in steps:
    raise InputError(f"{ckpt_dir}: no checkpoint at step {step}; have {steps}")
  state = ocp.StandardCheckpointer().restore(os.path.join(ckpt_dir, str(step), "state"))
  variables = {"params": state["params"], "batch_stats": state["batch_stats"]}
  # The whole training config is recorded: a net trained with `--set` overrides loads as trained.
  save_weights(out_path, variables, name, meta={"step": step}, dtype=dtype, config=config_json)
  return step
