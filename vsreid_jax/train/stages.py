"""The paper's training stages of N_mp as settings of the one training entry point.

What is whose:
- The paper (Li et al. 2017, Sec. 3.1): the RGB stream is trained first, pre-trained on static
  images (COCO and PASCAL VOC) with deformed ground-truth masks as the guide, then fine-tuned on
  DAVIS; the flow stream is initialised from the RGB stream's weights and fine-tuned on DAVIS;
  finally both streams are fine-tuned jointly. The original's training code was never published.
- Ours: the static images are the DAVIS train frames themselves (DESIGN.md), each with a simulated
  deformation of its ground truth (`augment.deform_mask`) as the guide; the flow stream's first
  conv (flow x, flow y, probability) is adapted from the RGB stream's (R, G, B, probability):
  each flow channel gets `init.flow_channel_init` of the colour filters ("mean": their mean,
  "zeros"), the probability channel is copied. Every stage trains on the same loss and optimiser
  (its own `train.steps` schedule).

  stage        streams       priors (config.data.prior_probs: warp, deform, skip)  starts from
  rgb_static   rgb           deform only (0, 1, 0): single frames as static images  random / ImageNet
  rgb          rgb           the config's mix of real-warp, deform and skip priors  an rgb_static workdir
  flow         flow          the config's mix                                       an rgb workdir
  joint        rgb + flow    the config's mix                                       a flow workdir

`joint` without a previous workdir is the single joint stage from random init (the default).
A stage names its predecessor's workdir in `config.init.from_stage_workdir` (`vsreid train
--init-from WORKDIR`); the stream weights are read from that workdir's latest checkpoint, and a
stream it lacks from the workdir it started from in turn (joint takes its flow stream from the
flow workdir and its RGB stream from the rgb workdir the flow stage started from). Only weights
and BatchNorm statistics carry over: the optimiser, step and data position start afresh. Each
stage resumes exactly like any run (`--resume`), from its own checkpoints.
"""
import json
import os
from typing import Dict, Optional, Tuple

import jax
import numpy as np
import orbax.checkpoint as ocp

# The stage settings are the config's (configs/train_propagation.py `get_config(arg, stage)`).
from vsreid_jax.configs.train_propagation import STAGES, STREAMS, apply_stage  # pylint: disable=unused-import
from vsreid_jax.errors import InputError

PREVIOUS = {"rgb": "rgb_static", "flow": "rgb", "joint": "flow"}  # the workdir a stage starts from
FLOW_CHANNEL_INITS = ("mean", "zeros")
# Input channels of each stream's first conv (models/propagation.py): colour + prob, flow + prob.
_COLOUR, _FLOW = 3, 2


def check_stage(config) -> None:
  """Raises InputError when the config's streams contradict its stage (e.g. `--set stage=flow`
  given without the stage's other settings: use `--stage`, which sets them)."""
  stage = config.get("stage", "joint")
  if stage not in STAGES:
    raise InputError(f"stage {stage!r}: choose one of {', '.join(STAGES)}")
  if tuple(config.model.streams) != STREAMS[stage]:
    raise InputError(f"stage {stage} trains streams {STREAMS[stage]} but config.model.streams is "
                     f"{tuple(config.model.streams)}; pass --stage {stage} (it sets both)")


def workdir_config(workdir: str) -> dict:
  path = os.path.join(workdir, "config.json")
  if not os.path.isfile(path):
    raise InputError(f"{workdir}: no config.json; --init-from takes the workdir of a previous training stage")
  with open(path) as f:
    return json.load(f)


def load_workdir_variables(workdir: str) -> Tuple[Dict, int]:
  """({"params", "batch_stats"} as numpy, step) of the latest checkpoint in a training workdir."""
  directory = os.path.join(os.path.abspath(workdir), "checkpoints")
  if not os.path.isdir(directory):
    raise InputError(f"{workdir}: no checkpoints/ folder; train the previous stage there first")
  manager = ocp.CheckpointManager(directory)
  try:
    step = manager.latest_step()
    if step is None:
      raise InputError(f"{workdir}: holds no checkpoint yet; train the previous stage there first")
    state = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
  finally:
    manager.close()
  to_np = lambda t: jax.tree.map(np.asarray, dict(t)) if t is not None else {}
  return dict(params=to_np(state["params"]), batch_stats=to_np(state.get("batch_stats"))), int(step)


