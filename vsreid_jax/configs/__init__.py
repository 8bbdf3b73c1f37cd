"""configs: one `get_config()` ConfigDict per model / experiment.

Propagation (N_mp): `propagation_lite_cpu` (2-core CPU) and
`propagation_paper_r101` (the paper's two ResNet-101 streams).
"""

import ast
import importlib

from vsreid_jax.errors import InputError

PROPAGATION_CONFIGS = {
    "lite_cpu": "vsreid_jax.configs.propagation_lite_cpu",
    "paper_r101": "vsreid_jax.configs.propagation_paper_r101",
}


def get_propagation_config(name: str):
  """`get_config()` of a propagation config by short name."""
  if name not in PROPAGATION_CONFIGS:
    raise KeyError(f"Unknown propagation config {name!r}; "
                   f"known: {sorted(PROPAGATION_CONFIGS)}")
  return importlib.import_module(PROPAGATION_CONFIGS[name]).get_config()


def override(config, assignment: str) -> None:
  """Applies one `--set key.path=value` to a ConfigDict (value parsed as a Python literal, else a
  plain string); the training entry points share it."""
  key, sep, value = assignment.partition("=")
  if not sep:
    raise InputError(f"--set {assignment}: expected KEY=VALUE, e.g. optimizer.lr=3e-4")
  try:
    value = ast.literal_eval(value)
  except (ValueError, SyntaxError):
    pass  # a plain string
  *path, last = key.split(".")
  node, where = config, "the config"
  for p in path + [last]:
    if not hasattr(node, "keys") or p not in node:
      fields = ", ".join(sorted(node.keys())) if hasattr(node, "keys") else "none"
      raise InputError(f"--set {assignment}: no field {p!r} in {where} (fields: {fields})")
    if p != last:
      node, where = node[p], p
  try:
    node[last] = value
  except (TypeError, ValueError) as e:
    raise InputError(f"--set {assignment}: {str(e).splitlines()[0]}") from None
