"""torchvision `raft_small` / `raft_large` state_dicts <-> Flax variables of `flow/raft.py`.

Key rule (raft.py names its modules as torchvision's attributes):
  `layerN.k`  (nn.Sequential index)            -> `layerN_k`
  `.0` / `.1` (Conv2dNormActivation conv/norm) -> `conv` / `norm`
  conv `weight` [O,I,H,W]                      -> `kernel` [H,W,I,O]
  norm `weight` / `bias`                       -> params `scale` / `bias`
  `running_mean` / `running_var`               -> batch_stats `mean` / `var`
  `num_batches_tracked`                        -> dropped (torch only reads it when momentum=None)
Every key must land on a Flax leaf of the same shape and every leaf must be filled; otherwise a
ValueError lists the unmapped keys, the missing leaves and the shape mismatches.

torch is imported inside the functions that need it only: the Flax side runs without it.
"""
import re
from typing import Dict, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from vsreid_jax.flow import raft

IGNORED_SUFFIXES = ("num_batches_tracked",)
# Modules named `conv` that are plain nn.Conv2d (not a Conv2dNormActivation's `.0`) sit directly
# under these parents.
PLAIN_CONV_PARENTS = ("feature_encoder", "context_encoder", "mask_predictor")


def torch_key_to_path(key: str):
  """('params' | 'batch_stats', path tuple) for a state_dict key, or None for ignored keys."""
  tokens = key.split(".")
  if tokens[-1] in IGNORED_SUFFIXES:
    return None
  out, i = [], 0
  while i < len(tokens) - 1:
    t = tokens[i]
    if re.fullmatch(r"layer\d+", t) and i + 1 < len(tokens) - 1 and tokens[i + 1].isdigit():
      out.append(f"{t}_{tokens[i + 1]}")
      i += 2
      continue
    out.append({"0": "conv", "1": "norm"}.get(t, t))
    i += 1
  leaf = tokens[-1]
  if leaf == "running_mean":
    return "batch_stats", tuple(out) + ("mean",)
  if leaf == "running_var":
    return "batch_stats", tuple(out) + ("var",)
  if leaf == "weight":
    return "params", tuple(out) + ("scale" if out and out[-1] == "norm" else "kernel",)
  if leaf == "bias":
    return "params", tuple(out) + ("bias",)
  return "params", tuple(out) + (leaf,)  # unknown leaf name: reported as unmapped below


def path_to_torch_key(collection: str, path) -> str:
  """Inverse of torch_key_to_path."""
  *mods, leaf = path
  out = []
  for j, m in enumerate(mods):
    match = re.fullmatch(r"(layer\d+)_(\d+)", m)
    if match:
      out += [match.group(1), match.group(2)]
    elif m == "conv" and j == len(mods) - 1 and not (j > 0 and mods[j - 1] in PLAIN_CONV_PARENTS):
      out.append("0")
    elif m == "norm":
      out.append("1")
    else:
      out.append(m)
  name = {"kernel": "weight", "scale": "weight", "mean": "running_mean", "var": "running_var"}.get(leaf, leaf)
  return ".".join(out + [name])


def _flatten(tree) -> Dict[tuple, object]:
  flat = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    flat[tuple(getattr(k, "key", str(k)) for k in path)] = leaf
  return flat


def _unflatten(flat: Mapping[tuple, object]) -> dict:
  tree = {}
  for path, leaf in flat.items():
    node = tree
    for name in path[:-1]:
      node = node.setdefault(name, {})
    node[path[-1]] = leaf
  return tree


def _to_numpy(value) -> np.ndarray:
  if hasattr(value, "detach"):  # a torch tensor
    value = value.detach().cpu().numpy()
  return np.asarray(value)


def variables_from_state_dict(state_dict: Mapping[str, object], model_config) -> dict:
  """Flax variables for `raft.model_from_config(model_config)` from a torchvision RAFT
  state_dict (torch tensors or numpy arrays)."""
  model = raft.model_from_config(model_config)
  z = jax.ShapeDtypeStruct((1, 128, 128, 3), jnp.float32)
  template = _flatten(jax.eval_shape(lambda r, a, b: model.init(r, a, b, 1), jax.random.key(0), z, z))
  filled, unmapped, mismatched = {}, [], []
  for key, value in state_dict.items():
    target = torch_key_to_path(key)
    if target is None:
      continue
    path = (target[0],) + target[1]
    if path not in template:
      unmapped.append(key)
      continue
    value = _to_numpy(value).astype(np.float32)
    if path[-1] == "kernel":
      value = value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    if value.shape != template[path].shape:
      mismatched.append(f"{key}: {value.shape} vs {'/'.join(path)} {template[path].shape}")
      continue
    filled[path] = jnp.asarray(value)
  missing = ["/".join(p) for p in template if p not in filled]
  if unmapped or missing or mismatched:
    lines = []
    if unmapped:
      lines.append(f"{len(unmapped)} state_dict keys map to no Flax variable: {', '.join(sorted(unmapped))}")
    if missing:
      lines.append(f"{len(missing)} Flax variables have no state_dict key: {', '.join(sorted(missing))}")
    if mismatched:
      lines.append(f"{len(mismatched)} shape mismatches: {'; '.join(mismatched)}")
    raise ValueError("state_dict does not match the RAFT config (raft_small vs raft_large?):\n  "
                     + "\n  ".join(lines))
  return _unflatten(filled)


def state_dict_from_variables(variables) -> Dict[str, np.ndarray]:
  """torchvision-layout state_dict (numpy) from Flax variables (BatchNorm gets its
  num_batches_tracked = 0, so torch's strict load_state_dict accepts it)."""
  out = {}
  for path, leaf in _flatten(variables).items():
    collection, rest = path[0], path[1:]
    value = np.asarray(leaf)
    if rest[-1] == "kernel":
      value = value.transpose(3, 2, 0, 1)  # HWIO -> OIHW
    key = path_to_torch_key(collection, rest)
    out[key] = value
    if rest[-1] == "mean" and collection == "batch_stats":
      out[key.rsplit(".", 1)[0] + ".num_batches_tracked"] = np.zeros((), np.int64)
  return out


def load_torch_checkpoint(path: str, model_config) -> dict:
  """Flax variables from a torchvision RAFT .pth (a plain state_dict, as torchvision's weights)."""
  import torch  # only here: the rest of the package runs without torch
  state_dict = torch.load(path, map_location="cpu", weights_only=True)
  if "model" in state_dict and not any(k.startswith("feature_encoder.") for k in state_dict):
    state_dict = state_dict["model"]  # torchvision's references save {"model": ..., "optimizer": ...}
  return variables_from_state_dict(state_dict, model_config)


def torchvision_raft(variant: str, seed: int = 0):
  """torchvision raft_small()/raft_large() with random weights (weights=None), eval mode."""
  import torch
  from vsreid_jax.models.import_torch import import_torchvision
  optical_flow = import_torchvision().models.optical_flow  # CPU torch + CUDA torchvision workaround
  torch.manual_seed(seed)
  builder = {"small": optical_flow.raft_small, "large": optical_flow.raft_large}[variant]
  return builder(weights=None, progress=False).eval()
