"""A deterministic multi-object occlusion benchmark, built by compositing real objects.

Each clip is a real sequence resized to 427x240 whose own object is id 1 (the target), with
objects of OTHER sequences pasted over it as ids 2..K. A pasted object is animated by cutting it
out of consecutive frames of its source (so it moves and deforms like the real thing; ping-pong
when the source is shorter) and moved along a trajectory chosen so that
  - the occluder (id 2) passes in front of the target and hides it (< `max_visible` of its area
    visible) for several frames, then moves on so the target reappears;
  - one object (id 3, or id 2 itself when K = 2) leaves the frame and comes back later;
  - every object is in frame 0 with at least `min_area` of the frame (the first-frame mask of
    semi-supervised DAVIS).
These are the events where mask propagation loses an object and re-identification has to find it
again. Pasting order is the depth order (later = in front): an occluded pixel takes the id of the
object in front, exactly as in DAVIS ground truth.

The clips are a pure function of (sources, seed, kind): the same seed gives identical bytes.
Backgrounds and cut-outs come from one fixed split of `data/splits.py` (`val` to choose on,
`test` to report once), never from the training split, so the benchmark tests the nets on objects
they never saw; every clip's info records the split.

Two kinds:
  standard: the first benchmark (object counts 3, 4, 2; a distractor from another sequence).
  hard:     3-4 objects; a longer occlusion of the target; object 4 a "twin" of the target (the
            same object cut from other frames of the background sequence, smaller, wandering): a
            similar-looking distractor that a ReID net confuses with the hidden target, so only
            motion continuity can tell them apart; partial occlusions where objects cross.
"""
import json
import os
from typing import Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from vsreid_jax.data import splits
from vsreid_jax.data import synthetic
from vsreid_jax.data.objects import Cutout, ObjectBank, paste
from vsreid_jax.geometry import mask_box_np

SIZE = (240, 427)  # (H, W) of the benchmark frames: DAVIS 480p halved
RESOLUTION = "240p"
SUBSET = "occlusion"
OBJECT_COUNTS = (3, 4, 2)  # n_objects of successive benchmark clips (target included)
KINDS = {
    # object counts cycled over clips; hidden: frames of the target's full occlusion as a share of
    # the clip (at least 4); twin: object 4 is a look-alike of the target.
    "standard": dict(object_counts=OBJECT_COUNTS, hidden=0.2, twin=False),
    "hard": dict(object_counts=(4, 3, 4), hidden=0.3, twin=True),
}
# Attempts per clip of build_benchmark (a clip is the first attempt that meets the requirements, so
# more attempts change no clip that fewer attempts made): the 4 val sequences offer few occluders.
ATTEMPTS = 48
# A twin's share of the frame: smaller than the target, as a second instance further away.
TWIN_AREA = (0.02, 0.05)


def _pingpong(i: int, n: int) -> int:
  """Index i of 0, 1, .., n-1, n-2, .., 1, 0, 1, ... (a source played back and forth)."""
  if n <= 1:
    return 0
  period = 2 * n - 2
  i %= period
  return i if i < n else period - i


def _lerp(p, q, n: int) -> np.ndarray:
  """n points from p (excluded) to q (included), evenly spaced."""
  p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
  return p + (q - p) * (np.arange(1, n + 1)[:, None] / n)


def _centroid(alpha: np.ndarray) -> np.ndarray:
  """(x, y) of the pixels with alpha > 0.5 (the anchor an object moves by: stable under deformation)."""
  ys, xs = np.nonzero(alpha > 0.5)
  if xs.size == 0:
    return np.array([alpha.shape[1] / 2, alpha.shape[0] / 2])
  return np.array([xs.mean(), ys.mean()])


