"""torchvision ResNet state_dict -> flax `ResNet` variables.

`resnet.ResNet` names its layers like torchvision (`layer2_0/conv1`,
`layer2_0/downsample_conv`, ...), so the import is a rename plus layout change:
conv OIHW -> HWIO; BN weight/bias -> params scale/bias, running_mean/var ->
batch_stats mean/var. `fc.*` and `num_batches_tracked` are ignored.

Two ImageNet ResNet-101 layouts are accepted (`import_resnet`):
- torchvision's `resnet101` state_dict (7x7 stem): into a backbone with
  `deep_stem=False`, e.g. the `paper_r101_tvstem` config.
- The PSPNet-style deep-stem ResNet-101 (three 3x3 stem convs 64-64-128, first
  stride 2, the stem of the original N_mp), into `deep_stem=True` (`paper_r101`),
  in either naming:
  * the PyTorch semseg layout (hszhao/semseg `model/resnet.py`, deep_base=True,
    its `resnet101_v2.pth`): torchvision's keys plus `conv2.weight`, `bn2.*`,
    `conv3.weight`, `bn3.*` at the top level (the stem's 2nd and 3rd conv);
  * the Caffe PSPNet layer names, as in a state_dict converted from
    `pspnet101` caffemodels: `conv1_1_3x3_s2`, `conv1_2_3x3`, `conv1_3_3x3`
    (stem), `conv{s+2}_{b+1}_1x1_reduce` / `_3x3` / `_1x1_increase` /
    `_1x1_proj` (block b of stage s: its conv1 / conv2 / conv3 / downsample)
    with `.weight`, and each BN as `<conv name>_bn.{weight, bias,
    running_mean, running_var}`. `caffe_pspnet_to_torch_keys` renames them to
    the semseg layout (`import_resnet` does so when it sees `conv1_1_3x3_s2`).

Extra input channels (the warped probability): when the flax first conv has
more input channels than the checkpoint, the checkpoint's filters fill the
first channels and the new ones are initialised with `extra_channel_init`:
- "zeros" (default): the stream starts as exactly the ImageNet network on the
  RGB channels whatever the extra input; the extra filters still get gradients
  (their input is non-zero), so training learns them from a neutral start.
- "mean": the mean of the RGB filters, as if the extra channel were a grey
  image; responds to the prior at once but shifts the pretrained features.

torch is optional: it is imported only to read a `.pth` file or convert
torch tensors, never at module import.
"""

from typing import Any, Dict, Mapping, Tuple, Union

import numpy as np

EXTRA_CHANNEL_INITS = ("zeros", "mean")
_IGNORED_SUFFIXES = ("num_batches_tracked",)
_IGNORED_PREFIXES = ("fc.",)


def _to_numpy(value) -> np.ndarray:
  if hasattr(value, "detach"):  # a torch tensor, without importing torch
    value = value.detach().cpu().float().numpy()
  return np.asarray(value, dtype=np.float32)


def load_state_dict(source: Union[str, Mapping[str, Any]]) -> Dict[str, np.ndarray]:
  """Reads a `.pth` path or a mapping of numpy/torch tensors into numpy."""
  if isinstance(source, str):
    import torch  # pylint: disable=g-import-not-at-top
    source = torch.load(source, map_location="cpu", weights_only=True)
    if "state_dict" in source and not hasattr(source["state_dict"], "shape"):
      source = source["state_dict"]
  out = {}
  for key, value in source.items():
    key = key[len("module."):] if key.startswith("module.") else key  # DataParallel
    out[key] = _to_numpy(value)
  return out


def _flax_module_path(torch_module: str) -> Tuple[str, ...]:
  """'layer1.0.downsample.1' -> ('layer1_0', 'downsample_bn')."""
  parts = torch_module.split(".")
  if parts[0].startswith("layer") and len(parts) >= 3:
    block = f"{parts[0]}_{parts[1]}"
    rest = parts[2:]
    if rest[0] == "downsample":
      return (block, {"0": "downsample_conv", "1": "downsample_bn"}[rest[1]])
    return (block, rest[0])
  return tuple(parts)


