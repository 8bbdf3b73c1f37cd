"""Detector training: loss on a batch, the jitted step, and its Trainer, run by train/fit.py.

`train(config, workdir, resume=...)` writes checkpoints/ (state + step), metrics.csv, metrics.png
and config.json under workdir. Batches are a function of (data.seed, step) and the sampling
randomness of (train.seed, step), so a resumed run repeats an uninterrupted one exactly.
"""
import fnmatch
import itertools
import os
import time
from typing import Dict, Optional

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from vsreid_jax import distributed
from vsreid_jax.detection import losses
from vsreid_jax.detection import model as det_model
from vsreid_jax.errors import InputError
from vsreid_jax.models.weights import load_weights, save_weights
from vsreid_jax.train import fit as fit_lib
from vsreid_jax.train import state as state_lib
from vsreid_jax.train import step as step_lib

TRAIN_FIELDS = ("step", "loss", "rpn_cls", "rpn_box", "roi_cls", "roi_box", "lr", "seconds")


def loss_fn(model, config, params, batch_stats, batch, key):
  """Mean RPN + box-head losses over the batch; (loss, metrics)."""
  v = {"params": params, "batch_stats": batch_stats}
  image_hw = (config.input.height, config.input.width)
  images = det_model.prepare(batch["images"], config)
  feats = model.apply(v, images, method=det_model.FasterRCNN.features)
  objectness, deltas = model.apply(v, feats, method=det_model.FasterRCNN.rpn)
  anchors, levels, spans = det_model.anchor_geometry(config, images.shape[1:3], feats)
  b = images.shape[0]
  k_rpn, k_roi = jax.random.split(key)
  gt, gt_valid = batch["boxes"], batch["box_valid"]
  rpn = jax.vmap(lambda k, o, d, g, gv: losses.rpn_loss(k, o, d, jnp.asarray(anchors), g, gv, config.rpn))(
      jax.random.split(k_rpn, b), objectness.astype(jnp.float32), deltas.astype(jnp.float32), gt, gt_valid)
  props, _, pvalid = det_model.propose(config, objectness, deltas, anchors, levels, spans, image_hw,
                                       training=True)
  gt_labels = jnp.ones(gt_valid.shape, jnp.int32)  # class-agnostic "object"
  rois, classes, target, s_ok = jax.vmap(
      lambda k, p, pv, g, gv, gl: losses.sample_rois(k, p, pv, g, gv, gl, config.roi))(
          jax.random.split(k_roi, b), props, pvalid, gt, gt_valid, gt_labels)
  pooled = det_model.pool_rois(config, feats, rois, image_hw)
  logits, box_deltas = model.apply(v, pooled.astype(model.dtype), method=det_model.FasterRCNN.roi_head)
  roi = jax.vmap(losses.box_head_loss)(logits, box_deltas, classes, target, s_ok)
  n_rpn = jnp.maximum(rpn[2].sum(), 1)
  n_roi = jnp.maximum(roi[2].sum(), 1)
  m = dict(rpn_cls=rpn[0].sum() / n_rpn, rpn_box=rpn[1].sum() / n_rpn,
           roi_cls=roi[0].sum() / n_roi, roi_box=roi[1].sum() / n_roi)
  loss = m["rpn_cls"] + m["rpn_box"] + m["roi_cls"] + m["roi_box"]
  return loss, dict(m, loss=loss)


def frozen_labels(params, patterns):
  """"frozen"/"train" per parameter from path globs ("backbone/layer1_*"); a pattern matches a
  path prefix, so "backbone/conv1" covers its kernel."""
  flat = flax.traverse_util.flatten_dict(params, sep="/")
  out = {}
  for path in flat:
    hit = any(fnmatch.fnmatch(path, p + "*") for p in patterns)
    out[path] = "frozen" if hit else "train"
  return flax.traverse_util.unflatten_dict(out, sep="/")


def make_optimizer(config, params):
  tx, schedule = state_lib.make_optimizer(config.optimizer, config.train.steps)
  tx = optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()},
                             frozen_labels(params, tuple(config.train.frozen)))
  return tx, schedule


def make_train_step(model, config, mesh=None):
  """The jitted step; over a device `mesh` the state is replicated and the batch sharded along it, so
  the losses and gradients are those of the global batch (multi-process jobs too)."""
  base = jax.random.key(config.train.seed)

  def step(state, batch):
    key = jax.random.fold_in(base, state.step)
    grad_fn = jax.value_and_grad(
        lambda p: loss_fn(model, config, p, state.batch_stats, batch, key), has_aux=True)
    (_, m), grads = grad_fn(state.params)
    m["grad_norm"] = optax.tree.norm(grads)
    return state.apply_gradients(grads=grads), m

  if mesh is None:
    return jax.jit(step, donate_argnums=0)
  rep, dat = step_lib.replicated(mesh), step_lib.data_sharded(mesh)
  return jax.jit(step, in_shardings=(rep, dat), out_shardings=(rep, rep), donate_argnums=0)