class _Source:
  """One object of one sequence, played from frame `start` on (ping-pong), scaled and maybe flipped."""

  def __init__(self, bank: ObjectBank, root: int, seq: str, obj_id: int, start: int, flip: bool, cache: Dict):
    self.bank, self.root, self.seq = bank, root, seq
    self.refs = [r for r in bank.refs_of(root, seq) if r.obj_id == obj_id]  # frames where it exists
    if not self.refs:
      raise ValueError(f"{seq}: no object {obj_id} in any frame")
    self.start, self.flip, self.cache = start, flip, cache
    self.scale = 1.0

  def ref(self, t: int):
    return self.refs[_pingpong(self.start + t, len(self.refs))]

  def native(self, t: int) -> Cutout:
    ref = self.ref(t)
    if ref not in self.cache:
      cut = self.bank.cutout(ref)
      self.cache[ref] = cut.flipped() if self.flip else cut
    return self.cache[ref]

  def at(self, t: int, scale: Optional[float] = None) -> Cutout:
    return self.native(t).resized(self.scale if scale is None else scale)

  def label(self) -> str:
    return self.bank.label(self.refs[0])


def _background(bank: ObjectBank, root: int, seq: str, start: int, n_frames: int, size) -> Tuple[np.ndarray, np.ndarray, List[int]]:
  """Frames and target masks (id 1; any other id of the sequence becomes background) at `size`."""
  h, w = size
  n = bank.num_frames(root, seq)
  frames, masks, index = [], [], []
  for t in range(n_frames):
    i = _pingpong(start + t, n)
    image, ids = bank.frame(root, seq, i)
    frames.append(cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA))
    masks.append((cv2.resize(ids, (w, h), interpolation=cv2.INTER_NEAREST) == 1).astype(np.uint8))
    index.append(i)
  return np.stack(frames), np.stack(masks), index


def _cover(target: np.ndarray, alpha: np.ndarray) -> Tuple[np.ndarray, float]:
  """Top-left (x, y) where `alpha` covers most of `target` (among near-best places, the one closest to
  aligning the centroids: keeps the occluder's path smooth), and the fraction of the target left visible."""
  area = float(target.sum())
  box = mask_box_np(target)
  if box is None:
    return np.zeros(2), 0.0
  bx0, by0, bx1, by1 = box.astype(int)
  crop = target[by0:by1, bx0:bx1].astype(np.float32)
  tmpl = (alpha > 0.5).astype(np.float32)
  th, tw = tmpl.shape
  pad = np.zeros((crop.shape[0] + 2 * (th - 1), crop.shape[1] + 2 * (tw - 1)), np.float32)
  pad[th - 1:th - 1 + crop.shape[0], tw - 1:tw - 1 + crop.shape[1]] = crop
  overlap = cv2.matchTemplate(pad, tmpl, cv2.TM_CCORR)
  best = float(overlap.max())
  ys, xs = np.nonzero(overlap >= best - 0.01 * area)  # rounding noise and near-ties
  aligned = _centroid(target.astype(np.float32)) - _centroid(alpha)  # frame top-left aligning centroids
  fx, fy = xs - (tw - 1) + bx0, ys - (th - 1) + by0
  k = int(np.argmin((fx - aligned[0]) ** 2 + (fy - aligned[1]) ** 2))
  return np.array([fx[k], fy[k]], np.float64), max(area - float(overlap[ys[k], xs[k]]), 0.0) / area


def _place(rng, cut: Cutout, size, occupied: np.ndarray, target: np.ndarray, tries: int = 200) -> np.ndarray:
  """A top-left for `cut` inside the frame that overlaps little of `occupied` and of the target."""
  h, w = size
  oh, ow = cut.alpha.shape
  m = cut.alpha > 0.5
  own = max(float(m.sum()), 1.0)
  t_area = max(float(target.sum()), 1.0)
  best, best_cost = None, np.inf
  for _ in range(tries):
    x = int(rng.integers(0, max(w - ow, 0) + 1)) if ow <= w else int(rng.integers(w - ow, 1))
    y = int(rng.integers(0, max(h - oh, 0) + 1)) if oh <= h else int(rng.integers(h - oh, 1))
    fx0, fy0, fx1, fy1 = max(x, 0), max(y, 0), min(x + ow, w), min(y + oh, h)
    sub = m[fy0 - y:fy1 - y, fx0 - x:fx1 - x]
    cost = (float((sub & (occupied[fy0:fy1, fx0:fx1] > 0)).sum()) / own
            + float((sub & (target[fy0:fy1, fx0:fx1] > 0)).sum()) / t_area
            + 1.0 - float(sub.sum()) / own)  # parts outside the frame
    if cost < best_cost:
      best, best_cost = np.array([x, y], np.float64), cost
    if cost < 0.05:
      break
  return best