_CAFFE_STEM = {"conv1_1_3x3_s2": "1", "conv1_2_3x3": "2", "conv1_3_3x3": "3"}
_CAFFE_BLOCK = {"1x1_reduce": "conv1", "3x3": "conv2", "1x1_increase": "conv3", "1x1_proj": "downsample.0"}
_CAFFE_BLOCK_BN = {"conv1": "bn1", "conv2": "bn2", "conv3": "bn3", "downsample.0": "downsample.1"}


def caffe_pspnet_to_torch_keys(state_dict: Mapping[str, Any]) -> Dict[str, Any]:
  """Caffe PSPNet layer names -> the semseg / torchvision layout (see module docstring).

  'conv1_2_3x3.weight' -> 'conv2.weight'; 'conv1_2_3x3_bn.running_var' -> 'bn2.running_var';
  'conv4_3_1x1_proj_bn.bias' -> 'layer3.2.downsample.1.bias'. Keys of no known layer (the
  classifier, `conv5_3_pool*`, ...) are dropped; a key that looks like a layer but does not
  parse raises ValueError.
  """
  out = {}
  for key, value in state_dict.items():
    module, _, leaf = key.rpartition(".")
    is_bn = module.endswith("_bn")
    name = module[:-3] if is_bn else module
    if name in _CAFFE_STEM:
      out[f"{'bn' if is_bn else 'conv'}{_CAFFE_STEM[name]}.{leaf}"] = value
      continue
    parts = name.split("_", 2)
    if len(parts) != 3 or not parts[0].startswith("conv") or parts[2] not in _CAFFE_BLOCK:
      continue
    try:
      stage, block = int(parts[0][len("conv"):]) - 2, int(parts[1]) - 1
    except ValueError:
      raise ValueError(f"{key}: not a Caffe PSPNet layer name (conv<stage>_<block>_<kind>)") from None
    if not 0 <= stage <= 3 or block < 0:
      raise ValueError(f"{key}: stage {stage + 2} / block {block + 1} out of range")
    conv = _CAFFE_BLOCK[parts[2]]
    out[f"layer{stage + 1}.{block}.{_CAFFE_BLOCK_BN[conv] if is_bn else conv}.{leaf}"] = value
  return out


def _widen_kernel(kernel: np.ndarray, in_channels: int, how: str) -> np.ndarray:
  """HWIO kernel with I < in_channels -> extra input channels per `how`."""
  extra = in_channels - kernel.shape[2]
  if how == "zeros":
    new = np.zeros(kernel.shape[:2] + (extra, kernel.shape[3]), kernel.dtype)
  elif how == "mean":
    new = np.repeat(kernel.mean(axis=2, keepdims=True), extra, axis=2)
  else:
    raise ValueError(f"extra_channel_init must be one of {EXTRA_CHANNEL_INITS}")
  return np.concatenate([kernel, new], axis=2)


def _get(tree, path):
  for p in path:
    tree = tree[p]
  return tree


def _set(tree, path, value):
  for p in path[:-1]:
    tree = tree.setdefault(p, {})
  tree[path[-1]] = value


def _unfreeze(tree):
  if hasattr(tree, "items"):
    return {k: _unfreeze(v) for k, v in tree.items()}
  return tree


