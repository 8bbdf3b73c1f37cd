"""Algorithm 3 of VS-ReID: alternate mask propagation and re-identification over a whole video.

    P, c  <- propagate all K objects forward from frame 0          (c[i, k] = 0: the checkpoint)
    loop:
      (î, k̂, box) <- the single best retrieval over all frames     (Algorithm 2, cached candidates)
      if none: break
      P[î, k̂] <- N_mp at frame î guided by k̂'s frame-0 patch pasted into the box (+ feedback passes)
      propagate k̂ forward and backward from î, rewriting frame i while |c[i, k̂] - i| > |î - i|
      (the new checkpoint is closer than the one that produced the mask), c[i, k̂] <- î
    merge: per pixel argmax of [prod_k (1 - P_k), P_1 .. P_K]

Retrieval follows `retrieval_rule` (reid/algorithm2.py): "original" (lost objects only, the
original test code) or "paper" (every (frame, object) pair: a wrong current mask is corrected
too). Levers of issue 20, each off by default and an ablation row:
  - drift_iou set (paper rule): the stricter drift test of a present object (reid/algorithm2.py):
    its top candidate is taken only when IoU with the current mask box < drift_iou and similarity >
    the current mask's evidence (below, 0 where none) + drift_margin; drift_exclusive also refuses a
    top candidate that another present object's mask box covers.
  - motion_weight > 0 (either rule): candidates and pairs are ranked by similarity + motion_weight x
    motion continuity (a Gaussian of the distance from the object's box in the nearest confident
    frame, widening with the square root of the gap); a confident frame is a checkpoint (frame 0,
    a recovery) or a frame whose mask the evidence confirms (below).
    motion_gate g: a candidate whose continuity (the Gaussian, 0..1) is below g is not one for the
    object at all (motion otherwise only ranks).
  - rival_margin m (original rule): a candidate is for lost object k only when no other object's
    template, present objects' included, is more similar to it than k's similarity + m.
  - template_refresh R > 0: each object is matched against frame 0's template and up to R
    embeddings of candidates that confirmed it in frames spread over the video.
  - recovery_guard: the evidence confirms (frame, object) when a candidate similar to the object
    (> rho_reid) overlaps its current mask box (IoU >= rho_occ). A confirmed pair is never
    retrieved, re-propagation stops before replacing a confirmed mask with one whose box disagrees
    with it, and a recovered mask whose box disagrees with the retrieved box is dropped.
  - rho_relative q (issue 20, either rule): each object's own threshold, max(rho_reid, the q-th
    quantile of its evidence - rho_relative_margin), the evidence taken over the frames where the
    forward pass's mask is present and a candidate covers it: an object the ReID scores 0.95 on its
    right boxes needs more than one it scores 0.8 (one absolute rho_reid does not transfer).
  - stop_outside: re-propagation from a retrieval (either way) stops at a frame where the mask's box
    touches the frame's edge and no candidate on that box is similar to the object (> its threshold):
    the object left the frame, what N_mp keeps at the edge is not it.
  - target_check a: a recovered mask is kept only when the propagator's target model (the object's
    first-frame appearance model) gives its pixels a mean probability >= a: the retrieved box holds
    something that looks like the object.
  - confirm_share c: after a retrieval's recovery and re-propagation, its new masks are undone
    unless on at least a share c of the rewritten frames a candidate on the new mask's box is more
    similar to the object than its threshold (the ReID sees the object where the masks put it).
  - merge "occlusion": pixels claimed (P > 0.5) by several objects go to the object whose mask is
    newest from its checkpoint, then the one with the most ReID evidence (merge.py); elsewhere the
    paper's argmax.

A host loop over compiled per-frame functions (Algorithm 1's stages): the initial pass runs all
objects in one bucket, recovery and re-propagation run the one retrieved object (bucket 1), so the
whole solve compiles each stage for at most two object counts.
"""
import dataclasses
import functools
import json
import time
from typing import List, Optional

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from vsreid_jax.flow import prefetch
from vsreid_jax.geometry import box_iou, mask_box_np
from vsreid_jax import geometry
from vsreid_jax.propagation.algorithm1 import Propagator, binarize, object_starts, propagate_backward, start_objects
from vsreid_jax.reid.algorithm2 import RULES, Retrieval, best_retrieval, similarity
from vsreid_jax.solver.caches import ProbStore
from vsreid_jax.solver.merge import MERGES, merge_probs, merge_to_ids
from vsreid_jax.utils import StageTimer, write_text_atomic