def _reentry(rng, cut: Cutout, size, target_after: np.ndarray) -> np.ndarray:
  """Centre where an object coming back settles: off the target for the rest of the clip (so the
  target's reappearance is not undone)."""
  avoid = target_after.max(axis=0)
  return _place(rng, cut, size, avoid, avoid) + _centroid(cut.alpha)


def _outside_centre(centre: np.ndarray, cuts: Sequence[Cutout], size) -> np.ndarray:
  """Centre just beyond the nearer of the left/right borders: the object is wholly out in every
  pose of its animation (its centroid-to-edge distance varies as it deforms)."""
  h, w = size
  if centre[0] < w / 2:
    x = -max(c.alpha.shape[1] - _centroid(c.alpha)[0] for c in cuts) - 2
  else:
    x = w + max(_centroid(c.alpha)[0] for c in cuts) + 2
  return np.array([x, centre[1]])


def _in_frame(cut: Cutout, x: int, y: int, size) -> int:
  """Pixels of `cut` pasted at (x, y) that fall inside the frame (as `paste` draws them)."""
  h, w = size
  oh, ow = cut.alpha.shape
  sub = cut.alpha[max(-y, 0):max(min(h - y, oh), 0), max(-x, 0):max(min(w - x, ow), 0)]
  return int((sub > 0.5).sum())


def _compose(background, target_masks, objects, order) -> Tuple[np.ndarray, np.ndarray, Dict[int, np.ndarray]]:
  """Pastes the objects in `order` (back to front) on every frame; also each object's unoccluded
  in-frame area per frame (to tell occluded from outside)."""
  frames, masks = background.copy(), target_masks.copy()
  full = {1: target_masks.reshape(len(masks), -1).sum(1).astype(np.int64)}
  for k in order:
    obj = objects[k]
    full[k] = np.zeros(len(masks), np.int64)
    for t in range(len(masks)):
      cut = obj["cuts"][t]
      x, y = (int(round(v)) for v in obj["centre"][t] - _centroid(cut.alpha))
      obj["top_left"].append([x, y])
      full[k][t] = _in_frame(cut, x, y, masks[t].shape)
      frames[t], masks[t] = paste(frames[t], masks[t], cut, x, y, k)
  return frames, masks, full


def _events(masks: np.ndarray, full: Dict[int, np.ndarray], max_visible: float):
  """Per object: GT area per frame, visible fraction, frames hidden (in frame, occluded) and outside."""
  out = {}
  for k, f in full.items():
    area = (masks == k).reshape(len(masks), -1).sum(1)
    ref = np.minimum(f, f[0])  # hidden: under max_visible of its own area and of its frame-0 area
    vis = np.where(f > 0, area / np.maximum(f, 1), 0.0)
    out[k] = dict(area=area.tolist(), visible=np.round(vis, 3).tolist(),
                  outside=[t for t in range(len(masks)) if f[t] == 0],
                  hidden=[t for t in range(len(masks)) if f[t] > 0 and area[t] < max_visible * ref[t]])
  return out