def import_resnet(variables, state_dict, prefix: Tuple[str, ...] = (),
                  extra_channel_init: str = "zeros", strict: bool = True):
  """Copies a torchvision ResNet state_dict into `variables` at `prefix`.

  Args:
    variables: flax variables {"params", "batch_stats"} of a model that
      contains a `resnet.ResNet` at `prefix` (e.g. ("rgb_stream", "backbone")),
      used as the template for names and shapes; arrays or, to skip a costly
      random init, `jax.eval_shape(model.init, ...)` structs (with `strict`,
      every ResNet leaf is then replaced by a checkpoint array).
    state_dict: a `.pth` path or mapping (see `load_state_dict`).
    prefix: path of the ResNet module inside the variables.
    extra_channel_init: "zeros" or "mean", for input channels the checkpoint
      lacks (see module docstring).
    strict: raise if any ResNet variable is not covered by the checkpoint.

  Returns:
    New variables (nested dicts; the input is not modified).
  """
  state_dict = load_state_dict(state_dict)
  if "conv1_1_3x3_s2.weight" in state_dict:
    state_dict = caffe_pspnet_to_torch_keys(state_dict)
  out = _unfreeze(variables)
  filled = set()
  for key, value in state_dict.items():
    if key.endswith(_IGNORED_SUFFIXES) or key.startswith(_IGNORED_PREFIXES):
      continue
    module, name = key.rsplit(".", 1)
    path = tuple(prefix) + _flax_module_path(module)
    if value.ndim == 4:  # conv weight
      if name != "weight":
        raise ValueError(f"Unexpected conv variable {key}.")
      collection, leaf = "params", "kernel"
      value = value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    else:
      collection, leaf = {
          "weight": ("params", "scale"), "bias": ("params", "bias"),
          "running_mean": ("batch_stats", "mean"),
          "running_var": ("batch_stats", "var")}[name]
    full = (collection,) + path + (leaf,)
    try:
      target = _get(out, full)
    except KeyError as e:
      raise KeyError(f"{key} -> {'/'.join(full)} not in the flax model.") from e
    if value.ndim == 4 and value.shape[2] < target.shape[2]:
      value = _widen_kernel(value, target.shape[2], extra_channel_init)
    if value.shape != target.shape:
      raise ValueError(f"{key}: checkpoint shape {value.shape} != flax "
                       f"{'/'.join(full)} shape {target.shape}.")
    _set(out, full, np.asarray(value, dtype=target.dtype))
    filled.add(full)

  if strict:
    missing = []
    for collection in ("params", "batch_stats"):
      try:
        sub = _get(out, (collection,) + tuple(prefix))
      except KeyError:
        continue
      for path in _leaf_paths(sub):
        if (collection,) + tuple(prefix) + path not in filled:
          missing.append("/".join((collection,) + tuple(prefix) + path))
    if missing:
      raise ValueError(f"Not in the checkpoint: {missing[:10]} "
                       f"({len(missing)} in all).")
  return out


def import_propagation_backbones(variables, state_dict,
                                extra_channel_init: str = "zeros"):
  """Loads one ImageNet ResNet into every stream backbone of N_mp.

  The RGB stream (RGB + prob, 4 channels) gets the RGB filters plus the
  extra channel per `extra_channel_init`; the flow stream (flow + prob,
  3 channels) takes the 3-channel filters as they are, read as (flow x,
  flow y, probability). The paper initialises the flow stream from its
  trained RGB stream (train/stages.py does that); this ImageNet start for
  both streams is ours.
  """
  state_dict = load_state_dict(state_dict)
  for stream in ("rgb_stream", "flow_stream"):
    if stream in variables["params"]:
      variables = import_resnet(variables, state_dict,
                                prefix=(stream, "backbone"),
                                extra_channel_init=extra_channel_init)
  return variables


def _leaf_paths(tree, path=()):
  if hasattr(tree, "items"):
    for k, v in tree.items():
      yield from _leaf_paths(v, path + (k,))
  else:
    yield path


# Keeps op schemas declared by `import_torchvision` alive (torch drops a
# library's definitions when its Library object is collected).
_TORCHVISION_SHIM = []


def import_torchvision():
  """Imports torchvision, working around a CPU-torch / CUDA-torchvision pair.

  PyPI's torchvision wheels are CUDA builds. Beside the CPU torch wheel
  (torch==2.13.0+cpu with torchvision==0.28.0) their C++ ops cannot load,
  and `import torchvision` then dies registering fake kernels for
  `torchvision::nms`/`qnms` ("operator torchvision::nms does not exist").
  The models (ResNet etc.) use no custom op, so on that error the two schemas
  are declared and the import retried; detection ops stay unavailable.
  Raises ImportError when torch or torchvision is absent.
  """
  import sys  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  try:
    import torchvision  # pylint: disable=g-import-not-at-top
    return torchvision
  except RuntimeError as e:
    if "torchvision::" not in str(e):
      raise
  for name in [m for m in sys.modules
               if m == "torchvision" or m.startswith("torchvision.")]:
    del sys.modules[name]
  lib = torch.library.Library("torchvision", "DEF")  # pylint: disable=no-member
  for op in ("nms", "qnms"):
    lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
  _TORCHVISION_SHIM.append(lib)
  import torchvision  # pylint: disable=g-import-not-at-top,redefined-outer-name
  return torchvision
