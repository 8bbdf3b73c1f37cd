"""flow: optical flow between frames, every backend reached by name through `get`.

One name selects the backend wherever flow is computed: the segment config's `flow`
(`vsreid segment --flow NAME`) and the propagation training config's `data.flow` (the same key
name, so that training sees the flow inference sees). Names:
  dis-ultrafast, dis-fast, dis-medium  OpenCV DIS (`dis.py`) at its presets; no weights.
  raft-small, raft-large               RAFT (`raft.py`); `weights` names a torchvision RAFT
                                       state_dict (.pth) of that variant (flow/import_torch_raft.py)
                                       or a RAFT weights file of ours (.msgpack, written by
                                       experiments/train_raft.py --export; RAFTFlow.from_weights).
Every backend implements `base.FlowBackend`; its `name` (weights included) keys the flow caches.
"""
import hashlib
import os

from vsreid_jax.errors import InputError

DIS_PRESETS = ("ultrafast", "fast", "medium")
RAFT_VARIANTS = ("small", "large")
NAMES = tuple(f"dis-{p}" for p in DIS_PRESETS) + tuple(f"raft-{v}" for v in RAFT_VARIANTS)
DEFAULT = "dis-medium"


def check_name(name: str, what: str = "flow") -> None:
  """Raises InputError (one line listing the names) unless `name` is a flow backend's name."""
  if name not in NAMES:
    raise InputError(f"{what} {name!r}: unknown flow backend; choose one of {', '.join(NAMES)}")


def get(name: str, weights: str = ""):
  """The flow backend called `name` (one of NAMES).

  Args:
    name: "dis-<preset>" or "raft-<variant>".
    weights: for RAFT, a torchvision RAFT state_dict file (.pth) of that variant, or a RAFT
      weights file of ours (.msgpack) (required: RAFT with random weights gives no usable flow);
      must be empty for DIS.

  Returns:
    A `base.FlowBackend`: `.flow(frame_a [H, W, 3] uint8 RGB, frame_b) -> [H, W, 2] float32`.
  """
  check_name(name)
  kind, variant = name.split("-", 1)
  if kind == "dis":
    if weights:
      raise InputError(f"flow weights {weights}: flow {name} takes no weights; leave flow_weights empty "
                       "or choose raft-small / raft-large")
    from vsreid_jax.flow.dis import DISFlow  # pylint: disable=g-import-not-at-top  (cv2 only when used)
    return DISFlow(variant)
  return _raft(variant, weights)


def _raft(variant: str, path: str):
  """RAFTFlow with the variables of a torchvision state_dict; its name carries the file's hash."""
  if not path:
    raise InputError(f"flow raft-{variant} needs weights: set flow_weights to a torchvision raft_{variant} "
                     "state_dict (.pth), e.g. --override flow_weights=raft_small.pth")
  if not os.path.isfile(path):
    raise InputError(f"{path}: flow weights not found; pass a torchvision raft_{variant} state_dict (.pth)")
  from vsreid_jax import configs  # pylint: disable=g-import-not-at-top  (jax only when used)
  from vsreid_jax.flow import import_torch_raft, raft  # pylint: disable=g-import-not-at-top
  if path.endswith(".msgpack"):  # ours: the file says its config; it must be this variant's
    net = raft.RAFTFlow.from_weights(path)
    if net.config.variant != variant:
      raise InputError(f"{path}: RAFT weights of the {net.config.variant} variant, not {variant}; "
                       f"choose --flow raft-{'large' if variant == 'small' else 'small'} or other weights")
    return net
  config = configs.get("raft", variant)
  try:
    variables = import_torch_raft.load_torch_checkpoint(path, config.model)
  except Exception as e:  # pylint: disable=broad-except  (torch.load and the key mapping raise many kinds)
    first = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise InputError(f"{path}: not a torchvision raft_{variant} state_dict ({first})") from None
  with open(path, "rb") as f:
    tag = hashlib.sha1(f.read()).hexdigest()[:8]  # flows of other weights must not share a cache
  return raft.RAFTFlow(config, variables, tag=tag)