def _check(ev, n_objects, exiter, min_pixels) -> Optional[str]:
  """Why a clip fails the benchmark's requirements, or None."""
  for k in range(1, n_objects + 1):
    if ev[k]["area"][0] < min_pixels:
      return f"object {k} covers {ev[k]['area'][0]} px in frame 0 (< {min_pixels})"
    if ev[k]["visible"][0] < 0.6:  # the first-frame mask must show the object, not a sliver of it
      return f"object {k} is {ev[k]['visible'][0]:.0%} visible in frame 0"
  hid = ev[1]["hidden"]
  if len(hid) < 3:
    return f"target hidden in {len(hid)} frames only"
  if not any(v >= 0.5 for v in ev[1]["visible"][hid[-1] + 1:]):
    return "target never visible again after the occlusion"
  out = ev[exiter]["outside"]
  if len(out) < 3:
    return f"object {exiter} outside in {len(out)} frames only"
  if not any(v >= 0.5 and f > 0 for v, f in zip(ev[exiter]["visible"][out[-1] + 1:], ev[exiter]["area"][out[-1] + 1:])):
    return f"object {exiter} never comes back"
  return None


def _as_bank(bank_or_sources) -> ObjectBank:
  if isinstance(bank_or_sources, ObjectBank):
    return bank_or_sources
  return ObjectBank(bank_or_sources)


def _find(bank: ObjectBank, seq) -> Tuple[int, str]:
  """(root index, name) of a sequence given as either."""
  if isinstance(seq, (tuple, list)):
    return int(seq[0]), seq[1]
  for r, s in bank.sequences:
    if s == seq:
      return r, s
  raise ValueError(f"sequence {seq!r} is not in the object bank")


