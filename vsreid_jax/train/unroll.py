"""Unrolled training of N_mp on its own outputs (issue 17, lever 1).

A clip batch holds B clips of T consecutive frames of the train split, trained one frame per SGD
step: at step t every clip's prior is the previous frame's mask warped onto frame t by the real
DIS flow, as at test. At t = 0, and at every t for "teacher" clips, that mask is the ground truth;
for "own" clips, from t = 1 on it is the net's own prediction of the step before, pasted back
into the full frame and binarised (as `PropagationConfig.binarize_prior` does at test). The share
of own clips ramps from 0 to `unroll.own_max` (a curriculum from ground-truth priors). Each step is
its own jitted update, so no gradient flows between frames (stop-gradient); the prediction fed on
is the step's train-mode output. An own clip whose prediction has emptied restarts from the
warped ground truth (at test the object would be lost: nothing left to learn from).

Resumes exactly at clip-batch boundaries: a checkpoint holds the state and the number of clips
consumed (clip c is a pure function of (data.seed, c), dropout a function of the step), and
checkpoints are only written at the end of a clip batch. Files in workdir: checkpoints/,
metrics.csv (+ own, the share of own-prior crops, and prior_iou, the IoU of the priors given),
metrics.png, config.json.
"""
import dataclasses
import functools
import os
import time
from typing import List, Optional

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from vsreid_jax.data import augment
from vsreid_jax.train import propagation_examples as pe
from vsreid_jax.errors import InputError
from vsreid_jax.flow.warp import warp
from vsreid_jax import geometry
from vsreid_jax.train import checkpoint as ckpt_lib
from vsreid_jax.train import metrics as metrics_lib
from vsreid_jax.train import state as state_lib
from vsreid_jax.train import step as step_lib
from vsreid_jax.train.loop import global_batch_size, init_state

TRAIN_FIELDS = ("step", "loss", "bce", "iou", "grad_norm", "lr", "seconds", "examples_per_s", "own", "prior_iou")
_CLIP_STREAM = 2  # random stream of clip sampling (0 and 1: propagation_examples' streams)


@dataclasses.dataclass
class Clip:
  """Clip c: object k of sequence s on frames start..start+length-1 (k present on start-1)."""
  s: int
  k: int
  start: int
  u_own: float  # own-prior clip when u_own < the current own share
  flip: bool
  margins: np.ndarray  # [length] box margins
  seed: int  # colour jitter stream


class ClipSampler:
  """Clips of `length` frames over the items of a `PropagationExamples`, a pure function of index."""

  def __init__(self, examples: pe.PropagationExamples, length: int, seed: int, margin: float,
               margin_jitter: float, flip_prob: float):
    self.examples = examples
    self.length, self.seed = int(length), int(seed)
    self.margin, self.margin_jitter, self.flip_prob = margin, margin_jitter, flip_prob
    n = [len(examples.frames(s)) for s in range(len(examples.sequences))]
    self.starts = [(s, i, k) for s, i, k in examples.items if i + self.length <= n[s]]
    if not self.starts:
      raise InputError(f"no clip of {self.length} frames fits the training sequences")

  def clip(self, c: int) -> Clip:
    rng = np.random.default_rng([self.seed, _CLIP_STREAM, c])
    s, i, k = self.starts[int(rng.integers(len(self.starts)))]
    margins = np.maximum(self.margin + rng.uniform(-1, 1, self.length) * self.margin_jitter, 0.0)
    return Clip(s=s, k=k, start=i, u_own=float(rng.random()), flip=bool(rng.random() < self.flip_prob),
                margins=margins, seed=int(rng.integers(2**31)))


def own_share(step: int, total_steps: int, own_max: float, own_ramp: float) -> float:
  """The curriculum: share of own-prior clips, linear from 0 to own_max over own_ramp x total_steps."""
  ramp = max(own_ramp * total_steps, 1.0)
  return float(own_max * min(step / ramp, 1.0))


