"""configs: one `get_config()` ConfigDict per model / experiment.

Propagation (N_mp): `propagation_lite_cpu` (2-core CPU) and
`propagation_paper_r101` (the paper's two ResNet-101 streams).
"""

import importlib

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
