"""configs: one `get_config()` ConfigDict per model / experiment, all reached by `get(kind, name)`.

Propagation (N_mp): `propagation_lite_cpu` (2-core CPU), `propagation_paper_r101` (the paper's
two ResNet-101 streams, the original's deep stem) and `propagation_paper_r101_tvstem` (the same with
torchvision's stem, for its ImageNet weights); their training (`train_propagation`) and online
adaptation (`online`); the detector, the ReID net, RAFT, and `segment` (inference). `get` returns
a locked config, so a misspelt key (`--override optimizer.lrr=3e-4`) is an error at once, before
anything runs.
"""

import ast
import difflib
import importlib

import ml_collections

from vsreid_jax.errors import InputError


class ConfigError(InputError):
  """An unknown config name or config key (a one-line user error, like every InputError)."""


# Every config by kind and name: (module under vsreid_jax/configs, the get_config argument or None).
# Names are those a weights file records (the detector and ReID nets record their module's name).
REGISTRY = {
    "segment": {"default": ("segment", None)},
    "propagation": {"lite_cpu": ("propagation_lite_cpu", None), "paper_r101": ("propagation_paper_r101", None),
                    "paper_r101_tvstem": ("propagation_paper_r101_tvstem", None)},
    "train": {"lite_cpu": ("train_propagation", "lite_cpu"), "paper_r101": ("train_propagation", "paper_r101"),
              "paper_r101_tvstem": ("train_propagation", "paper_r101_tvstem")},
    "online": {"lite_cpu": ("online", "lite_cpu"), "paper_r101": ("online", "paper_r101")},
    "detector": {"detector_lite_cpu": ("detector_lite_cpu", None), "detector_r50_fpn": ("detector_r50_fpn", None)},
    "reid": {"reid_lite_cpu": ("reid_lite_cpu", None)},
    "raft": {"small": ("raft_small", None), "large": ("raft_large", None)},
}


def names(kind: str):
  """The config names of a kind, e.g. names("propagation") -> ("lite_cpu", "paper_r101")."""
  if kind not in REGISTRY:
    raise ConfigError(f"unknown config kind {kind!r}; known: {', '.join(REGISTRY)}")
  return tuple(REGISTRY[kind])


def check_name(kind: str, name: str) -> None:
  """Raises ConfigError unless `name` is a config of `kind`."""
  if name not in names(kind):
    raise ConfigError(f"unknown {kind} config {name!r}; known: {', '.join(names(kind))}")


def get(kind: str, name: str = None, *, lock: bool = True):
  """The ConfigDict of config `name` of `kind` (the kind's first name when None), locked by
  default: assigning a key it does not have raises instead of adding one (`config.unlocked()`
  allows it where a config is composed from another)."""
  name = names(kind)[0] if name is None else name
  check_name(kind, name)
  module, arg = REGISTRY[kind][name]
  get_config = importlib.import_module(f"vsreid_jax.configs.{module}").get_config
  config = get_config() if arg is None else get_config(arg)
  if lock:
    config.lock()
  return config


def override(config, assignment: str, flag: str = "--override") -> None:
  """Applies one `KEY=VALUE` (`key.path=value`, the value parsed as a Python literal, else kept as a
  plain string) to a ConfigDict; a key the config does not have is a ConfigError naming the keys
  it has, whether the config is locked or not. Shared by every entry point with a config."""
  key, sep, value = assignment.partition("=")
  if not sep:
    raise ConfigError(f"{flag} {assignment}: expected KEY=VALUE, e.g. optimizer.lr=3e-4")
  try:
    value = ast.literal_eval(value)
  except (ValueError, SyntaxError):
    pass  # a plain string
  assign(config, key, value, f"{flag} {assignment}")


def assign(config, key: str, value, what: str) -> None:
  """Sets the existing field `key` (a dotted path) of a ConfigDict to `value`; a key the config
  does not have, or a value of the wrong type, is a ConfigError starting with `what` (the flag and
  its argument, e.g. "--override optimizer.lr=3e-4")."""
  *path, last = key.split(".")
  node = config
  for depth, p in enumerate(path + [last]):
    if not isinstance(node, ml_collections.ConfigDict) or p not in node:
      where = ".".join(path[:depth]) or "the config"
      keys = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
      close = difflib.get_close_matches(p, keys, n=1)
      hint = f"did you mean {close[0]!r}? " if close else ""
      raise ConfigError(f"{what}: {where} has no key {p!r}; {hint}its keys: {', '.join(keys) or 'none'}")
    if depth < len(path):
      node = node[p]
  try:
    node[last] = value
  except (TypeError, ValueError, AttributeError) as e:
    raise ConfigError(f"{what}: {e}") from None
