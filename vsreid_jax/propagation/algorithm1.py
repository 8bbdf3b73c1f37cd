"""Algorithm 1 of VS-ReID: mask propagation from one frame to its neighbour.

For every object: warp its probability map from the previous frame with the flow, take the box
of P > 0.5, enlarge it, crop image/flow/warped probability to a fixed S x S, run N_mp, paste the
result back; average over scales (margin, S). With `exclusive` (on in the segment config) the
objects then compete for pixels (`exclusive_probs`) before the lost rule. The four stages are
separate jitted functions so that each can be timed; all shapes are static (objects padded to a
bucket, S fixed per scale), so a whole video compiles each stage once per (frame size, bucket, S).
"""
import contextlib
import dataclasses
import functools
from typing import Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from vsreid_jax.flow.warp import warp
from vsreid_jax import geometry
from vsreid_jax.propagation.nets import NetFn
from vsreid_jax.propagation.target import TargetModel
from vsreid_jax.utils import StageTimer


@dataclasses.dataclass(frozen=True)
class PropagationConfig:
  scales: Tuple[Tuple[float, int], ...] = ((0.15, 449),)  # (box margin, crop size S) pairs, averaged
  use_box: bool = True  # False: the whole frame is the "box" (the paper's baseline without bbox crop)
  threshold: float = 0.5  # P > threshold is the object
  lost_ratio: float = 0.1  # area below lost_ratio * first-frame area: the object is lost
  # Warp the thresholded previous mask instead of its probabilities: learned nets are trained on
  # warped binary ground truth, and feeding them their own soft output compounds small biases.
  binarize_prior: bool = False
  # The crop keeps the object's scale: when the warped mask's area falls below the first frame's
  # (a partial occlusion, the object shrinking behind a leg or a tree), its enlarged box is grown
  # about its centre by max(1, min_crop_scale * sqrt(first_area / area)). 0: the paper's box alone.
  min_crop_scale: float = 0.0
  # An object the lost rule would drop is segmented once more on its box enlarged by this margin
  # (a wider search before giving up: the object slid out of its crop); 0: off.
  lost_search_margin: float = 0.0
  # Objects compete for pixels each frame, as the final merge makes them (issue 20; XMem/Cutie
  # aggregate objects every frame): where another object's probability is higher, an object's is
  # capped at 1 minus it (`exclusive_probs`). A target hidden behind an occluder then shrinks and
  # is declared lost instead of its mask sliding onto the occluder. One object alone: unchanged.
  exclusive: bool = False
  # A lost object stays dormant: N_mp keeps looking for it on its last mask's crop (that mask as
  # the prior, held where it was), and it is alive again when the result reaches revive_ratio x its
  # first area (issue 17: a ball half hidden by a leg was lost for good at frame 5 of 50 by the
  # +bbox crop row). Callers keep the last masks (`remember`). 0: lost is lost (the original code).
  revive_ratio: float = 0.0
  object_buckets: Tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 255)


def object_bucket(k: int, buckets: Sequence[int]) -> int:
  """Smallest bucket that holds k objects; objects are padded up to it."""
  for b in buckets:
    if b >= k:
      return b
  raise ValueError(f"{k} objects exceed the largest bucket {buckets[-1]}")


@functools.partial(jax.jit, static_argnames=("threshold",))
def binarize(prob, threshold):
  return (prob > threshold).astype(prob.dtype)


