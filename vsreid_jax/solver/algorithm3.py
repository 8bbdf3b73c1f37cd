"""Algorithm 3 of VS-ReID: alternate mask propagation and re-identification over a whole video.

    P, c  <- propagate all K objects forward from frame 0          (c[i, k] = 0: the checkpoint)
    loop:
      (î, k̂, box) <- the single best retrieval over all frames     (Algorithm 2, cached candidates)
      if none: break
      P[î, k̂] <- N_mp at frame î guided by k̂'s frame-0 patch pasted into the box (+ feedback passes)
      propagate k̂ forward and backward from î, rewriting frame i while |c[i, k̂] - i| > |î - i|
      (the new checkpoint is closer than the one that produced the mask), c[i, k̂] <- î
    merge: per pixel argmax of [prod_k (1 - P_k), P_1 .. P_K]

A host loop over compiled per-frame functions (Algorithm 1's stages): the initial pass runs all
objects in one bucket, recovery and re-propagation run the one retrieved object (bucket 1), so the
whole solve compiles each stage for at most two object counts.
"""
import dataclasses
import functools
import json
import os
import time
from typing import List, Optional

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from vsreid_jax.data.objects import mask_box
from vsreid_jax.propagation import crops
from vsreid_jax.propagation.algorithm1 import Propagator, binarize
from vsreid_jax.reid.algorithm2 import Retrieval, best_retrieval
from vsreid_jax.solver.caches import ProbStore
from vsreid_jax.solver.merge import merge_probs, merge_to_ids
from vsreid_jax.utils import StageTimer


@dataclasses.dataclass(frozen=True)
class SolverConfig:
  rho_reid: float = 0.5  # cosine similarity above which a candidate is the object
  rho_occ: float = 0.3  # IoU with a present object's box above which a candidate is that object
  max_retrievals: int = 20  # cap on recover-and-propagate rounds per video
  recover_passes: int = 5  # N_mp passes at the retrieved frame: the guided one + 4 fed back
  guide_size: int = 129  # resolution at which the frame-0 patch is moved into the box
  prob_memory_mb: float = 128.0  # uint8 probabilities past this size go to a temporary file
  search_block: int = 256  # frames whose candidates Algorithm 2 reads at once (memory flat in length)


@functools.partial(jax.jit, static_argnames=("height", "width", "size"))
def guide_prior(first_prob, src_box, dst_box, *, height, width, size):
  """first_prob[H0, W0] cut to src_box, resized into dst_box of a [1, height, width] map."""
  patch = crops.crop_resize(first_prob[..., None], src_box, size)[..., 0]
  return crops.paste(patch, dst_box, height, width)[None]