@dataclasses.dataclass(frozen=True)
class SolverConfig:
  rho_reid: float = 0.5  # cosine similarity above which a candidate is the object
  rho_occ: float = 0.3  # IoU with a present object's box above which a candidate is that object
  max_retrievals: int = 20  # cap on recover-and-propagate rounds per video
  recover_passes: int = 5  # N_mp passes at the retrieved frame: the guided one + 4 fed back
  guide_size: int = 129  # resolution at which the frame-0 patch is moved into the box
  prob_memory_mb: float = 128.0  # uint8 probabilities past this size go to a temporary file
  search_block: int = 256  # frames whose candidates Algorithm 2 reads at once (memory flat in length)
  retrieval_rule: str = "original"  # "original" (lost objects only) or "paper" (every pair)
  drift_iou: Optional[float] = None  # paper rule: a present object's candidate must have IoU < this (None: off)
  drift_margin: float = 0.0  # ... and similarity > the current mask's evidence + this
  drift_exclusive: bool = False  # paper rule: refuse a candidate another present object's mask box covers
  # original rule: a candidate is also not free when it and a present object's box lie mostly one
  # inside the other (intersection > this share of the smaller box; None: IoU <= rho_occ alone)
  free_containment: Optional[float] = None
  # a retrieved box whose pixels the other present objects' masks cover more than this share of is
  # refused and the search goes on (None: off)
  free_cover: Optional[float] = None
  # original rule: a candidate is for lost object k only when no other object's template (present
  # ones too) beats k's similarity by more than this (None: only the lost objects compete)
  rival_margin: Optional[float] = None
  motion_weight: float = 0.0  # rank by similarity + this x motion continuity (0: off)
  motion_sigma: float = 0.5  # motion continuity's spread, in box diagonals at a gap of one frame
  motion_velocity: int = 0  # frames back to estimate a constant velocity for motion continuity (0: none)
  # a candidate whose motion continuity (the Gaussian, 0..1) is below this is not one for that object
  # (needs motion_weight > 0; None: motion only ranks)
  motion_gate: Optional[float] = None
  template_refresh: int = 0  # extra templates per object from confirmed frames (0: frame 0 only)
  recovery_guard: bool = False  # never replace a mask the evidence confirms
  merge: str = "argmax"  # "argmax" (the paper's) or "occlusion" (checkpoint age, then evidence)
  rho_relative: Optional[float] = None  # per-object threshold: this quantile of its evidence (None: off)
  rho_relative_margin: float = 0.0  # ... minus this (never below rho_reid)
  stop_outside: bool = False  # re-propagation stops where the mask touches the edge, unconfirmed
  # a retrieval's new masks are undone unless the ReID confirms the object on at least this share of
  # the frames rewritten (a similar candidate on the new mask's box; None: off)
  confirm_share: Optional[float] = None
  target_check: Optional[float] = None  # drop a recovered mask the target model agrees with less (None: off)
  prefetch: bool = True  # the forward pass reads frames and flows ahead on a thread (flow/prefetch.py)

  def __post_init__(self):
    if self.retrieval_rule not in RULES:
      raise ValueError(f"retrieval_rule {self.retrieval_rule!r}: choose one of {', '.join(RULES)}")
    if self.merge not in MERGES:
      raise ValueError(f"merge {self.merge!r}: choose one of {', '.join(MERGES)}")


@functools.partial(jax.jit, static_argnames=("height", "width", "size"))
def guide_prior(first_prob, src_box, dst_box, *, height, width, size):
  """first_prob[H0, W0] cut to src_box, resized into dst_box of a [1, height, width] map."""
  patch = geometry.crop_resize(first_prob[..., None], src_box, size)[..., 0]
  return geometry.paste(patch, dst_box, height, width)[None]


