"""Portable N_mp weights: one msgpack file holding the model config name and the variables.

Training keeps orbax checkpoints (resumable state with optimiser moments); what ships and what
`vsreid segment --net FILE` reads is this small file of inference variables only.
"""
import os

import flax.serialization
import jax
import numpy as np

from vsreid_jax import configs
from vsreid_jax.errors import InputError

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets", "weights")
# The shipped nets: N_mp, the detector and the ReID net (all trained here, lite_cpu configs).
DEFAULT_WEIGHTS = os.path.join(WEIGHTS_DIR, "propagation_lite_cpu.msgpack")
DEFAULT_DETECTOR_WEIGHTS = os.path.join(WEIGHTS_DIR, "detector_lite_cpu.msgpack")
DEFAULT_REID_WEIGHTS = os.path.join(WEIGHTS_DIR, "reid_lite_cpu.msgpack")


def model_config(name: str):
  """The propagation ConfigDict a weights file names (`configs.get("propagation", name)`)."""
  try:
    return configs.get("propagation", name)
  except configs.ConfigError as e:
    raise InputError(f"weights name the unknown model config {name!r}: {e}") from None


def save_weights(path, variables, config_name: str, meta: dict = None, dtype=np.float32) -> None:
  """Writes {config, meta, variables} atomically; `dtype=np.float16` halves a shipped file."""
  payload = {"config": config_name, "meta": dict(meta or {}),
             "variables": jax.tree_util.tree_map(lambda x: np.asarray(x, dtype), variables)}
  tmp = os.fspath(path) + ".tmp"
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(tmp, "wb") as f:
    f.write(flax.serialization.msgpack_serialize(payload))
  os.replace(tmp, path)


def load_weights(path):
  """Returns (config name, meta dict, variables) from a file written by save_weights."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise InputError(f"{path}: weights file not found")
  try:
    with open(path, "rb") as f:
      payload = flax.serialization.msgpack_restore(f.read())
    variables = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float32), payload["variables"])
    return payload["config"], payload.get("meta", {}), variables
  except (KeyError, ValueError, TypeError) as e:
    raise InputError(f"{path}: not a vsreid weights file ({e.__class__.__name__}); pass a file written by "
                     "save_weights (experiments/train_propagation.py, train_detector.py, train_reid.py "
                     "export one), or leave the option out for the shipped weights") from None