@dataclasses.dataclass
class SolveResult:
  probs: ProbStore  # [T, Kb, H, W] uint8 in memory or on disk; probs[t] -> float32 [Kb, H, W]
  alive: np.ndarray  # [T, Kb] the object is present (not lost) in the frame
  checkpoints: np.ndarray  # [T, K] frame whose mask each (frame, object) was propagated from
  retrievals: List[dict]  # one entry per round: frame, object, score, box, frames rewritten
  net_calls: int  # N_mp calls (per object bucket and scale)
  seconds: float

  def ids(self, t: int, object_ids) -> np.ndarray:
    return merge_to_ids(jnp.asarray(self.probs[t], jnp.float32), object_ids)


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
            desc: str = "", callback=None) -> SolveResult:
    """frames (a frame sequence), flows (a FlowCache), first_prob[Kb, H, W] with num_objects real
    objects, first_area[Kb]; candidates: a solver.caches.CandidateSource (or Candidates of every
    frame), asked only for the frames the retrieval rule reads (`search_frames`); templates[K, D] or
    a function returning them (called at the first retrieval); candidates None: propagation only.
    callback(phase, done, total), if given, after each step: ("propagate", frames done, T - 1),
    then ("re-id", rounds done, max_retrievals), e.g. to move a caller's progress bar."""
    start = time.perf_counter()
    timer = timer or StageTimer()
    prop = self.propagator
    calls0 = prop.net_calls
    n = len(frames)
    kb, h, w = first_prob.shape
    k = num_objects
    probs = ProbStore((n, kb, h, w), self.config.prob_memory_mb)
    alive = np.zeros((n, kb), bool)
    probs[0] = first_prob
    alive[0] = first_area > 0
    ckpt = np.zeros((n, k), np.int64)

    prob, a = jnp.asarray(first_prob), jnp.asarray(alive[0])
    area = jnp.asarray(first_area, jnp.float32)
    for i in tqdm(range(1, n), desc=f"{desc} propagate".strip(), unit="frame", disable=not progress, leave=False):
      prob, a, _ = prop.step(prob, self._read(frames, i, timer), flows.get(i, i - 1, timer), a, area, timer)
      probs[i], alive[i] = np.asarray(prob), np.asarray(a)
      if callback is not None:
        callback("propagate", i, n - 1)

    log: List[dict] = []
    if candidates is not None and k > 0:
      boxes = np.zeros((n, k, 4), np.float32)
      for i in np.flatnonzero(alive[:, :k].any(axis=1)):
        p = probs[i]
        for j in np.flatnonzero(alive[i, :k]):
          boxes[i, j] = mask_box(p[j] > 0.5)
      first_boxes = [mask_box(first_prob[j] > 0.5) for j in range(k)]
      tried = set()
      cfg = self.config
      templates = functools.lru_cache(maxsize=None)(templates if callable(templates) else lambda t=templates: t)
      for round_ in tqdm(range(cfg.max_retrievals), desc=f"{desc} re-id".strip(), unit="round", disable=not progress,
                         leave=False):
        if callback is not None:
          callback("re-id", round_, cfg.max_retrievals)
        lost = ~alive[:, :k]
        lost[0] = False  # frame 0 is given
        ret = self._retrieve(candidates, templates, lost, boxes, alive[:, :k], tried, timer)
        if ret is None:
          break
        tried.add((ret.frame, ret.object_index))
        rewritten = self._recover_and_propagate(ret, frames, flows, first_prob, first_boxes, first_area,
                                                probs, alive, ckpt, boxes, timer)
        log.append(dict(frame=ret.frame, object=ret.object_index, score=round(ret.score, 4),
                        box=[round(v, 1) for v in ret.box], frames_rewritten=rewritten,
                        first=min(rewritten) if rewritten else None, last=max(rewritten) if rewritten else None))
    return SolveResult(probs, alive, ckpt, log, prop.net_calls - calls0, time.perf_counter() - start)

  @staticmethod
  def search_frames(lost: np.ndarray) -> np.ndarray:
    """The frames whose candidates the retrieval rule reads: those where some object is lost
    (lost[T, K]). A rule that also looks at suspect objects adds their frames here."""
    return np.flatnonzero(lost.any(axis=1))

  def _retrieve(self, candidates, templates, lost, boxes, present, tried, timer):
    """Algorithm 2 over the frames of `search_frames`, their candidates fetched on demand, a block
    of `search_block` frames at a time (the best over blocks: the earliest frame wins ties)."""
    cfg = self.config
    frames = self.search_frames(lost)
    best = None
    for start in range(0, frames.size, cfg.search_block):
      block = frames[start:start + cfg.search_block]
      cands = candidates.get(block)  # runs the detector on frames not seen before
      pos = {int(t): p for p, t in enumerate(block)}
      skip = {(pos[t], o) for t, o in tried if t in pos}
      tmpl = templates()
      with timer.stage("reid"):
        ret = best_retrieval(cands, tmpl, lost[block], boxes[block], present[block], cfg.rho_reid, cfg.rho_occ,
                             skip=skip)
      if ret is not None and (best is None or ret.score > best.score):
        best = dataclasses.replace(ret, frame=int(block[ret.frame]))
    return best

  @staticmethod
  def _read(frames, i, timer):
    with timer.stage("read"):
      return frames[i]

  def _recover_and_propagate(self, ret: Retrieval, frames, flows, first_prob, first_boxes, first_area,
                             probs, alive, ckpt, boxes, timer) -> List[int]:
    """Recovers object ret.object_index at ret.frame and re-propagates it both ways under the
    checkpoint rule; returns the frames rewritten (empty when the recovered mask is lost at once)."""
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
    for p in range(cfg.recover_passes):
      if p and prop.config.binarize_prior:
        prior = binarize(prior, prop.config.threshold)
      prob, a, _ = prop.segment(prior, image, flow, on, area, timer)
      prior = prob
    if not bool(a[0]):
      return []
    rewritten = [t]
    self._write(t, obj, t, prob, probs, alive, ckpt, boxes)
    for step in (1, -1):  # forward, then backward
      cur, a = prob, on
      i = t + step
      while 0 < i < n and abs(ckpt[i, obj] - i) > abs(t - i):
        cur, a, _ = prop.step(cur, self._read(frames, i, timer), flows.get(i, i - step, timer), a, area, timer)
        if not bool(a[0]):
          break  # lost again: frames beyond keep what they had
        self._write(i, obj, t, cur, probs, alive, ckpt, boxes)
        rewritten.append(i)
        i += step
    return sorted(rewritten)

  @staticmethod
  def _write(i, obj, source, prob, probs, alive, ckpt, boxes):
    p = np.asarray(prob[0])
    probs[i, obj] = p
    alive[i, obj] = True
    ckpt[i, obj] = source
    boxes[i, obj] = mask_box(p > 0.5)


def retrieval_log(result: SolveResult, object_ids) -> List[dict]:
  """The retrievals with each object's palette id added."""
  return [dict(r, object_id=int(object_ids[r["object"]])) for r in result.retrievals]


def describe(r: dict) -> str:
  span = f"frames {r['first']}-{r['last']} rewritten" if r["frames_rewritten"] else "lost again at once"
  return f"re-id: object {r['object_id']} at frame {r['frame']} (similarity {r['score']:.3f}): {span}"


def write_retrievals(path, sequence: str, result: SolveResult, object_ids) -> None:
  """The retrieval log of one video as JSON (written atomically)."""
  payload = {"sequence": sequence, "net_calls": result.net_calls, "seconds": round(result.seconds, 2),
             "retrievals": retrieval_log(result, object_ids)}
  tmp = os.fspath(path) + ".tmp"
  with open(tmp, "w") as f:
    json.dump(payload, f, indent=1)
  os.replace(tmp, path)
