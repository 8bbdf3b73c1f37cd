"""configs: one `get_config()` ConfigDict per model / experiment.

Propagation (N_mp): `propagation_lite_cpu` (2-core CPU) and
`propagation_paper_r101` (the paper's two ResNet-101 streams, the original's deep stem) and
`propagation_paper_r101_tvstem` (the same with torchvision's stem, for its ImageNet weights).
"""

import ast
import importlib

from vsreid_jax.errors import InputError

PROPAGATION_CONFIGS = {
    "lite_cpu": "vsreid_jax.configs.propagation_lite_cpu",
    "paper_r101": "vsreid_jax.configs.propagation_paper_r101",
    "paper_r101_tvstem": "vsreid_jax.configs.propagation_paper_r101_tvstem",
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
  node = config
  for p in path:
    node = node[p]
  node[last] = value