@functools.partial(jax.jit, static_argnames=("height", "width", "threshold"))
def paste_binary(logits, box, *, height, width, threshold):
  """sigmoid(logits[S,S,1]) pasted into a zero [height, width] frame, thresholded to {0, 1}."""
  prob = geometry.paste(jax.nn.sigmoid(logits[..., 0]), box, height, width)
  return (prob > threshold).astype(jnp.float32)


def _iou(a, b):
  a, b = a > 0.5, b > 0.5
  union = np.sum(a | b)
  return float(np.sum(a & b) / union) if union else 1.0


class Unroller:
  """Makes the batches of one clip batch frame by frame, feeding predictions back as priors."""

  def __init__(self, examples: pe.PropagationExamples, sampler: ClipSampler, crop_size: int,
               colour_prob: float, threshold: float):
    self.ex, self.sampler = examples, sampler
    self.crop_size, self.colour_prob, self.threshold = int(crop_size), colour_prob, threshold

  def start(self, first_clip: int, batch: int, share: float):
    self.clips: List[Clip] = [self.sampler.clip(c) for c in range(first_clip, first_clip + batch)]
    self.own = [c.u_own < share for c in self.clips]
    self.prev: List[Optional[np.ndarray]] = [None] * batch  # binarised full-frame predictions
    self.boxes = [None] * batch

  def batch(self, t: int):
    """Crops of frame start + t of every clip -> (batch dict, own share, mean prior IoU)."""
    records, own_used, prior_ious = [], 0, []
    for b, c in enumerate(self.clips):
      i = c.start + t
      target = self.ex.gt(c.s, i, c.k)
      use_own = t > 0 and self.own[b] and self.prev[b] is not None and self.prev[b].any()
      if use_own:
        flow = self.ex._flow_cache(c.s).get(i, i - 1)  # pylint: disable=protected-access
        prior = warp(jnp.asarray(self.prev[b])[None], jnp.asarray(flow))[0]
        own_used += 1
      else:
        prior, flow = self.ex.warped_prior(c.s, i - 1, i, c.k)
      prior_ious.append(_iou(np.asarray(prior), target))
      image = jnp.asarray(self.ex.frames(c.s)[i], jnp.float32)
      img_c, flow_c, prior_c, target_c, box = pe.crop_example(
          image, jnp.asarray(flow), jnp.asarray(prior), jnp.asarray(target), float(c.margins[t]),
          size=self.crop_size)
      self.boxes[b] = box
      rec = pe.to_record(img_c, flow_c, prior_c, target_c)
      rng = np.random.default_rng([c.seed, t])
      rec = augment.augment_crops(rec, rng, self.colour_prob, 0.0)
      if c.flip:  # the same mirror for the whole clip; undone before pasting
        rec = augment.hflip(rec)
      records.append(rec)
    return pe.to_batch(records), own_used / len(self.clips), float(np.mean(prior_ious))

  def feed(self, logits) -> None:
    """Keeps each clip's prediction (train-mode logits [B,S,S,1]) as its next frame's prior."""
    logits = np.asarray(jax.device_get(logits))
    for b, c in enumerate(self.clips):
      lg = logits[b][:, ::-1] if c.flip else logits[b]
      h, w = self.ex.frames(c.s).size
      self.prev[b] = np.asarray(paste_binary(jnp.asarray(lg), self.boxes[b], height=h, width=w,
                                             threshold=self.threshold))


def init_from_weights(state, path: str):
  """The train state with params and batch_stats of a `models.weights` file (fine-tuning); "default":
  the shipped N_mp."""
  from vsreid_jax.models import weights  # pylint: disable=g-import-not-at-top
  _, _, variables = weights.load_weights(weights.DEFAULT_WEIGHTS if path == "default" else path)
  params = jax.tree.map(lambda t, v: jnp.asarray(v, t.dtype), state.params, variables["params"])
  stats = jax.tree.map(lambda t, v: jnp.asarray(v, t.dtype), state.batch_stats, variables.get("batch_stats", {}))
  return state.replace(params=params, batch_stats=stats)


