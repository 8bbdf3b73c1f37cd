"""torchvision `fasterrcnn_resnet50_fpn` state_dict -> flax `FasterRCNN` variables.

The trunk (`backbone.body.*`, FrozenBatchNorm2d buffers included) goes through
`models.import_torch.import_resnet`; the rest is renamed here:
  backbone.fpn.{inner,layer}_blocks.i.0  -> fpn/{inner,layer}_blocks_i        (conv OIHW -> HWIO)
  rpn.head.conv.0.0 (or the older rpn.head.conv) -> rpn_head/conv
  rpn.head.{cls_logits,bbox_pred}        -> rpn_head/...
  roi_heads.box_head.fc6/fc7, roi_heads.box_predictor.cls_score/bbox_pred -> box_head/...
Linear weights are transposed; fc6 keeps torch's (C, H, W) input order because `BoxHead`
flattens pooled features in that order. Any num_classes: the shapes come from the checkpoint
and must match the flax model's.
"""
import re
from typing import Any, Mapping, Union

import numpy as np

from vsreid_jax.models.import_torch import import_resnet, load_state_dict

_BODY = "backbone.body."
_RULES = [
    (r"backbone\.fpn\.(inner|layer)_blocks\.(\d+)(?:\.0)?\.(weight|bias)", r"fpn/\1_blocks_\2/\3"),
    (r"rpn\.head\.conv(?:\.0\.0)?\.(weight|bias)", r"rpn_head/conv/\1"),
    (r"rpn\.head\.(cls_logits|bbox_pred)\.(weight|bias)", r"rpn_head/\1/\2"),
    (r"roi_heads\.box_head\.(fc6|fc7)\.(weight|bias)", r"box_head/\1/\2"),
    (r"roi_heads\.box_predictor\.(cls_score|bbox_pred)\.(weight|bias)", r"box_head/\1/\2"),
]


def _flax_path(key: str):
  for pattern, target in _RULES:
    if re.fullmatch(pattern, key):
      return re.sub(pattern, target, key).split("/")
  raise KeyError(f"{key}: no flax counterpart in FasterRCNN")


def import_fasterrcnn(variables, state_dict: Union[str, Mapping[str, Any]]):
  """Returns new variables {"params", "batch_stats"} with every tensor of the checkpoint."""
  sd = load_state_dict(state_dict)
  body = {k[len(_BODY):]: v for k, v in sd.items() if k.startswith(_BODY)}
  out = import_resnet(variables, body, prefix=("backbone",))
  params = out["params"]
  filled = set()
  for key, value in sd.items():
    if key.startswith(_BODY):
      continue
    *module, name = _flax_path(key)
    if name == "weight":
      leaf = "kernel"
      if value.ndim == 4:
        value = value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
      else:
        value = value.T  # Linear [out, in] -> Dense [in, out]
    else:
      leaf = "bias"
    node = params
    for m in module:
      node = node[m]
    if tuple(node[leaf].shape) != value.shape:
      raise ValueError(f"{key}: checkpoint shape {value.shape} != flax {'/'.join(module + [leaf])} "
                       f"shape {tuple(node[leaf].shape)} (num_classes or widths differ?)")
    node[leaf] = np.asarray(value, np.float32)
    filled.add(tuple(module + [leaf]))
  expected = {("fpn", f"{k}_blocks_{i}", leaf) for k in ("inner", "layer") for i in range(4)
              for leaf in ("kernel", "bias")}
  missing = expected - filled
  if missing:
    raise ValueError(f"not in the checkpoint: {sorted(missing)[:5]}")
  return out


_PREDICTOR = "roi_heads.box_predictor."


def import_for_training(variables, state_dict: Union[str, Mapping[str, Any]], num_classes: int):
  """A torchvision Faster R-CNN checkpoint (e.g. the COCO `fasterrcnn_resnet50_fpn` weights) as the
  start of training a detector of `num_classes` classes (config.init; detection/train.py).

  Every tensor is imported as by `import_fasterrcnn`, except the class predictor
  (`roi_heads.box_predictor.*`) when the checkpoint's class count differs from `num_classes` (COCO's
  91 against the class-agnostic 2): that layer keeps its random init, as torchvision's fine-tuning
  recipe replaces it. Returns the new variables.
  """
  sd = load_state_dict(state_dict)
  cls = sd.get(_PREDICTOR + "cls_score.weight")
  if cls is not None and cls.shape[0] != num_classes:
    print(f"detector init: the checkpoint's class predictor has {cls.shape[0]} classes, the model "
          f"{num_classes}: roi_heads.box_predictor starts at random init, every other tensor is imported")
    sd = {k: v for k, v in sd.items() if not k.startswith(_PREDICTOR)}
  return import_fasterrcnn(variables, sd)