def make_occlusion_sequence(bank_or_sources: Union[ObjectBank, Sequence[Tuple[str, str]]], background,
                            seed: int, n_frames: int = 40, size: Tuple[int, int] = SIZE,
                            n_objects: int = 3, sources: Optional[Sequence] = None,
                            min_area: float = 0.015, max_visible: float = 0.1,
                            max_occluder: float = 0.3, attempts: int = 12, hidden_share: float = 0.2,
                            twin: bool = False) -> Tuple[np.ndarray, np.ndarray, dict]:
  """One benchmark clip: (frames [T, H, W, 3] uint8 RGB, id masks [T, H, W] uint8, info dict).

  `bank_or_sources` is an ObjectBank or (root path, resolution) pairs; `background` is a sequence
  name or (root index, name) of the bank; `sources` (names or pairs) are the sequences the pasted
  objects come from (default: every other sequence of the bank). `n_objects` counts the target.
  `min_area`: each object's least share of frame 0; `max_visible`: the share of the target left
  visible while hidden; `max_occluder`: the occluder's largest share of the frame; `hidden_share`:
  the target's full occlusion as a share of the clip (at least 4 frames); `twin`: object 4 is a
  look-alike of the target (its own object, cut from other frames of the background sequence).
  Raises RuntimeError when no attempt meets the requirements (e.g. a target too big to hide).
  """
  if not 2 <= n_objects <= 4:
    raise ValueError(f"n_objects must be 2..4, got {n_objects}")
  if n_frames < 16:
    raise ValueError(f"n_frames must be >= 16 to fit occlusion and exit/re-entry, got {n_frames}")
  bank = _as_bank(bank_or_sources)
  bg_root, bg_seq = _find(bank, background)
  pool = [_find(bank, s) for s in sources] if sources is not None else list(bank.sequences)
  pool = [p for p in pool if p != (bg_root, bg_seq)]
  if not pool:
    raise ValueError("no source sequences besides the background")
  h, w = size
  T = n_frames
  min_pixels = int(np.ceil(min_area * h * w))
  cache = {}
  why = "no attempt"
  # Background windows: the target must be big enough in frame 0 (its box, resized, twice the minimum).
  starts = np.arange(max(bank.num_frames(bg_root, bg_seq) - T, 0) + 1)
  bg_refs = {r.frame: r for r in bank.refs_of(bg_root, bg_seq) if r.obj_id == 1}
  scale2 = (h * w) / float(np.prod(bank.frame(bg_root, bg_seq, 0)[1].shape))
  ok = [s for s in starts if s in bg_refs and
        (bg_refs[s].box[2] - bg_refs[s].box[0]) * (bg_refs[s].box[3] - bg_refs[s].box[1]) * scale2 >= 2 * min_pixels]
  for attempt in range(attempts):
    rng = np.random.default_rng([seed, attempt])
    start = int(rng.choice(ok if ok else starts))
    frames, target, bg_index = _background(bank, bg_root, bg_seq, start, T, size)

    # Schedule (frame numbers) of the events.
    if n_objects == 2:
      hide0, hide1 = round(0.2 * T), round(0.2 * T) + max(4, round(hidden_share * T))
      exit0, out0, out1, back = hide1, round(0.55 * T), round(0.75 * T), round(0.9 * T)
    else:
      hide0, hide1 = round(0.3 * T), round(0.3 * T) + max(4, round(hidden_share * T))
      out0, out1, back = round(0.3 * T), round(0.6 * T), round(0.8 * T)
    leave = min(hide1 + max(3, round(0.15 * T)), T - 1)

    picks = [pool[i] for i in rng.permutation(len(pool))]
    srcs = []
    for r, s in picks:
      ids = sorted({ref.obj_id for ref in bank.refs_of(r, s)})
      srcs.append(_Source(bank, r, s, ids[0], int(rng.integers(0, bank.num_frames(r, s))), bool(rng.random() < 0.5), cache))

    # Occluder: any source that can hide the target at a sensible size (each at its least scale);
    # drawn at random among them, so that compact shapes do not win every clip.
    hidden_t = list(range(hide0, hide1))
    need = max(float(target[t].sum()) for t in hidden_t)
    fits = []
    for src in srcs[:4]:
      native_area = max(float((src.native(hide0).alpha > 0.5).sum()), 1.0)
      scale = 0.9 * np.sqrt(need / native_area)
      for _ in range(30):
        cuts = [src.at(t, scale) for t in hidden_t]
        if (max(c.alpha.shape[0] for c in cuts) > h or max(c.alpha.shape[1] for c in cuts) > 0.9 * w
            or max(float((c.alpha > 0.5).sum()) for c in cuts) > max_occluder * h * w):
          break  # too big to be a sensible object: another source or another start
        covers = [_cover(target[t], c.alpha) for t, c in zip(hidden_t, cuts)]
        # Left visible: under 0.6 max_visible of its area there and of its frame-0 area (the test's bar).
        if all(v * target[t].sum() < 0.6 * max_visible * min(target[t].sum(), target[0].sum())
               for t, (_, v) in zip(hidden_t, covers)):
          fits.append((src, scale, covers))
          break
        scale *= 1.1
    if not fits:
      why = f"no source can hide the target of {bg_seq} (frames {hide0}..{hide1 - 1})"
      continue
    occ, occ.scale, covers = fits[int(rng.integers(len(fits)))]
    others = [s for s in srcs if s is not occ]
    while len(others) < n_objects - 2:  # few sources: the same object again, elsewhere in its clip
      s = (others or [occ])[len(others) % max(len(others), 1)]
      others.append(_Source(bank, s.root, s.seq, s.refs[0].obj_id, int(rng.integers(0, len(s.refs))), not s.flip, cache))
    if twin and n_objects == 4:  # the target again, from other frames of its own sequence
      others[1] = _Source(bank, bg_root, bg_seq, 1, int(rng.integers(0, bank.num_frames(bg_root, bg_seq))),
                          bool(rng.random() < 0.5), cache)
    chosen = {2: occ}
    for k, src in zip(range(3, n_objects + 1), others):
      # Sensible size: a few percent of the frame, at most about half its height.
      native_area = max(float((src.native(0).alpha > 0.5).sum()), 1.0)
      share = TWIN_AREA if twin and k == 4 else (0.03, 0.07)
      scale = np.sqrt(rng.uniform(*share) * h * w / native_area)
      nh, nw = src.native(0).alpha.shape
      src.scale = float(min(scale, 0.55 * h / nh, 0.4 * w / nw))
      chosen[k] = src
    occ.scale = float(occ.scale)

    objects = {k: dict(src=s, cuts=[s.at(t) for t in range(T)], top_left=[]) for k, s in chosen.items()}
    occupied = np.zeros((h, w), np.uint8)
    centres0 = {}
    for k in sorted(objects):  # the occluder first: it is the hardest to fit
      cut0 = objects[k]["cuts"][0]
      tl = _place(rng, cut0, size, occupied, target[0])
      centres0[k] = tl + _centroid(cut0.alpha)
      occupied = paste(frames[0], occupied, cut0, int(tl[0]), int(tl[1]), 1)[1]

    # Occluder path: frame 0 -> over the target -> follows it while hiding it -> on past it.
    occ_path = np.zeros((T, 2))
    occ_path[0] = centres0[2]
    cover_c = [tl + _centroid(objects[2]["cuts"][t].alpha) for t, (tl, _) in zip(hidden_t, covers)]
    occ_path[1:hide0 + 1] = _lerp(centres0[2], cover_c[0], hide0)
    occ_path[hide0:hide1] = cover_c
    if n_objects == 2:  # the occluder also leaves the frame and comes back
      away = _outside_centre(cover_c[-1], objects[2]["cuts"], size)
      back_c = _reentry(rng, objects[2]["cuts"][back], size, target[back:])
      occ_path[exit0:out0] = _lerp(cover_c[-1], away, out0 - exit0)
      occ_path[out0:out1] = away
      occ_path[out1:back] = _lerp(away, back_c, back - out1)
      occ_path[back:] = back_c
    else:  # passes over: ends as far beyond the target as it started before it
      end = np.clip(2 * cover_c[-1] - centres0[2], [0, 0], [w - 1, h - 1])
      occ_path[hide1:leave] = _lerp(cover_c[-1], end, leave - hide1)
      occ_path[leave:] = end
    objects[2]["centre"] = occ_path
    roles = {1: "target", 2: "occluder"}

    exiter = 2 if n_objects == 2 else 3
    if n_objects >= 3:  # leaves by the nearer side, waits outside, comes back off the target
      p0 = centres0[3]
      away = _outside_centre(p0, objects[3]["cuts"], size)
      back_c = _reentry(rng, objects[3]["cuts"][back], size, target[back:])
      path = np.zeros((T, 2))
      path[0] = p0
      path[1:out0] = _lerp(p0, away, out0 - 1)
      path[out0:out1] = away
      path[out1:back] = _lerp(away, back_c, back - out1)
      path[back:] = back_c
      objects[3]["centre"] = path
      roles[3] = "exit"
    if n_objects == 4:  # a distractor wandering to a random spot
      p0 = centres0[4]
      q = rng.uniform([0.15 * w, 0.15 * h], [0.85 * w, 0.85 * h])
      path = np.concatenate([p0[None], _lerp(p0, q, T - 1)])
      objects[4]["centre"] = path
      roles[4] = "twin" if twin else "distractor"

    order = [k for k in sorted(objects, reverse=True)]  # back to front: the occluder is in front of all
    out_frames, out_masks, full = _compose(frames, target, objects, order)
    ev = _events(out_masks, full, max_visible)
    why = _check(ev, n_objects, exiter, min_pixels)
    if why is not None:
      why = f"attempt {attempt}: {why}"
      continue

    def label_of(r, s, k):
      return f"{os.path.basename(bank.datasets[r].root)}/{s}/{k}"

    info = dict(
        seed=int(seed), attempt=attempt, size=[h, w], n_frames=T,
        background=dict(source=label_of(bg_root, bg_seq, 1), start=start, frames=bg_index),
        z_order=[1] + order, occluder=2, exit=exiter,
        objects=[])
    for k in range(1, n_objects + 1):
      o = dict(id=k, role=roles[k], **ev[k])
      if k == 1:
        o["source"] = label_of(bg_root, bg_seq, 1)
      else:
        src = objects[k]["src"]
        o.update(source=src.label(), source_frames=[src.ref(t).frame for t in range(T)],
                 scale=round(src.scale, 4), flipped=src.flip,
                 centre=np.round(objects[k]["centre"], 1).tolist(), top_left=objects[k]["top_left"])
      info["objects"].append(o)
    return out_frames, out_masks, info
  raise RuntimeError(f"no occlusion clip on {bg_seq} with seed {seed} after {attempts} attempts; last: {why}")