def recover(prop: Propagator, prior, image, flow, area, passes: int, timer: Optional[StageTimer] = None,
            binarize_feedback: Optional[bool] = None):
  """N_mp's recovery at one frame: `passes` N_mp passes on a prior already in place (the guided
  prior of `guide_prior`), each fed back as the next one's prior.

  Args:
    prop: the Propagator.
    prior: [1, H, W] float32 the guided prior.
    image: [H, W, 3] uint8 the frame; flow: [H, W, 2] its flow to a neighbour frame.
    area: [1] float32 the area the lost rule compares with.
    passes: N_mp passes (SolverConfig.recover_passes).
    binarize_feedback: threshold each pass's output before feeding it back; None: as the
      propagator's `binarize_prior` (re-identification's recovery).
  Returns:
    (prob [1, H, W], alive [1]): alive False when the mask fell under the lost rule.
  """
  on = jnp.ones((1,), bool)
  if binarize_feedback is None:
    binarize_feedback = prop.config.binarize_prior
  for p in range(passes):
    if p and binarize_feedback:
      prior = binarize(prior, prop.config.threshold)
    prob, a, _ = prop.segment(prior, image, flow, on, area, timer)
    prior = prob
  return prob, a


@dataclasses.dataclass
class SolveResult:
  probs: ProbStore  # [T, Kb, H, W] uint8 in memory or on disk; probs[t] -> float32 [Kb, H, W]
  alive: np.ndarray  # [T, Kb] the object is present (not lost) in the frame
  checkpoints: np.ndarray  # [T, K] frame whose mask each (frame, object) was propagated from
  retrievals: List[dict]  # one entry per round: frame, object, score, box, frames rewritten
  net_calls: int  # N_mp calls (per object bucket and scale)
  seconds: float
  priority: Optional[np.ndarray] = None  # [T, K] merge "occlusion": who wins a contested pixel

  def ids(self, t: int, object_ids) -> np.ndarray:
    prob = jnp.asarray(self.probs[t], jnp.float32)
    return merge_to_ids(prob, object_ids, None if self.priority is None else jnp.asarray(self.priority[t]))


