"""Online adaptation of N_mp on a video's first frame, Lucid-Data-Dreaming style.

The original test-dev model was fine-tuned on each test video's first frame (DESIGN.md). Only
that frame and its K masks are known, so training pairs are synthesised from it alone:

  * a smooth random deformation (similarity + elastic) of the whole frame, image and masks
    together, is a synthetic "current frame" and its GT. The deformation is a backward map
    current -> first, so its displacement is exactly the flow current -> previous that N_mp
    takes (current(x) = first(x + flow(x))): the flow stream is trained on a true flow (plus a
    little smooth noise: the DIS flow it gets at test time is not exact);
  * now and then one object is cut out, the hole inpainted (cv2.inpaint), and the object pasted
    at a new place (new background around it: an appearance change); the flow there points back
    to the object's old place (the ghost the move leaves in the warped prior is cut: real
    frame-to-frame ghosts are slivers);
  * the prior is the first-frame mask warped by that flow (`flow.warp.warp`, as at inference),
    which alone would be perfect, degraded like a propagated mask (`augment.deform_mask`);
  * crops as at inference (box of prior > 0.5 enlarged by the net's margin, `crop_example`),
    colour jitter and flips (`augment.augment_crops` via `BatchIterator`). Large objects are
    synthesised at a reduced resolution the crops still downsample from (`working_scale`).

A COPY of the net's variables is then fine-tuned with the shared train step (`train.step`,
AdamW from `configs/online.py`); the result has the same tree as the input, so the segmenter
swaps it in per video without recompiling (`propagation.nets.PropagationNet`).

BatchNorm is frozen: every step normalises with the running (inference) statistics, which stay
as they are. A batch holds 4 crops of one video, mostly of the same object: batch statistics of
such a batch are those of one object, not of the data the net was trained on, so normalising
with them (and letting them leak into the running averages) would shift every layer's input at
test time. The net's `train` flag switches BatchNorm and dropout together, so dropout is off as
well; with a few dozen small steps the augmentation is the regulariser.

Everything is a function of the seed: same seed, same pairs, same batches, same variables.
"""
import time
from typing import Dict, Optional, Tuple

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from vsreid_jax.data import augment
from vsreid_jax.train import propagation_examples as pe
from vsreid_jax.flow.warp import warp
from vsreid_jax.train import state as state_lib
from vsreid_jax.train import step as step_lib
from vsreid_jax.utils import jit_cache_size

# Random streams per example index (BatchIterator's colour/flip stream is [seed, 1, index]).
_PAIR_STREAM = 0


def _geometry(mask: np.ndarray) -> Tuple[float, np.ndarray]:
  """Size sqrt(area) and centroid (x, y) of mask > 0.5."""
  ys, xs = np.nonzero(mask > 0.5)
  if len(xs) == 0:
    return 1.0, np.array([mask.shape[1] / 2, mask.shape[0] / 2])
  return float(np.sqrt(len(xs))), np.array([xs.mean(), ys.mean()])


def _smooth_field(rng, h: int, w: int, std: float, cell: float) -> np.ndarray:
  """[h, w, 2] random displacement, smooth over `cell` pixels (a coarse grid upsampled bicubically)."""
  gh, gw = (min(int(np.ceil(n / max(cell, 1.0))) + 1, 64) for n in (h, w))
  grid = rng.normal(0, std, (gh, gw, 2)).astype(np.float32)
  return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def _affine_map(grid: np.ndarray, mat: np.ndarray, offset: np.ndarray) -> np.ndarray:
  """mat @ p + offset at every pixel p of grid [H, W, 2], float32 [H, W, 2] (separable sums)."""
  x, y = grid[0, :, 0], grid[:, 0, 1]
  out = np.empty(grid.shape, np.float32)
  out[..., 0] = (mat[0, 0] * x + offset[0])[None, :] + (mat[0, 1] * y)[:, None]
  out[..., 1] = (mat[1, 0] * x)[None, :] + (mat[1, 1] * y + offset[1])[:, None]
  return out


def _remap(x: np.ndarray, source: np.ndarray, border=cv2.BORDER_REPLICATE) -> np.ndarray:
  """Bilinear backward remap: out(p) = x(source(p)); replicate border like `flow.warp`."""
  return cv2.remap(x, source[..., 0], source[..., 1], cv2.INTER_LINEAR, borderMode=border)