@functools.partial(jax.jit, static_argnames=("margin", "size", "use_box", "threshold", "min_scale"))
def crop_stage(image, flow, warped, first_area=None, *, margin, size, use_box, threshold, min_scale=0.0):
  """Boxes of warped[K,H,W] > threshold, enlarged; crops [K,S,S,*] of image, flow and warped.

  With min_scale > 0 and first_area[K] given, each box is further grown about its centre by
  max(1, min_scale * sqrt(first_area / area of warped > threshold)) (PropagationConfig.min_crop_scale).
  """
  h, w = warped.shape[1:]
  if use_box:
    boxes, valid = jax.vmap(lambda p: geometry.mask_box(p, threshold))(warped)
    boxes = jax.vmap(lambda b: geometry.enlarge_box(b, margin, h, w))(boxes)
    if min_scale > 0 and first_area is not None:
      area = jnp.sum(warped > threshold, axis=(1, 2)).astype(jnp.float32)
      grow = jnp.maximum(1.0, min_scale * jnp.sqrt(jnp.asarray(first_area, jnp.float32) / jnp.maximum(area, 1.0)))
      boxes = jax.vmap(lambda b, g: geometry.scale_box(b, g, h, w))(boxes, grow)
  else:
    valid = jnp.any(warped > threshold, axis=(1, 2))
    boxes = jnp.broadcast_to(jnp.array([0.0, 0.0, w, h], jnp.float32), (warped.shape[0], 4))
  img_c = jax.vmap(lambda b: geometry.crop_resize(image, b, size))(boxes)
  flow_c = jax.vmap(lambda b: geometry.crop_flow(flow, b, size))(boxes)
  prob_c = jax.vmap(lambda p, b: geometry.crop_resize(p[..., None], b, size))(warped, boxes)
  return img_c, flow_c, prob_c, boxes, valid


@functools.partial(jax.jit, static_argnames=("height", "width"))
def paste_stage(logits, boxes, valid, *, height, width):
  """sigmoid(logits[K,S,S,1]) pasted into [K,H,W]; objects with no box get 0."""
  prob = jax.nn.sigmoid(logits[..., 0])
  full = jax.vmap(lambda p, b: geometry.paste(p, b, height, width))(prob, boxes)
  return jnp.where(valid[:, None, None], full, 0.0)


def exclusive_probs(prob):
  """prob[K, H, W] -> each object's probability where it is the most probable object, elsewhere
  min(prob, 1 - the most probable other object's): the winner of a pixel keeps it, the others stay
  below 1 - the winner (so below 0.5 where the winner is above it). K = 1: unchanged."""
  k = prob.shape[0]
  if k == 1:
    return prob
  order = jnp.argsort(prob, axis=0)
  first = jnp.take_along_axis(prob, order[-1:], axis=0)[0]
  second = jnp.take_along_axis(prob, order[-2:-1], axis=0)[0]
  is_first = jnp.arange(k)[:, None, None] == order[-1][None]
  other = jnp.where(is_first, second[None], first[None])  # the best of the others, per object
  return jnp.where(prob >= other, prob, jnp.minimum(prob, 1.0 - other))


# prob_sum is a temporary of segment(): its buffer is reused for the output (donated).
@functools.partial(jax.jit, static_argnames=("threshold", "exclusive"), donate_argnames=("prob_sum",))
def finish_stage(prob_sum, n_scales, alive, first_area, lost_ratio, dormant=None, revive_ratio=0.0, *, threshold,
                 exclusive=False):
  """Averages scales, zeroes dead objects, makes the objects compete for pixels (`exclusive`:
  `exclusive_probs`), and marks objects whose area fell below the lost rule; a dormant object
  (dormant[Kb], run from its last mask) is alive again at revive_ratio x its first area."""
  prob = prob_sum / n_scales
  running = alive if dormant is None else alive | dormant
  if exclusive:
    prob = exclusive_probs(jnp.where(running[:, None, None], prob, 0.0))
  area = jnp.sum(prob > threshold, axis=(1, 2))
  still = alive & (area >= lost_ratio * first_area) & (area > 0)
  if dormant is not None:
    still = still | (dormant & (area >= revive_ratio * first_area) & (area > 0))
  prob = jnp.where(still[:, None, None], prob, 0.0)
  return prob, still, area