_SETUPS = {}  # config JSON -> (model, tx, schedule, step)


def setup(config, mesh=None):
  """(model, optimiser, schedule, jitted step) of a config, built once per process: the model
  and optimiser are static parts of the TrainState, so a resumed or repeated `train` in the same
  process (tests) reuses the compiled step only if they are the same objects."""
  key = (config.to_json_best_effort(), mesh)
  if key not in _SETUPS:
    model = det_model.build_model(config)
    shapes = jax.eval_shape(lambda: det_model.init_variables(model, config, jax.random.key(0), det_model.padded_hw(config)))
    tx, schedule = make_optimizer(config, shapes["params"])
    _SETUPS[key] = (model, tx, schedule, make_train_step(model, config, mesh))
  return _SETUPS[key]


def initial_variables(model, config, rng):
  """Random init; with config.init a propagation weights file, its RGB stream's ResNet (RGB
  filters of the first conv, BatchNorm statistics) becomes the backbone; a torchvision Faster
  R-CNN state_dict (.pth) gives every tensor (import_torch.import_for_training)."""
  hp, wp = det_model.padded_hw(config)
  variables = flax.core.unfreeze(det_model.init_variables(model, config, rng, (hp, wp)))
  variables = jax.tree.map(np.asarray, variables)
  if config.get("init"):
    path = config.init
    if not os.path.isabs(path) and not os.path.exists(path):  # relative to the repository
      path = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), path)
    if path.endswith((".pth", ".pt")):  # a torchvision Faster R-CNN state_dict (COCO weights)
      from vsreid_jax.detection import import_torch  # pylint: disable=g-import-not-at-top
      if not os.path.isfile(path):
        raise InputError(f"{config.init}: config.init not found; pass the torchvision Faster R-CNN .pth file")
      return import_torch.import_for_training(variables, path, config.model.num_classes)
    _, _, src = load_weights(path)
    for col in ("params", "batch_stats"):
      bb = src[col]["rgb_stream"]["backbone"]
      flat_src = flax.traverse_util.flatten_dict(bb)
      flat_dst = flax.traverse_util.flatten_dict(variables[col]["backbone"])
      for path, value in flat_src.items():
        if path == ("conv1", "kernel"):
          value = value[:, :, :3]  # drop the prior channel
        if flat_dst[path].shape != value.shape:
          raise ValueError(f"init {config.init}: {path} shape {value.shape} != {flat_dst[path].shape}")
        flat_dst[path] = np.asarray(value, np.float32)
      variables[col]["backbone"] = flax.traverse_util.unflatten_dict(flat_dst)
  return variables


def inference_variables(state) -> Dict:
  return {"params": jax.device_get(state.params), "batch_stats": jax.device_get(state.batch_stats)}


def export(state, path, config_name: str, meta: Optional[dict] = None, dtype=np.float16, config=None):
  """Inference weights; `config` (the training config, overrides included) is recorded in the file."""
  save_weights(path, inference_variables(state), config_name=config_name, meta=meta, dtype=dtype, config=config,
               kind="detector")


def trainer(config, data, mesh=None) -> fit_lib.Trainer:
  """The detector's Trainer (train/fit.py): batches `data.batch(step, batch_size)`, a function of the
  step; the jitted step over `mesh` (default: every device of every process)."""
  mesh = mesh if mesh is not None else step_lib.make_mesh()  # vsreid_jax/distributed.py
  model, tx, schedule, train_step = setup(config, mesh)
  batch_size = config.data.batch_size

  def init(restoring):
    del restoring
    variables = initial_variables(model, config, jax.random.key(config.train.seed))
    # Committed (replicated over the mesh) like a restored state, so a resumed run reuses the compiled step.
    return jax.device_put(state_lib.create_train_state(model, variables, tx), step_lib.replicated(mesh))

  def batches(start, position):
    del position  # batch i feeds step i + 1: a function of the step alone
    for s in itertools.count(start):
      yield data.batch(s, batch_size)

  def step_fn(state, batch):
    # Multi-process: every process makes the whole batch (a function of the step) and keeps its rows.
    return train_step(state, distributed.shard_batch(batch, mesh, batch_size))

  return fit_lib.Trainer(init_state=init, step_fn=step_fn, batches=batches, batch_size=batch_size,
                         schedule=schedule, fields=TRAIN_FIELDS + ("grad_norm",),
                         plot_keys=("loss", "rpn_cls", "rpn_box", "roi_cls", "roi_box"),
                         prefetch=config.data.prefetch)


def train(config, workdir, data, *, resume: bool = False, stop_at: Optional[int] = None,
          progress: bool = True):
  """Trains from `data.batch(step, batch_size)` with train/fit.py; returns {"state", "train_rows"}."""
  started = time.perf_counter()
  out = fit_lib.fit(trainer(config, data), config, workdir, resume=resume, stop_at=stop_at, progress=progress,
                    started=started)
  return dict(state=out["state"], train_rows=out["train_rows"])