def inpaint_background(frame: np.ndarray, mask: np.ndarray, radius: int = 5) -> np.ndarray:
  """The frame with the object (dilated a little: soft edges) filled in from its surroundings."""
  hole = cv2.dilate((mask > 0.5).astype(np.uint8), np.ones((7, 7), np.uint8))
  return cv2.inpaint(np.ascontiguousarray(frame), hole, radius, cv2.INPAINT_TELEA)


def _cached(cache: dict, key, fn):
  if key not in cache:
    cache[key] = fn()
  return cache[key]


def synthetic_pair(frame: np.ndarray, masks: np.ndarray, rng: np.random.Generator, synth,
                   cache: Optional[dict] = None) -> Dict[str, np.ndarray]:
  """A synthetic (current frame, GT, flow current -> first) from the first frame alone.

  frame: RGB uint8 [H, W, 3]; masks: [K, H, W] of the first frame (0..1); synth: the
  `configs/online.py` synth ConfigDict; cache: a dict kept across calls with the same frame and
  masks (object geometry, the inpainted frame per pasted object).
  Returns image uint8 [H,W,3], masks float32 [K,H,W] (the current frame's GT), flow float32
  [H,W,2] with current(x) = first(x + flow(x)), `valid` bool [H,W] where that holds exactly (the
  source lies inside the frame and is not inpainted), `hole` bool [H,W] (background sampled from
  the inpainted region: a warped mask there is a ghost of the moved object), `pasted` (object
  index or -1).
  """
  frame = np.asarray(frame, np.uint8)
  masks = np.asarray(masks, np.float32)
  k_objects, h, w = masks.shape
  cache = {} if cache is None else cache
  size, centre = _cached(cache, "all", lambda: _geometry(masks.max(axis=0)))
  grid = _cached(cache, "grid", lambda: np.stack(np.meshgrid(np.arange(w, dtype=np.float32),
                                                             np.arange(h, dtype=np.float32)), axis=-1))

  # Global backward map: similarity about the objects' centre + a smooth elastic field.
  shift = np.clip(rng.normal(0, synth.translate, 2), -2 * synth.translate, 2 * synth.translate) * size
  zoom = 1 + rng.uniform(-synth.scale, synth.scale)
  a = np.deg2rad(rng.uniform(-synth.rotate_deg, synth.rotate_deg))
  rot = zoom * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
  source = _affine_map(grid, rot, centre + shift - rot @ centre)
  cell = size / rng.uniform(*synth.elastic_cells)
  source += _smooth_field(rng, h, w, synth.elastic * size, cell)

  pasted = -1
  if k_objects and rng.random() < synth.paste_prob:
    k = int(rng.integers(k_objects))
    size_k, centre_k = _cached(cache, k, lambda: _geometry(masks[k]))
    angle = rng.uniform(0, 2 * np.pi)
    new_centre = centre_k + rng.uniform(*synth.paste_shift) * size_k * np.array([np.cos(angle), np.sin(angle)])
    new_centre = np.clip(new_centre, [0, 0], [w - 1, h - 1])
    zoom_k = 1 + rng.uniform(-synth.paste_scale, synth.paste_scale)
    source_k = _affine_map(grid, np.eye(2) / zoom_k, centre_k - new_centre / zoom_k)
    alpha = _remap(masks[k], source_k, cv2.BORDER_CONSTANT)
    if alpha.max() > 0.5:  # else it left the frame: keep the plain deformation
      pasted = k
  if pasted < 0:
    image = _remap(frame, source, cv2.BORDER_REFLECT_101)
    out_masks = np.stack([_remap(m, source) for m in masks]) if k_objects else masks
    flow = source - grid
    hole = np.zeros((h, w), bool)
  else:
    background = _cached(cache, ("background", pasted),
                         lambda: inpaint_background(frame, masks[pasted], int(synth.inpaint_radius)))
    inpainted = cv2.dilate((masks[pasted] > 0.5).astype(np.uint8), np.ones((7, 7), np.uint8))
    front = alpha > 0.5
    a3 = alpha[..., None]
    image = a3 * _remap(frame, source_k, cv2.BORDER_REFLECT_101) + (1 - a3) * _remap(
        background, source, cv2.BORDER_REFLECT_101).astype(np.float32)
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    out_masks = np.stack([alpha if j == pasted else _remap(m, source) * (1 - alpha) for j, m in enumerate(masks)])
    source = np.where(front[..., None], source_k, source)
    flow = source - grid
    hole = ~front & (_remap(inpainted.astype(np.float32), source, cv2.BORDER_CONSTANT) > 0)
  inside = (source[..., 0] >= 0) & (source[..., 0] <= w - 1) & (source[..., 1] >= 0) & (source[..., 1] <= h - 1)
  return dict(image=image, masks=out_masks.astype(np.float32), flow=flow.astype(np.float32),
              valid=inside & ~hole, hole=hole, pasted=pasted)


