"""Portable weights of the nets (N_mp, detector, ReID, RAFT): one msgpack file each.

Training keeps orbax checkpoints (resumable state with optimiser moments); what ships and what
`vsreid segment --net/--detector/--reid FILE` read is this small file of inference variables:
  config        the config's name ("lite_cpu", "detector_lite_cpu", "reid_lite_cpu")
  kind          "propagation", "detector", "reid" or "raft" (files before it: told by the config name)
  model_config  the full config as JSON, overrides (`--set`) included (files before it: None, the
                named config is used)
  meta          free-form (step, data, ...)
  variables     {"params", "batch_stats"}
Loading refuses non-finite values, a file of another kind and variables that do not fit the
model the config builds (`load_net_weights`, `check_variables`), each in one line naming the file.
"""
import dataclasses
import json
import os
from typing import Any, Dict, Optional

import flax.core
import flax.serialization
import flax.traverse_util
import jax
import ml_collections
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


KINDS = ("propagation", "detector", "reid", "raft")
# What each kind of file is passed to, for the message when a file is given to the wrong option.
OPTIONS = {"propagation": "--net", "detector": "--detector", "reid": "--reid", "raft": "flow.raft.RAFTFlow.from_weights"}
NAMES = {"propagation": "propagation (N_mp)", "detector": "detector", "reid": "ReID", "raft": "RAFT flow"}


def kind_of(config_name: str) -> Optional[str]:
  """The kind of net a config name builds; None for a name of no known config."""
  for kind in KINDS:
    if config_name in configs.names(kind):
      return kind
  return None


def save_weights(path, variables, config_name: str, meta: dict = None, dtype=np.float32,
                 config: Optional[ml_collections.ConfigDict] = None, kind: Optional[str] = None) -> None:
  """Writes {config, kind, model_config, meta, variables} atomically; `dtype=np.float16` halves a
  shipped file. `config`: the full config the net was built with (recorded, so that a net trained
  with overrides loads); `kind`: one of KINDS, by default told by the config name."""
  kind = kind or kind_of(config_name)
  if kind is not None and kind not in KINDS:
    raise ValueError(f"kind {kind!r}: one of {KINDS}")
  payload = {"config": config_name, "meta": dict(meta or {}),
             "variables": jax.tree_util.tree_map(lambda x: np.asarray(x, dtype), variables)}
  if kind is not None:
    payload["kind"] = kind
  if config is not None:
    payload["model_config"] = config if isinstance(config, str) else config.to_json_best_effort()
  tmp = os.fspath(path) + ".tmp"
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(tmp, "wb") as f:
    f.write(flax.serialization.msgpack_serialize(payload))
  os.replace(tmp, path)


def _read(path) -> dict:
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise InputError(f"{path}: weights file not found")
  try:
    with open(path, "rb") as f:
      payload = flax.serialization.msgpack_restore(f.read())
    variables = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float32), payload["variables"])
    name = payload["config"]
    if not isinstance(name, str) or not isinstance(variables, dict):
      raise TypeError("config or variables")
  except (KeyError, ValueError, TypeError, AttributeError) as e:
    raise InputError(f"{path}: not a vsreid weights file ({e.__class__.__name__}); pass a file written by "
                     "save_weights (experiments/train_propagation.py, train_detector.py, train_reid.py "
                     "export one), or leave the option out for the shipped weights") from None
  check_finite(path, variables)
  return dict(payload, variables=variables)


def load_weights(path):
  """Returns (config name, meta dict, variables) from a file written by save_weights; refuses
  non-finite values (InputError)."""
  payload = _read(path)
  return payload["config"], payload.get("meta", {}), payload["variables"]


def check_finite(path, variables) -> None:
  """InputError naming the first parameter that holds NaN or infinite values."""
  for key, value in flax.traverse_util.flatten_dict(variables, sep="/").items():
    bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
    if bad:
      raise InputError(f"{os.fspath(path)}: {key} holds {bad} NaN or infinite values of {np.size(value)}; the "
                       "weights are corrupt (a diverged run?): export an earlier checkpoint or retrain")


def _tuples(x):
  """JSON lists back to the tuples the configs use (modules hash their fields)."""
  if isinstance(x, dict):
    return {k: _tuples(v) for k, v in x.items()}
  if isinstance(x, list):
    return tuple(_tuples(v) for v in x)
  return x


@dataclasses.dataclass
class NetWeights:
  path: str
  name: str  # the config name
  config: Optional[ml_collections.ConfigDict]  # the recorded full config; None in older files
  meta: Dict[str, Any]
  variables: Dict[str, Any]


def load_net_weights(path, kind: str) -> NetWeights:
  """A weights file for the `kind` net; InputError when it is not one (another kind: says which
  option takes it), or holds non-finite values."""
  payload = _read(path)
  path, name = os.fspath(path), payload["config"]
  file_kind = payload.get("kind") or kind_of(name)
  if file_kind is not None and file_kind != kind:
    raise InputError(f"{path}: holds {NAMES[file_kind]} weights (config {name!r}), not {NAMES[kind]} weights; "
                     f"pass it to {OPTIONS[file_kind]}, and to {OPTIONS[kind]} a {NAMES[kind]} weights file")
  config = None
  if payload.get("model_config"):
    try:
      config = ml_collections.ConfigDict(_tuples(json.loads(payload["model_config"])))
    except (ValueError, TypeError) as e:
      raise InputError(f"{path}: its recorded model config is not valid JSON ({e}); re-export the weights") from None
  return NetWeights(path, name, config, payload.get("meta", {}), payload["variables"])


def check_variables(path, variables, expected, config_name: str) -> None:
  """InputError naming the first parameter of `variables` whose path or shape differs from the
  abstract tree `expected` (jax.eval_shape of the model's init)."""
  got = flax.traverse_util.flatten_dict(variables, sep="/")
  want = flax.traverse_util.flatten_dict(flax.core.unfreeze(expected), sep="/")
  problem = None
  for key, spec in want.items():
    if key not in got:
      problem = f"{key} is missing"
    elif tuple(np.shape(got[key])) != tuple(spec.shape):
      problem = f"{key} has shape {tuple(np.shape(got[key]))}, the model expects {tuple(spec.shape)}"
    if problem:
      break
  if problem is None:
    extra = [k for k in got if k not in want]
    problem = f"{extra[0]} is not a parameter of the model" if extra else None
  if problem:
    raise InputError(f"{os.fspath(path)}: weights do not fit the model of config {config_name!r} ({problem}; "
                     f"{len(want)} parameters expected, {len(got)} in the file); pass weights of that architecture")