def adapt_rgb_to_flow(kernel: np.ndarray, how: str = "mean") -> np.ndarray:
  """First-conv kernel of the RGB stream [h, w, 3 + 1, C] -> the flow stream's [h, w, 2 + 1, C].

  The probability filter (last input channel) is copied; each flow channel gets the mean of the
  colour filters ("mean") or zeros ("zeros").
  """
  if kernel.ndim != 4 or kernel.shape[2] != _COLOUR + 1:
    raise ValueError(f"expected an RGB-stream first conv [h, w, {_COLOUR + 1}, C], got {kernel.shape}")
  colour, prob = kernel[:, :, :_COLOUR], kernel[:, :, _COLOUR:]
  if how == "mean":
    flow = np.repeat(colour.mean(axis=2, keepdims=True), _FLOW, axis=2)
  elif how == "zeros":
    flow = np.zeros(kernel.shape[:2] + (_FLOW, kernel.shape[3]), kernel.dtype)
  else:
    raise InputError(f"init.flow_channel_init {how!r}: choose one of {', '.join(FLOW_CHANNEL_INITS)}")
  return np.concatenate([flow, prob], axis=2)


def _copy_stream(target: Dict, source: Dict, stream: str, source_stream: str, flow_init: Optional[str],
                 where: str) -> Dict:
  """target's `{stream}_stream` subtrees (params and batch_stats) from source's `{source_stream}_stream`;
  with `flow_init`, input-channel mismatches of a first conv are adapted RGB -> flow."""
  out = dict(target)
  for collection in ("params", "batch_stats"):
    tgt = target.get(collection, {}).get(f"{stream}_stream")
    if tgt is None:
      continue
    src = source[collection].get(f"{source_stream}_stream")
    if src is None:
      raise InputError(f"{where}: checkpoint has no {collection}/{source_stream}_stream")

    def fill(path, t, src=src, collection=collection):
      node = src
      for p in path:
        key = p.key
        if key not in node:
          raise InputError(f"{where}: {collection}/{source_stream}_stream/"
                           f"{'/'.join(q.key for q in path)} missing: a different model config?")
        node = node[key]
      value = np.asarray(node)
      if value.shape != tuple(t.shape) and flow_init and value.ndim == 4 and value.shape[2] != t.shape[2]:
        value = adapt_rgb_to_flow(value, flow_init)
      if value.shape != tuple(t.shape):
        raise InputError(f"{where}: {collection}/{source_stream}_stream/{'/'.join(q.key for q in path)} has "
                         f"shape {value.shape}, the model wants {tuple(t.shape)}: a different model config?")
      return value.astype(t.dtype)

    out[collection] = dict(out[collection])
    out[collection][f"{stream}_stream"] = jax.tree_util.tree_map_with_path(fill, tgt)
  return out


def init_from_stage(config, variables: Dict) -> Dict:
  """Fills the streams of `variables` from `config.init.from_stage_workdir` (see module docstring).

  The workdir must hold the stage before `config.stage` (PREVIOUS); each stream of the model is
  taken from the nearest workdir up the chain that trained it; a flow stream with none up the
  chain is adapted from the RGB stream (`adapt_rgb_to_flow`, the paper's flow initialisation).
  """
  stage = config.get("stage", "joint")
  workdir = config.init.get("from_stage_workdir", "")
  if not workdir:
    return variables
  want = PREVIOUS.get(stage)
  found = workdir_config(workdir).get("stage", "joint")
  if want is None or found != want:
    raise InputError(f"{workdir}: a {found} stage workdir, but stage {stage} starts from "
                     f"{want + ' stage' if want else 'no previous stage'} ({' -> '.join(STAGES)})")
  flow_init = config.init.get("flow_channel_init", "mean")
  variables = dict(variables)  # arrays, or shape structs (only .shape / .dtype of the target are read)
  todo = [s for s in config.model.streams]
  seen = set()
  while todo and workdir:
    path = os.path.abspath(workdir)
    if path in seen:
      raise InputError(f"{workdir}: the chain of init.from_stage_workdir loops back on itself")
    seen.add(path)
    source, _ = load_workdir_variables(workdir)
    have = [s for s in todo if f"{s}_stream" in source["params"]]
    for s in have:
      variables = _copy_stream(variables, source, s, s, None, workdir)
    todo = [s for s in todo if s not in have]
    if todo == ["flow"] and "rgb_stream" in source["params"]:
      variables = _copy_stream(variables, source, "flow", "rgb", flow_init, workdir)
      todo = []
    workdir = workdir_config(workdir).get("init", {}).get("from_stage_workdir", "")
  if todo:
    raise InputError(f"{config.init.from_stage_workdir}: no workdir up its chain trained the "
                     f"{' and '.join(todo)} stream")
  return variables