def working_scale(masks: np.ndarray, crop_size: int, margin: float) -> float:
  """The largest downscale (<= 1) at which every object's crop box still spans >= crop_size pixels
  on each side, so the S x S crops lose nothing against crops of the full frame (and the pairs
  cost a quarter for an object as large as half the frame)."""
  sides = []
  for m in masks:
    ys, xs = np.nonzero(m > 0.5)
    if len(xs):
      sides.append(min(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) * (1 + 2 * margin))
  return float(min(1.0, crop_size / min(sides))) if sides else 1.0


class FirstFrameExamples:
  """Training examples (`propagation_examples` records) synthesised from one first frame.

  Example `index` is a pure function of (seed, index): object index % K, a synthetic pair, the
  degraded warped prior, the crop. Pairs are made at `working_scale` of the frame.
  """

  def __init__(self, frame: np.ndarray, masks: np.ndarray, config, crop_size: int, margin: float, seed: int = 0):
    masks = np.asarray(masks, np.float32)
    masks = masks[(masks > 0.5).any(axis=(1, 2))]  # padding and vanished objects: nothing to learn
    if not len(masks):
      raise ValueError("no object in the first-frame masks")
    self.scale = working_scale(masks, crop_size, margin)
    self.frame, self.masks = np.asarray(frame, np.uint8), masks
    if self.scale < 1:  # big objects: synthesise at a resolution the crops still downsample from
      h, w = masks.shape[1:]
      size = (max(int(round(w * self.scale)), 1), max(int(round(h * self.scale)), 1))
      self.frame = cv2.resize(self.frame, size, interpolation=cv2.INTER_AREA)
      self.masks = np.stack([cv2.resize(m, size, interpolation=cv2.INTER_AREA) for m in masks])
    self.config = config
    self.crop_size, self.margin, self.seed = int(crop_size), float(margin), int(seed)
    self.deform = augment.DeformConfig(**{k: tuple(v) if isinstance(v, list) else v
                                          for k, v in config.deform.to_dict().items()})
    self.sizes = [_geometry(m)[0] for m in self.masks]
    self.cache = {}  # synthetic_pair's: geometry, pixel grid, inpainted backgrounds

  def record(self, index: int) -> Dict[str, np.ndarray]:
    cfg = self.config
    rng = np.random.default_rng([self.seed, _PAIR_STREAM, index])
    k = index % len(self.masks)
    h, w = self.frame.shape[:2]
    for _ in range(100):
      pair = synthetic_pair(self.frame, self.masks, rng, cfg.synth, self.cache)
      target = pair["masks"][k]
      # What inference would warp: the first-frame mask carried by the (exact) flow; the ghost
      # a big paste leaves at the object's old place is cut (real frame-to-frame ghosts are slivers).
      warped = np.asarray(warp(jnp.asarray(self.masks[k:k + 1]), jnp.asarray(pair["flow"])))[0]
      warped = np.where(pair["hole"], 0.0, warped)
      prior = augment.deform_mask(warped > 0.5, rng, self.deform)
      if prior.max() <= 0.5 and target.max() <= 0.5:
        continue  # nothing to crop around; draw again
      flow = pair["flow"] + _smooth_field(rng, h, w, cfg.synth.flow_noise * self.sizes[k], self.sizes[k] / 2)
      margin = max(self.margin + rng.uniform(-1, 1) * cfg.margin_jitter, 0.0)
      crop = pe.crop_example(jnp.asarray(pair["image"], jnp.float32), jnp.asarray(flow), jnp.asarray(prior),
                             jnp.asarray(target), margin, size=self.crop_size)
      return pe.to_record(*crop[:4])
    raise ValueError(f"example {index}: object {k} left every synthetic frame; is its mask tiny?")