class Solver:
  """Runs Algorithm 3 with a Propagator (Algorithm 1) on cached candidates."""

  def __init__(self, propagator: Propagator, config: SolverConfig = SolverConfig()):
    self.propagator = propagator
    self.config = config

  @property
  def jitted(self):
    return self.propagator.jitted + (guide_prior, merge_probs)

  def solve(self, frames, flows, first_prob: np.ndarray, first_area: np.ndarray, num_objects: int,
            candidates, templates, timer: Optional[StageTimer] = None, progress: bool = False,
            desc: str = "", callback=None, starts: Optional[np.ndarray] = None,
            backward: bool = False) -> SolveResult:
    """frames (a frame sequence), flows (a FlowCache), first_prob[Kb, H, W] with num_objects real
    objects, first_area[Kb]; candidates: a solver.caches.CandidateSource (or Candidates of every
    frame), asked only for the frames the retrieval rule reads (`search_frames`); templates[K, D] or
    a function returning them (called at the first retrieval); candidates None: propagation only.
    callback(phase, done, total), if given, after each step: ("propagate", frames done, T - 1),
    then ("re-id", rounds done, max_retrievals), e.g. to move a caller's progress bar.
    starts[K]: the frame each object is given at, first_prob[j] being its mask there (None: all at
    frame 0). An object is absent before its start frame, or, with `backward`, propagated backward
    from it to frame 0 too; its given frame is its checkpoint and is never rewritten."""
    start = time.perf_counter()
    timer = timer or StageTimer()
    prop = self.propagator
    calls0 = prop.net_calls
    n = len(frames)
    kb, h, w = first_prob.shape
    k = num_objects
    probs = ProbStore((n, kb, h, w), self.config.prob_memory_mb)
    alive = np.zeros((n, kb), bool)
    st = object_starts(starts, kb)  # [Kb] start frame of each object, -1 for padding
    s0 = int(st[:k].min()) if k else 0  # nothing to propagate before the first given frame
    prob0 = first_prob if starts is None else np.where((st == s0)[:, None, None], first_prob, 0.0)
    probs[s0], alive[s0] = prob0, (st == s0) & (first_area > 0)
    # checkpoint of (frame, object): its start frame; before it, the frame itself (given as
    # absent: never rewritten), unless propagated backward from the start frame.
    ckpt = np.broadcast_to(st[:k], (n, k)).copy()
    given = np.arange(n)[:, None] == ckpt  # the given frames: never retrieved
    if not backward:
      before = np.arange(n)[:, None] < st[None, :k]
      ckpt[before] = np.broadcast_to(np.arange(n)[:, None], (n, k))[before]
      given |= before

    prob, a = jnp.asarray(prob0), jnp.asarray(alive[s0])
    area = jnp.asarray(first_area, jnp.float32)
    last = prop.remember(None, prob, a)
    with prefetch.forward(frames, flows, range(s0 + 1, n), timer, self.config.prefetch) as items:
      for i, image, flow in tqdm(items, desc=f"{desc} propagate".strip(), total=n - 1 - s0, unit="frame",
                                 disable=not progress, leave=False):
        prob, a, _ = prop.step(prob, image, flow, a, area, timer, last)
        if starts is not None:
          prob, a = start_objects(prob, a, first_prob, first_area, st == i)
        last = prop.remember(last, prob, a)  # each object's last mask, for revive_ratio (else None)
        probs[i], alive[i] = np.asarray(prob), np.asarray(a)
        if callback is not None:
          callback("propagate", i, n - 1)
    if backward and starts is not None:
      for i, back, back_alive in propagate_backward(prop, frames, flows, first_prob, first_area, st, timer):
        mine = st > i  # objects not yet given at frame i: the backward pass's
        probs[i] = np.where(mine[:, None, None], np.asarray(back), probs[i])
        alive[i] = np.where(mine, np.asarray(back_alive), alive[i])

    log: List[dict] = []
    priority = None
    if candidates is not None and k > 0:
      boxes = np.zeros((n, k, 4), np.float32)
      for i in np.flatnonzero(alive[:, :k].any(axis=1)):
        p = probs[i]
        for j in np.flatnonzero(alive[i, :k]):
          boxes[i, j] = mask_box_np(p[j] > 0.5)
      first_boxes = [mask_box_np(first_prob[j] > 0.5) for j in range(k)]
      tried = set()
      cfg = self.config
      templates = functools.lru_cache(maxsize=None)(templates if callable(templates) else lambda t=templates: t)
      # The original rule with no lever reads candidates only where an object is lost (fetched on
      # demand); the paper's rule and the levers read every frame's, fetched once when first needed.
      # Motion continuity under the original rule needs no other frame's candidates: it is measured
      # from the object's box in the nearest frame where its mask is present.
      reads_all = (cfg.retrieval_rule == "paper" or cfg.recovery_guard or cfg.template_refresh > 0
                   or cfg.merge == "occlusion")
      every = functools.lru_cache(maxsize=None)(lambda: candidates.get(np.arange(n)))
      rho = cfg.rho_reid  # a float, or [K] per object with rho_relative
      # rho_relative: each object's threshold is >= rho_reid, so where the floor accepts nothing no
      # threshold does; they are computed (from every frame's candidates, on the forward pass's
      # masks) at the first retrieval the floor accepts, keeping the lost-only rule's detection on
      # demand for videos where no retrieval passes rho_reid.
      pending = cfg.rho_relative is not None

      def relative():
        with timer.stage("reid"):
          return self._relative_rho(self._evidence(every(), templates(), boxes, alive[:, :k])[0])
      for round_ in tqdm(range(cfg.max_retrievals), desc=f"{desc} re-id".strip(), unit="round", disable=not progress,
                         leave=False):
        if callback is not None:
          callback("re-id", round_, cfg.max_retrievals)
        present = alive[:, :k]
        lost = ~present & ~given  # a given frame (frame 0 for a first-frame mask) is not searched
        def search():
          """(the best retrieval not tried yet or None, confirmed [T, K] or None, evidence [T, K] or None)."""
          nonlocal rho, pending
          confirmed = evidence = None
          if not reads_all:
            seen = present if cfg.motion_weight > 0 else None
            ret = self._retrieve(candidates, templates, lost, boxes, present, tried, timer, rho, seen)
            if ret is not None and pending:
              rho, pending = relative(), False
              ret = self._retrieve(candidates, templates, lost, boxes, present, tried, timer, rho, seen)
          else:
            cands = every()
            if pending:
              rho, pending = relative(), False
            with timer.stage("reid"):
              evidence, match = self._evidence(cands, templates(), boxes, present)
              confirmed = evidence > rho
              tmpl = self._templates(cands, templates(), confirmed, match)
              consider = bonus = None
              if cfg.retrieval_rule == "paper":
                consider = ~given
                if cfg.recovery_guard:
                  consider &= ~confirmed
              if cfg.motion_weight > 0:
                bonus = self._motion(cands, boxes, present, confirmed | (ckpt == np.arange(n)[:, None]))
              ret = best_retrieval(cands, tmpl, lost, boxes, present, rho, cfg.rho_occ,
                                   skip=tried, rule=cfg.retrieval_rule, consider=consider, bonus=bonus,
                                   evidence=evidence, drift_iou=cfg.drift_iou, drift_margin=cfg.drift_margin,
                                   exclusive=cfg.drift_exclusive, containment=cfg.free_containment,
                                   rivals=cfg.rival_margin)
          return ret, confirmed, evidence

        ret, confirmed, evidence = search()
        # free_cover: a candidate box mostly covered by other present objects' masks is refused (the
        # pair is marked tried) and the search runs again.
        while ret is not None and cfg.free_cover is not None and self._cover(probs, alive, ret, k) > cfg.free_cover:
          tried.add((ret.frame, ret.object_index))
          ret, confirmed, evidence = search()
        if ret is None:
          break
        tried.add((ret.frame, ret.object_index))
        was_present = bool(present[ret.frame, ret.object_index])
        iou_now = float(box_iou(np.asarray(ret.box), boxes[ret.frame, ret.object_index])[0, 0]) if was_present else 0.0
        undo = [] if cfg.confirm_share is not None else None
        with prop.one_object(ret.object_index):  # the target model (if any) of that object alone
          rewritten = self._recover_and_propagate(ret, frames, flows, first_prob, first_boxes, first_area,
                                                  probs, alive, ckpt, boxes, timer,
                                                  confirmed if cfg.recovery_guard else None,
                                                  functools.partial(self._outside, candidates, templates, rho, h, w)
                                                  if cfg.stop_outside else None, undo=undo)
        share = None
        if undo:
          with timer.stage("reid"):
            share = self._confirmed_share(candidates, templates(), rho, boxes, rewritten, ret.object_index)
          if share < cfg.confirm_share:  # the ReID does not see the object on the new masks: undo them
            for i, p_old, a_old, c_old, b_old in undo:
              probs[i, ret.object_index], alive[i, ret.object_index] = p_old, a_old
              ckpt[i, ret.object_index], boxes[i, ret.object_index] = c_old, b_old
            rewritten = []
        ev = float(evidence[ret.frame, ret.object_index]) if evidence is not None else None
        log.append(dict(frame=ret.frame, object=ret.object_index, score=round(ret.score, 4),
                        threshold=round(float(np.broadcast_to(rho, (k,))[ret.object_index]), 4),
                        box=[round(v, 1) for v in ret.box], kind="drift" if was_present else "lost",
                        iou_current=round(iou_now, 3), evidence=None if ev is None else round(ev, 4),
                        frames_rewritten=rewritten,
                        **({} if share is None else dict(confirmed_share=round(share, 3))),
                        first=min(rewritten) if rewritten else None, last=max(rewritten) if rewritten else None))
      if cfg.merge == "occlusion":
        with timer.stage("reid"):
          evidence, _ = self._evidence(every(), templates(), boxes, alive[:, :k])
        age = np.abs(np.arange(n)[:, None] - ckpt).astype(np.float32)
        priority = np.zeros((n, kb), np.float32)
        priority[:, :k] = -age + np.clip(evidence, 0.0, 1.0 - 1e-3)  # age first; evidence breaks ties
    return SolveResult(probs, alive, ckpt, log, prop.net_calls - calls0, time.perf_counter() - start, priority)

  @staticmethod
  def _cover(probs, alive, ret, k) -> float:
    """The share of ret.box's pixels that the masks (P > 0.5) of the other objects present at
    ret.frame cover (free_cover)."""
    x0, y0, x1, y1 = (int(round(v)) for v in ret.box)
    p = np.asarray(probs[ret.frame])[:k, y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)] > 0.5
    others = np.asarray(alive[ret.frame, :k], bool).copy()
    others[ret.object_index] = False
    if not others.any() or p.size == 0:
      return 0.0
    return float(p[others].any(axis=0).mean())

  def _evidence(self, candidates, templates, boxes, present):
    """ReID evidence for the current masks: ([T, K] the best similarity to object k of a valid
    candidate overlapping k's mask box with IoU >= rho_occ, 0 where none or k is absent;
    [T, K] that candidate's index, -1 where none)."""
    n, k = present.shape
    evidence = np.zeros((n, k), np.float32)
    match = np.full((n, k), -1, np.int64)
    for t in range(n):
      valid = np.asarray(candidates.valid[t], bool)
      if not valid.any() or not present[t].any():
        continue
      sim = similarity(candidates.embeddings[t], templates)  # [M, K]
      ok = valid[:, None] & (box_iou(candidates.boxes[t], boxes[t]) >= self.config.rho_occ) & present[t][None]
      s = np.where(ok, sim, -np.inf)
      best = np.argmax(s, axis=0)
      has = np.isfinite(s[best, np.arange(k)])
      evidence[t] = np.where(has, s[best, np.arange(k)], 0.0)
      match[t] = np.where(has, best, -1)
    return evidence, match

  def _relative_rho(self, evidence):
    """[K] each object's threshold (rho_relative): max(rho_reid, the rho_relative quantile of its
    evidence[T, K] where > 0, minus rho_relative_margin); rho_reid where it has none."""
    cfg = self.config
    out = np.full(evidence.shape[1], cfg.rho_reid, np.float32)
    for j in range(evidence.shape[1]):
      seen = evidence[:, j][evidence[:, j] > 0]
      if seen.size:
        out[j] = max(cfg.rho_reid, float(np.quantile(seen, cfg.rho_relative)) - cfg.rho_relative_margin)
    return out

  def _outside(self, candidates, templates, rho, height, width, t, obj, prob) -> bool:
    """stop_outside: whether object `obj`'s mask prob[1, H, W] at frame t touches the frame's edge
    with no candidate on its box (IoU >= rho_occ) more similar to the object than its threshold."""
    box = mask_box_np(np.asarray(prob[0]) > 0.5)
    if box is None:
      return True
    if box[0] > 0 and box[1] > 0 and box[2] < width and box[3] < height:
      return False
    return not self._seen_on(candidates.get(np.array([t])), 0, templates(), box, obj, rho)

  def _seen_on(self, cands, row, templates, box, obj, rho) -> bool:
    """Whether a valid candidate of cands' `row` lies on `box` (IoU >= rho_occ) and is more similar
    to object obj than its threshold (rho: a float or [K]): the ReID sees the object there."""
    valid = np.asarray(cands.valid[row], bool)
    if not valid.any():
      return False
    sim = similarity(cands.embeddings[row], templates)[:, obj]
    on = box_iou(cands.boxes[row], np.asarray(box, np.float32)[None])[:, 0] >= self.config.rho_occ
    threshold = float(rho if np.ndim(rho) == 0 else rho[obj])
    return bool(np.any(valid & on & (sim > threshold)))

  def _templates(self, candidates, templates, confirmed, match):
    """[K, D] frame-0 templates, or [K, 1 + R, D] with up to R embeddings of confirming candidates
    from confirmed frames spread evenly over the video (template_refresh = R; padded with frame 0's)."""
    r = self.config.template_refresh
    if r <= 0:
      return templates
    k = templates.shape[0]
    out = np.repeat(np.asarray(templates, np.float32)[:, None], 1 + r, axis=1)
    for j in range(k):
      frames_ok = np.flatnonzero(confirmed[1:, j]) + 1
      if frames_ok.size == 0:
        continue
      pick = frames_ok[np.unique(np.linspace(0, frames_ok.size - 1, min(r, frames_ok.size)).round().astype(int))]
      for slot, t in enumerate(pick):
        out[j, 1 + slot] = candidates.embeddings[t][match[t, j]]
    return out

  def _motion(self, candidates, boxes, present, confident, frames=None):
    """t -> [M, K] motion_weight x exp(-d^2 / 2 sigma^2): d the distance of each candidate's centre
    from the object's box centre in the nearest other confident frame, in that box's diagonals;
    sigma = motion_sigma x sqrt(gap). Zero for an object with no confident frame. With
    motion_velocity v > 0 the expected centre moves on at the velocity between that frame and the
    confident frame v further away from t, when there is one. frames: the video frame of each of
    candidates' rows (a block of them; default: row t is frame t)."""
    cfg = self.config
    n, k = present.shape
    conf = [np.flatnonzero(confident[:, j] & present[:, j]) for j in range(k)]
    set_ok = [set(c.tolist()) for c in conf]

    def bonus(row):
      t = int(frames[row]) if frames is not None else row
      cb = np.asarray(candidates.boxes[row], np.float32)
      centre = (cb[:, :2] + cb[:, 2:]) / 2
      out = np.zeros((len(cb), k), np.float32)
      for j in range(k):
        frames_ok = conf[j][conf[j] != t]
        if frames_ok.size == 0:
          continue
        tc = int(frames_ok[np.argmin(np.abs(frames_ok - t))])
        b = boxes[tc, j]
        diag = max(float(np.hypot(b[2] - b[0], b[3] - b[1])), 1.0)
        expect = (b[:2] + b[2:]) / 2
        v = cfg.motion_velocity
        tr = tc - v * int(np.sign(t - tc))  # the constant-velocity reference, away from t
        if v > 0 and 0 <= tr < n and tr in set_ok[j]:
          br = boxes[tr, j]
          expect = expect + ((b[:2] + b[2:]) / 2 - (br[:2] + br[2:]) / 2) / v * abs(t - tc)
        d = np.linalg.norm(centre - expect, axis=1) / diag
        sigma = cfg.motion_sigma * np.sqrt(abs(t - tc))
        near = np.exp(-0.5 * (d / sigma) ** 2)
        out[:, j] = cfg.motion_weight * near
        if cfg.motion_gate is not None:
          out[near < cfg.motion_gate, j] = -np.inf
      return out

    return bonus

  @staticmethod
  def search_frames(lost: np.ndarray) -> np.ndarray:
    """The frames whose candidates the retrieval rule reads: those where some object is lost
    (lost[T, K]). A rule that also looks at suspect objects adds their frames here."""
    return np.flatnonzero(lost.any(axis=1))

  def _retrieve(self, candidates, templates, lost, boxes, present, tried, timer, rho=None, seen=None):
    """Algorithm 2 over the frames of `search_frames`, their candidates fetched on demand, a block
    of `search_block` frames at a time (the best over blocks: the earliest frame wins ties).
    rho: the similarity threshold, a float or [K] per object (default: rho_reid); seen: None, or
    [T, K] the frames whose mask boxes anchor motion continuity (motion_weight; candidates are then
    ranked by similarity + the motion bonus)."""
    cfg = self.config
    frames = self.search_frames(lost)
    best, best_rank = None, -np.inf
    for start in range(0, frames.size, cfg.search_block):
      block = frames[start:start + cfg.search_block]
      cands = candidates.get(block)  # runs the detector on frames not seen before
      pos = {int(t): p for p, t in enumerate(block)}
      skip = {(pos[t], o) for t, o in tried if t in pos}
      tmpl = templates()
      with timer.stage("reid"):
        bonus = None if seen is None else self._motion(cands, boxes, present, seen, frames=block)
        ret = best_retrieval(cands, tmpl, lost[block], boxes[block], present[block],
                             cfg.rho_reid if rho is None else rho, cfg.rho_occ, skip=skip, bonus=bonus,
                             containment=cfg.free_containment, rivals=cfg.rival_margin)
      if ret is not None:
        rank = ret.score if bonus is None else ret.score + float(bonus(ret.frame)[ret.candidate, ret.object_index])
        if best is None or rank > best_rank:
          best, best_rank = dataclasses.replace(ret, frame=int(block[ret.frame])), rank
    return best

  @staticmethod
  def _read(frames, i, timer):
    with timer.stage("read"):
      return frames[i]

  def _recover_and_propagate(self, ret: Retrieval, frames, flows, first_prob, first_boxes, first_area,
                             probs, alive, ckpt, boxes, timer, confirmed: Optional[np.ndarray] = None,
                             outside=None, undo: Optional[list] = None) -> List[int]:
    """Recovers object ret.object_index at ret.frame and re-propagates it both ways under the
    checkpoint rule; returns the frames rewritten (empty when the recovered mask is lost at once).
    confirmed[T, K] (the recovery guard): the recovered mask must agree with the retrieved box, and
    a confirmed mask is replaced only by one whose box agrees with it. outside(i, obj, prob) -> bool
    (stop_outside): re-propagation stops at a frame where it says the object is out of the frame.
    undo: a list to which each write appends what it replaced (frame, prob, alive, checkpoint, box)."""
    prop, cfg = self.propagator, self.config
    t, obj = ret.frame, ret.object_index
    n, _, h, w = probs.shape
    area = jnp.asarray(first_area[obj:obj + 1], jnp.float32)
    on = jnp.ones((1,), bool)
    image = self._read(frames, t, timer)
    flow = flows.get(t, t - 1 if t > 0 else t + 1, timer)
    with timer.stage("recover", guide_prior):
      prior = guide_prior(jnp.asarray(first_prob[obj], jnp.float32), jnp.asarray(first_boxes[obj]),
                          jnp.asarray(ret.box, jnp.float32), height=h, width=w, size=cfg.guide_size)
    prob, a = recover(prop, prior, image, flow, area, cfg.recover_passes, timer)
    if not bool(a[0]):
      return []
    if cfg.target_check is not None:
      with timer.stage("target"):
        agree = prop.target_agreement(image, prob)
      if agree is not None and agree < cfg.target_check:
        return []  # the object's appearance model says the recovered mask is something else
    if confirmed is not None and not self._agrees(prob, ret.box):
      return []  # N_mp did not make a mask of what was retrieved
    rewritten = [t]
    self._write(t, obj, t, prob, probs, alive, ckpt, boxes, undo)
    for step in (1, -1):  # forward, then backward
      cur, a = prob, on
      i = t + step
      # A given frame is its own checkpoint (distance 0): never rewritten, and nothing beyond it.
      while 0 <= i < n and abs(ckpt[i, obj] - i) > abs(t - i):
        cur, a, _ = prop.step(cur, self._read(frames, i, timer), flows.get(i, i - step, timer), a, area, timer)
        if not bool(a[0]):
          break  # lost again: frames beyond keep what they had
        if confirmed is not None and confirmed[i, obj] and not self._agrees(cur, boxes[i, obj]):
          break  # the evidence confirms the mask there: keep it, and what lies beyond
        if outside is not None and outside(i, obj, cur):
          break  # the object left the frame there: N_mp's mask at the edge is not it
        self._write(i, obj, t, cur, probs, alive, ckpt, boxes, undo)
        rewritten.append(i)
        i += step
    return sorted(rewritten)

  def _agrees(self, prob, box) -> bool:
    """Whether the box of prob[0] > 0.5 overlaps `box` with IoU >= rho_occ."""
    b = mask_box_np(np.asarray(prob[0]) > 0.5)
    return b is not None and float(box_iou(b, np.asarray(box, np.float32))[0, 0]) >= self.config.rho_occ

  def _confirmed_share(self, candidates, templates, rho, boxes, frames, obj) -> float:
    """confirm_share: the share of `frames` where a valid candidate on object obj's (new) mask box
    (IoU >= rho_occ) is more similar to it than its threshold (rho: a float or [K])."""
    cands = candidates.get(np.asarray(frames))
    hits = sum(self._seen_on(cands, row, templates, boxes[t, obj], obj, rho) for row, t in enumerate(frames))
    return hits / max(len(frames), 1)

  @staticmethod
  def _write(i, obj, source, prob, probs, alive, ckpt, boxes, undo=None):
    if undo is not None:
      undo.append((i, np.array(probs[i, obj]), bool(alive[i, obj]), int(ckpt[i, obj]), boxes[i, obj].copy()))
    p = np.asarray(prob[0])
    probs[i, obj] = p
    alive[i, obj] = True
    ckpt[i, obj] = source
    boxes[i, obj] = mask_box_np(p > 0.5)


def retrieval_log(result: SolveResult, object_ids) -> List[dict]:
  """The retrievals with each object's palette id added."""
  return [dict(r, object_id=int(object_ids[r["object"]])) for r in result.retrievals]


def describe(r: dict) -> str:
  span = f"frames {r['first']}-{r['last']} rewritten" if r["frames_rewritten"] else "nothing rewritten"
  ev = f"evidence {r['evidence']:.3f}, " if r.get("evidence") is not None else ""
  drift = f"its mask elsewhere: box IoU {r.get('iou_current', 0):.2f}, {ev}"
  why = {"lost": "lost, ", "drift": drift}.get(r.get("kind"), "")
  return f"re-id: object {r['object_id']} at frame {r['frame']} ({why}similarity {r['score']:.3f}): {span}"


def write_retrievals(path, sequence: str, result: SolveResult, object_ids) -> None:
  """The retrieval log of one video as JSON (written atomically)."""
  payload = {"sequence": sequence, "net_calls": result.net_calls, "seconds": round(result.seconds, 2),
             "retrievals": retrieval_log(result, object_ids)}
  write_text_atomic(path, json.dumps(payload, indent=1))