def train(config, workdir: str, *, resume: bool = False, stop_at: Optional[int] = None, model=None,
          examples: Optional[pe.PropagationExamples] = None, devices=None, progress: bool = True):
  """Unrolled N_mp training; returns {"state", "train_rows"}. `stop_at`: stop at the first clip-batch
  end at or after this global step (the schedule still spans config.train.steps)."""
  t_start = time.perf_counter()
  t, u, d = config.train, config.unroll, config.data
  if u.length < 2:
    raise InputError(f"unroll.length={u.length}: an unrolled clip needs at least 2 frames")
  workdir = os.path.abspath(workdir)
  ckpt = ckpt_lib.open_workdir(workdir, config, t.keep_checkpoints, resume)
  mesh = step_lib.make_mesh(devices)
  batch_size = global_batch_size(d, mesh.devices.size)
  if model is None:
    from vsreid_jax.models.propagation import build_model  # pylint: disable=g-import-not-at-top
    model = build_model(config.model)
  tx, schedule = state_lib.make_optimizer(config.optimizer, t.steps)
  rng = jax.random.key(t.seed)
  state = init_state(config, model, tx, jax.random.fold_in(rng, 0))
  if config.init.get("weights", ""):
    state = init_from_weights(state, config.init.weights)
  state = jax.device_put(state, step_lib.replicated(mesh))
  train_log = metrics_lib.CsvLog(os.path.join(workdir, "metrics.csv"), TRAIN_FIELDS)
  clips_done = 0
  if resume and ckpt.latest_step() is not None:
    state, data_state = ckpt.restore(state)
    clips_done = data_state["position"]
  if os.path.isfile(train_log.path):
    train_log.truncate(int(jax.device_get(state.step)))
  step = start = int(jax.device_get(state.step))
  stop = min(stop_at if stop_at is not None else t.steps, t.steps)

  if examples is None:
    train_spec, _ = pe.specs_from_config(d, d.crop_size, d.margin)
    examples = pe.PropagationExamples(train_spec, d.cache_dir or pe.default_cache_dir())
    examples.precompute_flows(progress)
  sampler = ClipSampler(examples, u.length, d.seed, d.margin, d.margin_jitter, d.flip_prob)
  unroller = Unroller(examples, sampler, d.crop_size, d.colour_prob, u.threshold)
  train_step = step_lib.make_train_step(mesh, jax.random.fold_in(rng, 1), soft_iou_weight=config.loss.soft_iou_weight,
                                        return_logits=True)
  window = metrics_lib.StepWindow(start)
  bar = tqdm.tqdm(total=stop, initial=start, desc="unroll", disable=not progress, dynamic_ncols=True)
  last_saved = start
  try:
    while step < stop:
      share = own_share(step, t.steps, u.own_max, u.own_ramp)
      unroller.start(clips_done, batch_size, share)
      for frame in range(u.length):
        batch, own, prior_iou = unroller.batch(frame)
        state, m, logits = train_step(state, step_lib.shard_batch(batch, mesh))
        step += 1
        unroller.feed(logits)
        m = dict(m, own=own, prior_iou=prior_iou)
        window.add(step, m)
        bar.update()
        if step % t.log_every == 0:
          row = window.row(step, float(schedule(step - 1)))
          row["examples_per_s"] = batch_size / row["seconds"]
          train_log.append(row)
          bar.set_postfix(loss=f"{row['loss']:.4f}", iou=f"{row['iou']:.3f}", own=f"{row['own']:.2f}")
      clips_done += batch_size
      with window.paused():
        out_of_time = t.get("max_seconds", 0) and time.perf_counter() - t_start > t.max_seconds
        if step // t.checkpoint_every > last_saved // t.checkpoint_every or step >= stop or out_of_time:
          ckpt.save(step, state, dict(position=clips_done, step=step))
          last_saved = step
        if step % t.plot_every < u.length or step >= stop:
          metrics_lib.plot(os.path.join(workdir, "metrics.png"), train_log.rows(), [],
                           train_keys=("loss",))
      if out_of_time:
        tqdm.tqdm.write(f"train.max_seconds={t.max_seconds} reached at step {step}; checkpoint saved")
        break
  finally:
    bar.close()
    ckpt.close()
  return dict(state=state, train_rows=train_log.rows())