def default_roots():
  return splits.DATA_ROOTS


def held_out_sequences(split: str) -> List[str]:
  """The sequences of one fixed split ("val" or "test") of data/splits.py, over all data roots."""
  if split not in ("val", "test"):
    raise ValueError(f"split {split!r}: the occlusion benchmark is built from 'val' or 'test'")
  return list(splits.never_trained(split))


def build_benchmark(out_root, data_dir, sequences: Optional[Sequence[str]] = None, seed: int = 0,
                    n_sequences: int = 6, n_frames: int = 40, roots=None, subset: str = "train",
                    object_counts: Optional[Sequence[int]] = None, size: Tuple[int, int] = SIZE,
                    split: str = "test", kind: str = "standard") -> List[str]:
  """Writes `n_sequences` clips as a DAVIS-layout root (JPEGImages/240p, Annotations/240p,
  ImageSets/2017/occlusion.txt) plus `info.json` ({name: info}); returns the clip names.

  `roots` are (folder in data_dir, resolution) pairs (default: data/splits.py DATA_ROOTS);
  `sequences` are both the backgrounds (in turn) and the cut-out sources (default: the sequences
  of `split`, "val" or "test"; recorded in each clip's info as "split", or "custom" when
  `sequences` are given). `kind`: "standard" or "hard" (KINDS). Clip i has object_counts[i % len]
  objects (default: the kind's) and its own seed derived from `seed`.
  """
  if kind not in KINDS:
    raise ValueError(f"kind {kind!r}: choose one of {', '.join(KINDS)}")
  spec = KINDS[kind]
  object_counts = tuple(object_counts or spec["object_counts"])
  roots = roots or default_roots()
  label = "custom" if sequences else split
  sequences = list(sequences or held_out_sequences(split))
  bank = ObjectBank([(os.path.join(data_dir, name), res) for name, res in roots], subset, sequences)
  have = [s for _, s in bank.sequences]
  missing = [s for s in sequences if s not in have]
  if missing:
    raise ValueError(f"sequences not found in {data_dir}: {', '.join(missing)}")
  clips, infos = {}, {}
  failed = set()  # backgrounds whose target nothing could hide: not tried again
  for i in range(n_sequences):
    # Backgrounds in turn; one whose target nothing can hide (too big) passes to the next.
    for j in range(len(have)):
      bg = have[(i + j) % len(have)]
      if bg in failed and j + 1 < len(have):
        continue
      try:
        frames, masks, info = make_occlusion_sequence(bank, bg, seed * 1000 + i, n_frames, size,
                                                      object_counts[i % len(object_counts)],
                                                      hidden_share=spec["hidden"], twin=spec["twin"],
                                                      attempts=ATTEMPTS)
        break
      except RuntimeError:
        failed.add(bg)
        if j + 1 == len(have):
          raise
    name = f"occ{i:02d}-{bg}"
    info.update(split=label, kind=kind)
    clips[name] = (frames, masks)
    infos[name] = info
  synthetic.write_davis_root(os.fspath(out_root), clips, RESOLUTION, SUBSET)
  with open(os.path.join(out_root, "info.json"), "w") as f:
    json.dump(infos, f, indent=1)
  return list(clips)