class Propagator:
  """Runs Algorithm 1 for all objects of one frame with a given N_mp."""

  def __init__(self, net: NetFn, config: PropagationConfig = PropagationConfig(),
               target: Optional[TargetModel] = None):
    self.net = net
    self.config = config
    self.target = target  # first-frame appearance model fused with N_mp's logits (target.py); None: off
    self.timer = StageTimer()  # used when step() is given no timer
    self.net_calls = 0

  @property
  def jitted(self):
    """The compiled functions whose compilations the solver must keep bounded."""
    extra = self.target.jitted if self.target is not None else ()
    return (binarize, warp, crop_stage, self.net, paste_stage, finish_stage) + extra

  def fit_target(self, frames, prob, timer: StageTimer = None, starts=None) -> None:
    """Fits the target model (if any) on each object's given frame and mask, cropped as the first
    scale crops, or with the target config's fit_margin when set (the video's other frames then
    fuse its logits with N_mp's). No-op without a target model.

    Args:
      frames: the video's frames (indexable, each [H, W, 3] uint8), or one image [H, W, 3] when
        every object is given on it.
      prob: [Kb, H, W] each object's mask on the frame that gives it.
      timer: where the fit's time goes (default: the propagator's).
      starts: [Kb] the frame giving each object (object_starts; padding -1 counts as frame 0);
        None: every object on frame 0.
    """
    if self.target is None:
      return
    cfg = self.config
    margin, size = cfg.scales[0]
    margin = self.target.config.fit_margin or margin  # more of the background around the object
    one_image = getattr(frames, "ndim", 0) == 3
    st = np.zeros(prob.shape[0], np.int64) if starts is None else np.maximum(np.asarray(starts), 0)
    with (timer or self.timer).stage("target", crop_stage, *self.target.jitted):
      img_c = prob_c = None
      for s in np.unique(st):  # crops of every object on each giving frame; each object keeps its own
        image = jnp.asarray(frames if one_image else frames[int(s)], jnp.float32)
        no_flow = jnp.zeros(image.shape[:2] + (2,), jnp.float32)
        ic, _, pc, _, _ = crop_stage(image, no_flow, jnp.asarray(prob, jnp.float32), margin=float(margin),
                                     size=int(size), use_box=cfg.use_box, threshold=cfg.threshold)
        if img_c is None:
          img_c, prob_c = ic, pc
        else:
          mine = jnp.asarray(st == s)[:, None, None, None]
          img_c, prob_c = jnp.where(mine, ic, img_c), jnp.where(mine, pc, prob_c)
      self.target.fit(img_c, prob_c)

  def one_object(self, index: int):
    """A context in which the propagator runs object `index` alone (bucket 1: the solver's recovery
    and re-propagation): the target model, if any, uses that object's parameters."""
    if self.target is None:
      return contextlib.nullcontext()
    return self.target.only(index)

  @contextlib.contextmanager
  def without_target(self):
    """A context in which N_mp runs without the target model (a box prompt: no mask of the object to
    fit it on yet, and the parameters held may be another video's)."""
    saved, self.target = self.target, None
    try:
      yield self
    finally:
      self.target = saved

  def target_agreement(self, image, prob) -> Optional[float]:
    """How much the target model agrees with a mask: the mean of its probability over the pixels of
    prob[1, H, W] > threshold, on the first scale's crop of image[H, W, 3] (run inside
    `one_object`); None without a fitted target model."""
    if self.target is None or self.target.params is None:
      return None
    cfg = self.config
    margin, size = cfg.scales[0]
    img = jnp.asarray(image, jnp.float32)
    ic, _, pc, _, _ = crop_stage(img, jnp.zeros(img.shape[:2] + (2,), jnp.float32), jnp.asarray(prob, jnp.float32),
                                 margin=float(margin), size=int(size), use_box=cfg.use_box, threshold=cfg.threshold)
    inside = (pc > cfg.threshold).astype(jnp.float32)
    s = jax.nn.sigmoid(self.target.score(ic))
    return float(jnp.sum(s * inside) / jnp.maximum(jnp.sum(inside), 1.0))

  def step(self, prev_prob, image, flow, alive, first_area, timer: StageTimer = None, last=None):
    """prev_prob[Kb,H,W] of the neighbour frame, image[H,W,3] uint8, flow (this frame -> the
    neighbour)[H,W,2], alive[Kb] bool, first_area[Kb] -> (prob[Kb,H,W], alive[Kb], area[Kb]).
    last[Kb,H,W] (with revive_ratio > 0): each object's last mask while alive (`remember`); a lost
    object with one is looked for again with it as the prior, unwarped."""
    cfg = self.config
    t = timer or self.timer
    with t.stage("warp", warp, binarize):
      if cfg.binarize_prior:
        prev_prob = binarize(prev_prob, cfg.threshold)
      warped = warp(prev_prob, flow).block_until_ready()
    dormant = None
    if cfg.revive_ratio > 0 and last is not None:
      dormant = ~alive & jnp.any(last > cfg.threshold, axis=(1, 2))
      warped = jnp.where(dormant[:, None, None], last, warped)
    return self.segment(warped, image, flow, alive, first_area, t, dormant)

  def remember(self, last, prob, alive):
    """The last masks for `step`: last[Kb,H,W] (None at the start) updated with prob where alive;
    None when revive_ratio is 0."""
    if self.config.revive_ratio <= 0:
      return None
    if last is None:
      last = jnp.zeros_like(prob)
    return jnp.where(jnp.asarray(alive)[:, None, None], prob, last)

  def segment(self, prior, image, flow, alive, first_area, timer: StageTimer = None, dormant=None):
    """N_mp around a prior already aligned with `image` (the warped previous mask; in the solver's
    recovery, the frame-0 patch pasted into a retrieved box): crop, net, paste, per scale. The
    objects of all scales that share a crop size go through the net in one call. With
    `lost_search_margin`, an object the lost rule would drop here is segmented once more on a crop
    enlarged by that margin, and keeps that result."""
    cfg = self.config
    t = timer or self.timer
    image = jnp.asarray(image, jnp.float32)
    total = self._scales_sum(prior, image, flow, first_area, cfg.scales, t)
    with t.stage("finish", finish_stage):
      prob, still, area = finish_stage(total, float(len(cfg.scales)), alive, first_area, cfg.lost_ratio,
                                       dormant, cfg.revive_ratio, threshold=cfg.threshold, exclusive=cfg.exclusive)
      prob.block_until_ready()
    if cfg.lost_search_margin and cfg.use_box:
      dropped = np.asarray(alive) & ~np.asarray(still)
      if dropped.any():
        wide = ((float(cfg.lost_search_margin), int(cfg.scales[0][1])),)
        total = self._scales_sum(prior, image, flow, first_area, wide, t)
        with t.stage("finish", finish_stage):
          prob2, still2, area2 = finish_stage(total, 1.0, alive, first_area, cfg.lost_ratio, dormant, cfg.revive_ratio,
                                              threshold=cfg.threshold, exclusive=cfg.exclusive)
          d = jnp.asarray(dropped)
          prob = jnp.where(d[:, None, None], prob2, prob).block_until_ready()
          still, area = jnp.where(d, still2, still), jnp.where(d, area2, area)
    return prob, still, area

  def _scales_sum(self, warped, image, flow, first_area, scales, t: StageTimer):
    """Sum over scales [(margin, crop size)] of N_mp's pasted probabilities [Kb, H, W] (target
    model fused when fitted)."""
    cfg = self.config
    h, w = warped.shape[1:]
    kb = warped.shape[0]
    total = None
    sizes = {}  # crop size -> margins: scales of one crop size run through the net in one call
    for margin, size in scales:
      sizes.setdefault(int(size), []).append(float(margin))
    for size, margins in sizes.items():
      with t.stage("crop", crop_stage):
        cut = [crop_stage(image, flow, warped, first_area, margin=m, size=size, use_box=cfg.use_box,
                          threshold=cfg.threshold, min_scale=float(cfg.min_crop_scale))
               for m in margins]
        jax.block_until_ready(cut[-1][2])
      with t.stage("net", self.net):
        inputs = [c[:3] for c in cut]
        if len(cut) > 1:  # objects x scales in one batch
          inputs = [tuple(jnp.concatenate(x) for x in zip(*inputs))]
        logits = self.net(*inputs[0]).block_until_ready()
      self.net_calls += 1
      if self.target is not None and self.target.params is not None:
        with t.stage("target", *self.target.jitted):
          logits = self.target.fuse(inputs[0][0], logits).block_until_ready()
      with t.stage("paste", paste_stage):
        for g, (_, _, _, boxes, valid) in enumerate(cut):
          part = logits if len(cut) == 1 else logits[g * kb:(g + 1) * kb]
          full = paste_stage(part, boxes, valid, height=h, width=w)
          total = full if total is None else total + full
        total.block_until_ready()
    return total