def frozen_bn_apply(model):
  """`apply_fn` for the shared train step that keeps BatchNorm on its running statistics.

  The step calls apply_fn(variables, ..., train=True, rngs=..., mutable=["batch_stats"]) and takes
  the returned batch_stats as the new ones: here the net runs in inference mode and hands the
  statistics back unchanged (no dropout either; see the module docstring).
  """

  def apply(variables, image, flow, prior, train=False, rngs=None, mutable=False):
    del train, rngs
    logits = model.apply(variables, image, flow, prior, train=False)
    if mutable:
      return logits, {"batch_stats": variables["batch_stats"]}
    return logits

  return apply


class OnlineAdapter:
  """Fine-tunes copies of one net's variables on first frames; the step compiles once for all videos.

  The jitted train step keys on the train state's structure, whose static fields (apply_fn, the
  optimiser) are built here once, so every video after the first reuses the compiled step.
  """

  def __init__(self, model, config, crop_size: int, margin: float):
    self.model, self.config = model, config
    self.crop_size, self.margin = int(crop_size), float(margin)
    self.steps = int(config.steps)
    self.tx, self.schedule = state_lib.make_optimizer(config.optimizer, self.steps)
    self.apply_fn = frozen_bn_apply(model)
    # One device: one video's batch of 4 crops; inference runs on the default device too.
    self.mesh = step_lib.make_mesh(jax.devices()[:1])
    # Dropout is off (inference-mode apply), so the step's dropout key is never used.
    self.train_step = step_lib.make_train_step(self.mesh, jax.random.key(0),
                                               soft_iou_weight=config.loss.soft_iou_weight)

  def adapt(self, variables, frame: np.ndarray, masks: np.ndarray, *, seed: Optional[int] = None,
            progress: bool = False, desc: str = "adapt"):
    """Returns (new variables, info). `variables` are not modified (the state starts from a copy).

    frame: RGB uint8 [H, W, 3]; masks [K, H, W] (0..1). info: loss [steps] per step, seconds
    (wall, compilation excluded), compile_seconds (setup and first step, when they compiled), steps.
    """
    cfg = self.config
    seed = int(cfg.seed if seed is None else seed)
    # Compilations: the step (first video) and the example crop/warp (first frame size).
    watched = (self.train_step, pe.crop_example, warp)
    compiled_before = sum(jit_cache_size(f) for f in watched)
    start = time.perf_counter()
    examples = FirstFrameExamples(frame, masks, cfg, self.crop_size, self.margin, seed)
    batches = pe.BatchIterator(examples.record, int(cfg.batch_size), seed=seed,
                               augment_prob=(cfg.colour_prob, cfg.flip_prob), prefetch=int(cfg.prefetch))
    copy = lambda tree: jax.tree.map(np.array, tree)  # fresh buffers: the step donates its state
    state = state_lib.TrainState.create(apply_fn=self.apply_fn, params=copy(variables["params"]),
                                        batch_stats=copy(variables["batch_stats"]), tx=self.tx)
    state = jax.device_put(state, step_lib.replicated(self.mesh))
    losses, compile_seconds = [], 0.0
    bar = tqdm.tqdm(total=self.steps, desc=desc, unit="step", disable=not progress, leave=False,
                    dynamic_ncols=True)
    try:
      for i in range(self.steps):
        batch = step_lib.shard_batch(next(batches), self.mesh)
        state, metrics = self.train_step(state, batch)
        if i == 0:  # setup, first batch and first step: compilation when anything compiled
          jax.block_until_ready(metrics)
          compiled = sum(jit_cache_size(f) for f in watched) > compiled_before
          compile_seconds = time.perf_counter() - start if compiled else 0.0
        losses.append(metrics["loss"])
        bar.update()
        if progress and (i + 1) % 10 == 0:
          bar.set_postfix(loss=f"{float(losses[-1]):.4f}")
    finally:
      bar.close()
      batches.close()
    params = jax.device_get(state.params)
    new = dict(variables)
    new["params"] = params
    seconds = time.perf_counter() - start - compile_seconds
    return new, dict(loss=np.asarray(jax.device_get(losses), np.float32), seconds=seconds,
                     compile_seconds=compile_seconds, steps=self.steps)


_ADAPTERS = {}


def cached_adapter(model, config, crop_size: int, margin: float, model_key: str) -> OnlineAdapter:
  """One adapter, hence one compiled train step, per (net config `model_key`, adaptation config,
  crop) in this process: every video and every Segmenter with the same net reuses it."""
  key = (model_key, config.to_json(), int(crop_size), float(margin))
  if key not in _ADAPTERS:
    _ADAPTERS[key] = OnlineAdapter(model, config, crop_size, margin)
  return _ADAPTERS[key]