def object_starts(starts, bucket: int) -> np.ndarray:
  """[K] frame where each object is given (None: all at frame 0) -> [bucket] int64, padding -1."""
  out = np.full(bucket, -1, np.int64)
  if starts is not None:
    out[:len(starts)] = starts
  else:
    out[:] = 0
  return out


def start_objects(prob, alive, first_prob, first_area, new: np.ndarray):
  """Objects new[Kb] (given at this frame) take their given mask first_prob[Kb, H, W] and are alive
  when it is not empty; the others keep prob[Kb, H, W] and alive[Kb]. -> (prob, alive) as jax arrays."""
  if not new.any():
    return prob, alive
  prob = jnp.where(jnp.asarray(new)[:, None, None], jnp.asarray(first_prob), prob)
  alive = jnp.where(jnp.asarray(new), jnp.asarray(first_area > 0), alive)
  return prob, alive


def propagate_backward(prop: Propagator, frames, flows, first_prob: np.ndarray, first_area: np.ndarray,
                       starts: np.ndarray, timer: StageTimer = None):
  """Objects given at a later frame, propagated backward from it to frame 0 (Algorithm 1 with the
  flow to the next frame).

  Args:
    prop: the Propagator.
    frames: a frame sequence; flows: its FlowCache (`get(i, j, timer)`).
    first_prob: [Kb, H, W] each object's given mask (at its start frame); first_area: [Kb].
    starts: [Kb] the frame each object is given at (-1: padding; `object_starts`).
  Yields:
    (i, prob [Kb, H, W], alive [Kb]) for i = max(starts) - 1 down to 0; only the objects with
    starts > i are meaningful there (the caller keeps the others' forward masks).
  """
  t = timer or prop.timer
  top = int(starts.max())
  if top <= 0:
    return
  prob, alive = start_objects(jnp.zeros(first_prob.shape, jnp.float32), jnp.zeros(starts.shape, bool), first_prob,
                              first_area, starts == top)
  area = jnp.asarray(first_area, jnp.float32)
  for i in range(top - 1, -1, -1):
    with t.stage("read"):
      image = frames[i]
    prob, alive, _ = prop.step(prob, image, flows.get(i, i + 1, t), alive, area, t)
    if i > 0:
      prob, alive = start_objects(prob, alive, first_prob, first_area, starts == i)
    yield i, prob, alive


def pad_objects(masks: np.ndarray, bucket: int) -> np.ndarray:
  """Pads [K,H,W] with empty objects up to [bucket,H,W]."""
  k = masks.shape[0]
  if k == bucket:
    return masks
  pad = np.zeros((bucket - k,) + masks.shape[1:], masks.dtype)
  return np.concatenate([masks, pad], axis=0)
