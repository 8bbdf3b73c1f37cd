"""A small Python API for notebooks, in the spirit of SAM 2's video predictor.

    seg = Segmenter()                                  # default config and net
    state = seg.init_state("path/to/frames_or_video")
    seg.add_mask(state, first_frame_ids)               # uint8 [H, W], ids 1..K
    seg.add_mask(state, mask, frame_idx=30, obj_id=3)  # optional: an object that appears later
    seg.add_box(state, (x0, y0, x1, y1), obj_id=4)     # optional: an object given by its box
    seg.adapt(state)                                   # optional: config.online_steps > 0
    for frame_index, ids in seg.segment(state):        # uint8 [H, W] per frame
        ...
    seg.reset_state(state)                             # clears the prompts; the video stays open

Objects may be given at any frame (SAM 2's `add_new_mask`): each is propagated forward from the
frame that introduced it and is absent before it, unless `segment(state, backward=True)`.

`segment` runs the configured method: "vsreid" (Algorithm 3: propagation, then re-identification
of lost objects with the detector and ReID nets, recovery and re-propagation) or "propagate"
(Algorithm 1 only, streamed frame by frame: `propagate`).

`segment_dataset(seg, jobs, out_dir)` segments many videos and writes each one's results as
`vsreid segment` does; the CLI and the experiments call it, and are thin shells over this.
"""
import dataclasses
import os
import time
from typing import Callable, Iterable, Iterator, Optional, Sequence, Tuple

import jax.numpy as jnp
import ml_collections
import numpy as np

from vsreid_jax.configs import segment as segment_config
from vsreid_jax.data.palette import VOID_ID
from vsreid_jax.data.results import sequence_name
from vsreid_jax import memory
from vsreid_jax.flow import prefetch
from vsreid_jax.data.frames import ResizedFrames, open_frames, resize_ids
from vsreid_jax.errors import InputError
from vsreid_jax import flow as flow_lib
from vsreid_jax.flow.cache import FlowCache
from vsreid_jax.models import weights
from vsreid_jax.propagation.algorithm1 import (PropagationConfig, Propagator, object_bucket, object_starts, pad_objects,
                                                propagate_backward, start_objects)
from vsreid_jax.propagation.nets import PropagationNet, identity_net, net_scales
from vsreid_jax.propagation import target as target_model
from vsreid_jax.solver.caches import ProbStore
from vsreid_jax.solver.merge import merge_probs, merge_to_ids
from vsreid_jax.utils import StageTimer


@dataclasses.dataclass
class VideoState:
  frames: object  # a FolderFrames / VideoFrames sequence
  flows: FlowCache
  name: str
  object_ids: Optional[np.ndarray] = None  # [K] uint8 ids of the objects given, ascending
  first_prob: Optional[np.ndarray] = None  # [Kb, H, W] float32 each object's mask at its start frame
  first_area: Optional[np.ndarray] = None  # [Kb] pixels of each object at its start frame
  starts: Optional[np.ndarray] = None  # [K] int64 frame index where each object is given
  # {object id: (start frame, bool mask [H, W] at the processing size, source)}: what add_mask got.
  prompts: dict = dataclasses.field(default_factory=dict)
  timer: StageTimer = dataclasses.field(default_factory=StageTimer)
  variables: Optional[dict] = None  # N_mp variables adapted to this video (Segmenter.adapt), else None
  result: Optional[object] = None  # the solver.algorithm3.SolveResult of segment() with method vsreid
  # (height, width) of the input when its frames are processed smaller (config.max_size), else None:
  # the first mask is given, and the id masks are returned, at this size.
  input_size: Optional[Tuple[int, int]] = None
  # (solver.caches.Candidates, templates) to use instead of the detector's and the ReID net's, e.g.
  # the ground-truth oracle of solver/oracle.py (ablation --oracle-reid); None: the nets'.
  candidates: Optional[tuple] = None


METHODS = ("auto", "vsreid", "propagate")


def _weights_path(name: str, default: str) -> str:
  return default if name == "default" else name


def reid_weight_paths(config: ml_collections.ConfigDict) -> Tuple[str, str]:
  """(detector, ReID) weights files the config names."""
  return (_weights_path(config.detector, weights.DEFAULT_DETECTOR_WEIGHTS),
          _weights_path(config.reid, weights.DEFAULT_REID_WEIGHTS))


def resolve_method(config: ml_collections.ConfigDict) -> str:
  """"auto" -> "vsreid" when the detector and ReID weights exist, else "propagate"."""
  if config.method not in METHODS:
    raise InputError(f"method {config.method!r}: choose one of {', '.join(METHODS)}")
  if config.method != "auto":
    return config.method
  if config.detector != "default" or config.reid != "default":
    return "vsreid"  # weights named explicitly: a missing file is an error, not a silent fallback
  return "vsreid" if all(os.path.isfile(p) for p in reid_weight_paths(config)) else "propagate"


# The learned N_mp (its weights, config and per-video variables): propagation/nets.PropagationNet.
SwappableNet = PropagationNet


def build_net(name: str, flip: Optional[bool], streams: Optional[Tuple[str, ...]] = None):
  """Resolves "identity", "default" (the shipped weights) or a weights file to N_mp.

  `streams`: run only these of the net's streams, e.g. ("rgb",) for the single-stream ablation
  (the two-stream weights with the flow stream left out; None: all).
  Returns (net, the net's model ConfigDict): `PropagationNet.from_weights(path)` and its config,
  or (identity_net, None): its crop size, margin and test-time settings are the defaults of propagation.
  """
  if name == "identity":
    return identity_net, None  # flipping the identity changes nothing
  net = PropagationNet.from_weights(None if name == "default" else name, flip, streams)
  return net, net.config


def propagation_config(config: ml_collections.ConfigDict, model_cfg=None) -> PropagationConfig:
  """Algorithm 1 settings: the segment config's, where it leaves them None the net's own.

  Args:
    config: the segment ConfigDict (configs/segment.py).
    model_cfg: the net's model ConfigDict (`build_net`), None for the identity net.

  Returns:
    The PropagationConfig; its scales, (box margin, crop size) pairs: `config.propagation.scales`,
    else the net's own (`net_scales`), else (identity) PropagationConfig's default, the paper's.
  """
  p = config.propagation
  if p.scales is not None:
    scales = p.scales
  elif model_cfg is not None:
    scales = net_scales(model_cfg)
  else:
    scales = PropagationConfig().scales
  binarize = p.binarize_prior
  if binarize is None:
    binarize = bool(model_cfg.get("test_binarize_prior", False)) if model_cfg is not None else False
  return PropagationConfig(scales=tuple((float(m), int(s)) for m, s in scales), use_box=p.use_box,
                           threshold=p.threshold, lost_ratio=p.lost_ratio, binarize_prior=bool(binarize),
                           min_crop_scale=float(p.min_crop_scale),
                           lost_search_margin=float(p.lost_search_margin), exclusive=bool(p.exclusive),
                           revive_ratio=float(p.revive_ratio))


class Segmenter:
  """Semi-supervised multi-object video segmentation with the configured method: "vsreid"
  (Algorithm 3: propagation, re-identification of lost objects, recovery) or "propagate"
  (Algorithm 1 only)."""

  def __init__(self, config: Optional[ml_collections.ConfigDict] = None, flow_cache_dir: Optional[str] = None):
    self.config = config or segment_config.get_config()
    self.flow_backend = flow_lib.get(self.config.flow, self.config.flow_weights)
    net, model_cfg = build_net(self.config.net, self.config.flip, self.config.get("streams"))
    self.propagator = Propagator(net, propagation_config(self.config, model_cfg), target_model.build(self.config, net))
    memory.check_crop(self.propagator.config.scales, 1, self.config.propagation.crop_bytes_per_pixel)
    self.flow_cache_dir = flow_cache_dir  # also holds the detector/ReID candidates per sequence
    self.adapter = None  # the train.online.OnlineAdapter of the last adapt()
    self.method = resolve_method(self.config)
    self._reid = None  # (detector, embedder, fingerprint), loaded on first use

  def reid_nets(self):
    """(Detector, Embedder, weights fingerprint) of the config, loaded once."""
    if self._reid is None:
      from vsreid_jax.detection.detector import Detector  # pylint: disable=g-import-not-at-top
      from vsreid_jax.reid.embedder import Embedder  # pylint: disable=g-import-not-at-top
      from vsreid_jax.solver.caches import file_fingerprint  # pylint: disable=g-import-not-at-top
      det_path, reid_path = reid_weight_paths(self.config)
      for what, path in (("detector", det_path), ("ReID", reid_path)):
        if not os.path.isfile(path):
          raise InputError(f"{path}: {what} weights not found; pass a weights file or use --method propagate")
      self._reid = (Detector.from_weights(det_path), Embedder.from_weights(reid_path),
                    file_fingerprint(det_path, reid_path))
    return self._reid

  def solver_config(self):
    """Algorithm 3 settings: the segment config's, thresholds defaulting to the ReID net's."""
    from vsreid_jax.solver.algorithm3 import SolverConfig  # pylint: disable=g-import-not-at-top
    s = self.config.solver
    _, embedder, _ = self.reid_nets()
    return SolverConfig(rho_reid=float(embedder.rho_reid if s.rho_reid is None else s.rho_reid),
                        rho_occ=float(embedder.rho_occ if s.rho_occ is None else s.rho_occ),
                        max_retrievals=int(s.max_retrievals), recover_passes=int(s.recover_passes),
                        guide_size=int(s.guide_size), prob_memory_mb=float(s.prob_memory_mb),
                        retrieval_rule=str(s.retrieval_rule), motion_weight=float(s.motion_weight),
                        drift_iou=None if s.get("drift_iou") is None else float(s.drift_iou),
                        drift_margin=float(s.get("drift_margin", 0.0)),
                        drift_exclusive=bool(s.get("drift_exclusive", False)),
                        free_containment=None if s.get("free_containment") is None else float(s.free_containment),
                        free_cover=None if s.get("free_cover") is None else float(s.free_cover),
                        rival_margin=None if s.get("rival_margin") is None else float(s.rival_margin),
                        rho_relative=None if s.get("rho_relative") is None else float(s.rho_relative),
                        rho_relative_margin=float(s.get("rho_relative_margin", 0.0)),
                        stop_outside=bool(s.get("stop_outside", False)),
                        target_check=None if s.get("target_check") is None else float(s.target_check),
                        confirm_share=None if s.get("confirm_share") is None else float(s.confirm_share),
                        motion_sigma=float(s.motion_sigma), template_refresh=int(s.template_refresh),
                        motion_velocity=int(s.motion_velocity),
                        motion_gate=None if s.get("motion_gate") is None else float(s.motion_gate),
                        recovery_guard=bool(s.recovery_guard), merge=str(s.merge),
                        prefetch=bool(self.config.get("prefetch", True)))

  @property
  def can_adapt(self) -> bool:
    """Whether the net has weights to adapt online (not the identity)."""
    return isinstance(self.propagator.net, PropagationNet)

  def adapt(self, state: VideoState, progress: bool = False) -> Optional[dict]:
    """Online adaptation: fine-tunes a copy of the net on synthetic pairs made from the first frame
    and its masks (the earliest frame an object is given at, with the objects given there;
    `train/online.py`) for `config.online_steps` steps; the video then propagates with the
    adapted variables (the base weights are untouched). Returns the adaptation info
    (loss per step, seconds), or None when off (0 steps) or the net has no weights (identity).
    """
    steps = int(self.config.get("online_steps", 0))
    if steps <= 0 or not self.can_adapt:
      return None
    if state.object_ids is None:
      raise ValueError("call add_mask(state, mask) before adapt(state)")
    from vsreid_jax import configs  # pylint: disable=g-import-not-at-top
    from vsreid_jax.train import online  # pylint: disable=g-import-not-at-top
    net = self.propagator.net
    name = self.config.get("online_config", "") or (
        net.config_name if net.config_name in configs.names("online") else "lite_cpu")
    cfg = configs.get("online", name)
    cfg.steps = steps
    cfg.seed = int(self.config.get("online_seed", cfg.seed))
    # The net's own crop and margin (what it was trained on); the compiled step is shared.
    self.adapter = online.cached_adapter(net.model, cfg, int(net.config.crop_size),
                                         float(net.config.crop_margin), net.config.to_json())
    k = len(state.object_ids)
    s0 = int(state.starts.min())  # the earliest given frame and its objects (frame 0 for a first-frame mask)
    state.variables, info = self.adapter.adapt(net.base_variables, state.frames[s0],
                                               state.first_prob[:k][state.starts == s0],
                                               progress=progress, desc=f"{state.name} adapt")
    if info["compile_seconds"]:
      state.timer.add("compile", info["compile_seconds"])
    state.timer.add("adapt", info["seconds"])
    return info

  def save_adapted(self, state: VideoState, path) -> None:
    """Writes the video's adapted variables as a weights file (`models.weights.save_weights`)."""
    if state.variables is None:
      raise ValueError("no adapted variables: run adapt(state) with config.online_steps > 0")
    net = self.propagator.net
    weights.save_weights(path, state.variables, net.config_name,
                         meta={"sequence": state.name, "online_steps": int(self.config.online_steps),
                               "base": self.config.net}, config=net.config, kind="propagation")

  def init_state(self, frames, name: Optional[str] = None) -> VideoState:
    """`frames`: a frame folder or video path, a [T,H,W,3] uint8 array, or opened frames."""
    if isinstance(frames, (str, os.PathLike)):
      name = name or sequence_name(frames)  # the real name: "." and ".." resolve
    if isinstance(frames, (str, os.PathLike, np.ndarray)):
      frames = open_frames(frames)
    name = name or "video"
    input_size = None
    max_size = int(self.config.get("max_size", 0) or 0)
    if max_size > 0 and max(frames.size) > max_size:
      frames = ResizedFrames(frames, max_size)
      input_size = frames.input_size
    # Shrunk frames have flows of their own size: cached apart from the full size's.
    key = name if input_size is None else f"{name}@{frames.size[1]}x{frames.size[0]}"
    return VideoState(frames=frames, name=name, input_size=input_size,
                      flows=FlowCache(frames, self.flow_backend, self.flow_cache_dir, key=key))

  def _frame_index(self, state: VideoState, frame_idx, source: str) -> int:
    """frame_idx checked: an int in 0..T-1, else an InputError naming `source`."""
    n = len(state.frames)
    if isinstance(frame_idx, (bool, np.bool_)) or not isinstance(frame_idx, (int, np.integer)):
      raise InputError(f"{source}: frame {frame_idx!r} is not an integer; pass a frame index 0..{n - 1}")
    if not 0 <= int(frame_idx) < n:
      raise InputError(f"{source}: frame {frame_idx} is out of range: the video has {n} frames; pass a frame "
                       f"index 0..{n - 1}")
    return int(frame_idx)

  def add_mask(self, state: VideoState, mask: np.ndarray, frame_idx: int = 0, obj_id: Optional[int] = None,
               source: str = "mask") -> None:
    """Gives objects by their mask at frame `frame_idx` (SAM 2's `add_new_mask`).

    Each object is propagated from the frame that introduced it (forward; also backward with
    `segment(state, backward=True)`), is absent before it, and its re-identification template
    comes from that frame. Giving an object again at the same frame replaces its mask; at another
    frame is an error (call `reset_state` to start over).

    Args:
      state: the video (`init_state`).
      mask: [H, W] at the frames' size. obj_id None: an id mask (0 background, ids 1..254, each an
        object; 255 is void, pixels to ignore as in DAVIS: no object). obj_id given: a binary mask
        (bool, 0/1 or 0/255; nonzero is the object).
      frame_idx: the frame the mask belongs to (0-based).
      obj_id: the object's id 1..254, or None for an id mask.
      source: what error messages name (e.g. the PNG's path).
    """
    frame_idx = self._frame_index(state, frame_idx, source)
    mask = np.asarray(mask)
    h, w = state.input_size or state.frames.size
    if mask.shape != (h, w):
      raise InputError(f"{source}: mask is {mask.shape[1]}x{mask.shape[0]} but the frames are {w}x{h}; "
                       "resize the mask with nearest-neighbour interpolation to the frame size")
    if obj_id is not None:
      if isinstance(obj_id, (bool, np.bool_)) or not isinstance(obj_id, (int, np.integer)) or not 1 <= obj_id <= 254:
        raise InputError(f"{source}: object id {obj_id!r}: pass an integer in 1..254 (or obj_id=None for an id mask)")
      mask = np.where(mask != 0, np.uint8(obj_id), np.uint8(0))
    mask = resize_ids(mask.astype(np.uint8) if mask.dtype == bool else mask, state.frames.size)
    ids = np.unique(mask)
    ids = ids[(ids != 0) & (ids != VOID_ID)].astype(np.uint8)  # void is no object, as in DAVIS
    if ids.size == 0:
      if obj_id is not None:
        raise InputError(f"{source}: the mask of object {obj_id} is empty; draw the object (nonzero pixels)")
      what = "background and void (255)" if np.any(mask == VOID_ID) else "background"
      raise InputError(f"{source}: mask is empty (all {what}); draw at least one object with an id in 1..254")
    self._set_objects(state, {int(i): mask == i for i in ids}, frame_idx, source)

  def _set_objects(self, state: VideoState, masks: dict, frame_idx: int, source: str) -> None:
    """Adds {id: bool mask [H, W] at the processing size} at frame_idx; rebuilds the per-object arrays."""
    for oid in masks:
      if oid in state.prompts and state.prompts[oid][0] != frame_idx:
        first, _, where = state.prompts[oid]
        raise InputError(f"{source}: object {oid} is already given at frame {first} (by {where}); an object is "
                         f"given at one frame only: leave it out of this one, or call reset_state to start over")
    prompts = dict(state.prompts)
    prompts.update({oid: (frame_idx, m, source) for oid, m in masks.items()})
    ids = np.array(sorted(prompts), np.uint8)
    kb = object_bucket(len(ids), self.propagator.config.object_buckets)
    memory.check_crop(self.propagator.config.scales, kb, self.config.propagation.crop_bytes_per_pixel)
    onehot = np.stack([prompts[int(i)][1] for i in ids]).astype(np.float32)
    state.prompts = prompts
    state.object_ids = ids
    state.starts = np.array([prompts[int(i)][0] for i in ids], np.int64)
    state.first_prob = pad_objects(onehot, kb)
    state.first_area = state.first_prob.sum(axis=(1, 2))
    state.result = None  # the prompts changed: a previous result is stale

  def reset_state(self, state: VideoState) -> None:
    """Clears every object and prompt, the adapted variables and the last result (SAM 2's
    `reset_state`); the video, its flows and its timer are kept."""
    state.prompts = {}
    state.object_ids = state.first_prob = state.first_area = state.starts = None
    state.variables = state.result = state.candidates = None

  def add_box(self, state: VideoState, box, frame_idx: int = 0, obj_id: Optional[int] = None,
              source: str = "box") -> np.ndarray:
    """Gives object `obj_id` at frame `frame_idx` by its box instead of a mask.

    The mask is made by N_mp's recovery path, the one re-identification uses
    (solver.algorithm3 `guide_prior` and `recover`: the guided prior in the box, here the box itself
    filled, then `solver.box_passes` N_mp passes, each fed back unthresholded), kept inside the
    box, and added like `add_mask`.

    Args:
      state: the video.
      box: (x0, y0, x1, y1) in pixels of the input frames (x1, y1 exclusive).
      frame_idx: the frame the box belongs to (0-based).
      obj_id: the object's id, 1..254.
      source: what error messages name.
    Returns:
      the object's mask, bool [H, W] at the input size.
    """
    from vsreid_jax.solver.algorithm3 import guide_prior, recover  # pylint: disable=g-import-not-at-top
    frame_idx = self._frame_index(state, frame_idx, source)
    if obj_id is None or isinstance(obj_id, (bool, np.bool_)) or not isinstance(obj_id, (int, np.integer)) \
        or not 1 <= obj_id <= 254:
      raise InputError(f"{source}: object id {obj_id!r}: a box needs obj_id, an integer in 1..254")
    try:
      b = np.asarray(box, np.float64).reshape(4)
    except (TypeError, ValueError):
      b = None
    h_in, w_in = state.input_size or state.frames.size
    if b is None or not np.all(np.isfinite(b)):
      raise InputError(f"{source}: box {box!r} is not 4 numbers; pass x0,y0,x1,y1 in pixels")
    clipped = np.clip(b, 0, [w_in, h_in, w_in, h_in])
    if not (clipped[2] - clipped[0] >= 1 and clipped[3] - clipped[1] >= 1):
      raise InputError(f"{source}: box {','.join(f'{v:g}' for v in b)} holds no pixel of the {w_in}x{h_in} frame; "
                       "pass x0,y0,x1,y1 with x0 < x1 and y0 < y1 inside the frame")
    h, w = state.frames.size
    scale = np.array([w / w_in, h / h_in, w / w_in, h / h_in])  # config.max_size: the box follows the frames
    b = (clipped * scale).astype(np.float32)
    prop = self.propagator
    if isinstance(prop.net, SwappableNet):
      prop.net.use(state.variables)
    with state.timer.stage("recover", guide_prior):
      prior = guide_prior(jnp.ones((h, w), jnp.float32), jnp.array([0, 0, w, h], jnp.float32), jnp.asarray(b),
                          height=h, width=w, size=int(self.config.solver.guide_size))
    area = jnp.sum(prior > prop.config.threshold, axis=(1, 2)).astype(jnp.float32)
    flow = state.flows.get(frame_idx, frame_idx - 1 if frame_idx > 0 else min(frame_idx + 1, len(state.frames) - 1),
                           state.timer)
    with state.timer.stage("read"):
      image = state.frames[frame_idx]
    with prop.without_target():  # fitted on the mask this makes, when the video is segmented
      prob, alive = recover(prop, prior, image, flow, area, int(self.config.solver.box_passes), state.timer,
                            binarize_feedback=False)
    inside = np.zeros((h, w), bool)
    x0, y0 = int(np.floor(b[0])), int(np.floor(b[1]))
    inside[y0:int(np.ceil(b[3])), x0:int(np.ceil(b[2]))] = True
    mask = (np.asarray(prob[0]) > prop.config.threshold) & inside
    if not bool(alive[0]) or not mask.any():
      raise InputError(f"{source}: N_mp found no object in box {','.join(f'{v:g}' for v in clipped)} at frame "
                       f"{frame_idx}; draw the box tightly around the object, or give its mask instead")
    self._set_objects(state, {int(obj_id): mask}, frame_idx, source)
    return self._output(state, mask.astype(np.uint8)).astype(bool)

  def memory_estimate(self, state: VideoState) -> int:
    """Estimated peak resident bytes of segmenting this video (`memory.estimate_bytes`)."""
    h, w = state.frames.size
    return memory.estimate_bytes(len(state.frames), h, w, len(state.object_ids), self.method)

  def check_memory(self, state: VideoState, source: str) -> int:
    """Refuses (InputError naming `source`) a video whose estimated peak memory exceeds what the
    machine has available; returns the estimate in bytes."""
    if state.object_ids is None:
      raise ValueError("call add_mask(state, mask) before check_memory(state)")
    need = self.memory_estimate(state)
    available = memory.available_bytes()
    if available is None:
      return need  # not known here: no refusal
    budget = available + memory.resident_bytes()  # what this process holds now is in the estimate
    if need <= budget:
      return need
    h, w = state.input_size or state.frames.size
    k = len(state.object_ids)
    size = memory.fitting_long_side(len(state.frames), h, w, k, self.method, budget)
    fix = (f"pass --max-size {size} (segments at most {size} pixels on the long side and writes the masks at "
           f"{w}x{h})" if size else f"even --max-size {memory.MIN_MAX_SIZE} does not fit: segment fewer objects or a shorter clip "
           "per run")
    if self.method == "vsreid":
      fix += ", or --method propagate (no re-identification; less memory)"
    raise InputError(f"{source}: needs about {need / memory.GIB:.1f} GiB of memory ({len(state.frames)} frames of "
                     f"{state.frames.size[1]}x{state.frames.size[0]}, {k} objects, method {self.method}) but the "
                     f"machine has {budget / memory.GIB:.1f} GiB available; {fix}")

  @staticmethod
  def _output(state: VideoState, ids: np.ndarray) -> np.ndarray:
    """An id mask at the input size (nearest neighbour when processed smaller)."""
    return ids if state.input_size is None else resize_ids(ids, state.input_size)

  def segment(self, state: VideoState, progress: bool = False, callback=None,
              backward: bool = False) -> Iterator[Tuple[int, np.ndarray]]:
    """Yields (frame index, id mask uint8 [H, W]) for every frame with the configured method.

    An object given at frame k is propagated forward from k and is absent before it; `backward`:
    also propagated backward from k to frame 0 (SAM 2's `reverse`, here in the same call).

    "vsreid" solves the whole video first (Algorithm 3 needs every frame's candidates and may
    rewrite any frame), then yields; state.result keeps its probabilities and retrieval log.
    `callback(phase, done, total)` reports that work before the first frame comes out (phases
    "propagate", "re-id"; see `solve`), so a progress bar can move meanwhile.
    """
    if self.method == "propagate":
      yield from self.propagate(state, backward=backward)
      return
    result = self.solve(state, progress=progress, callback=callback, backward=backward)
    for i in range(len(state.frames)):
      with state.timer.stage("merge", merge_probs):
        ids = result.ids(i, state.object_ids)
      yield i, self._output(state, ids)

  def solve(self, state: VideoState, progress: bool = False, reid: bool = True, callback=None,
            backward: bool = False):
    """Algorithm 3 on one video -> solver.algorithm3.SolveResult (also kept in state.result).
    reid=False: the same solver with no re-identification (propagation only).
    callback(phase, done, total): progress of the phases ("propagate" frames,
    "re-id" rounds). backward: objects given after frame 0 are also propagated backward."""
    from vsreid_jax.solver import caches  # pylint: disable=g-import-not-at-top
    from vsreid_jax.solver.algorithm3 import Solver, SolverConfig  # pylint: disable=g-import-not-at-top
    if state.object_ids is None:
      raise ValueError("call add_mask(state, mask) before segment(state)")
    k = len(state.object_ids)
    cands = tmpl = None
    cfg = SolverConfig(prob_memory_mb=float(self.config.solver.prob_memory_mb), prefetch=bool(self.config.get("prefetch", True)))
    if reid:
      detector, embedder, fingerprint = self.reid_nets()
      cfg = self.solver_config()
    if reid and state.candidates is not None:
      cands, tmpl = state.candidates  # e.g. the ground-truth oracle of solver/oracle.py
    elif reid:
      # Detector and ReID run only on the frames the solver asks for (where an object is lost, or
      # every frame for the paper's rule and the levers that read all of them).
      cands = caches.CandidateSource(state.frames, detector, embedder, int(self.config.solver.candidate_batch),
                                     self.flow_cache_dir, state.name, fingerprint, state.timer)

      def tmpl():  # each object's template from the frame that introduced it
        with state.timer.stage("embed", embedder):
          return caches.templates_at_starts(embedder, state.frames, state.first_prob, state.starts)
    if isinstance(self.propagator.net, PropagationNet):
      self.propagator.net.use(state.variables)
    late = bool(state.starts.any())  # None: every object at frame 0, the solver's original path
    self.propagator.fit_target(state.frames, state.first_prob, state.timer,
                               starts=object_starts(state.starts, state.first_prob.shape[0]) if late else None)
    state.result = Solver(self.propagator, cfg).solve(
        state.frames, state.flows, state.first_prob, state.first_area, k, cands, tmpl, timer=state.timer,
        progress=progress, desc=state.name, callback=callback, starts=state.starts if late else None,
        backward=backward)
    if cands is not None and hasattr(cands, "close"):
      cands.close()
    return state.result

  def propagate(self, state: VideoState, backward: bool = False) -> Iterator[Tuple[int, np.ndarray]]:
    """Yields (frame index, id mask uint8 [H, W]) for every frame, the first included, streaming
    forward (objects given at a later frame join there; `backward`: their frames before it are
    propagated backward first)."""
    if state.object_ids is None:
      raise ValueError("call add_mask(state, mask) before propagate(state)")
    prop = self.propagator
    n = len(state.frames)
    kb = state.first_prob.shape[0]
    st = object_starts(state.starts, kb)
    s0 = int(st[:len(state.object_ids)].min())
    if isinstance(prop.net, SwappableNet):
      prop.net.use(state.variables)  # this video's adapted variables, or the base ones
    back = None
    if backward and st.max() > 0:  # the frames before each later object's start, solved first
      back = ProbStore((int(st.max()), kb) + state.first_prob.shape[1:], float(self.config.solver.prob_memory_mb))
      for i, prob, _ in propagate_backward(prop, state.frames, state.flows, state.first_prob, state.first_area, st,
                                           state.timer):
        back[i] = np.asarray(prob)

    def ids_at(i, prob):
      if back is not None and i < len(back):
        prob = jnp.where(jnp.asarray(st > i)[:, None, None], jnp.asarray(back[i]), prob)
      with state.timer.stage("merge", merge_probs):
        return merge_to_ids(prob, state.object_ids)

    empty = jnp.zeros(state.first_prob.shape, jnp.float32)
    for i in range(s0):  # before the first given frame: no object yet (unless propagated backward)
      yield i, self._output(state, ids_at(i, empty))
    if state.starts.any():
      prob, alive = start_objects(empty, jnp.zeros(kb, bool), state.first_prob, state.first_area, st == s0)
    else:  # every object at frame 0
      prob, alive = jnp.asarray(state.first_prob), jnp.asarray(state.first_area > 0)
    first_area = jnp.asarray(state.first_area)
    prop.fit_target(state.frames, state.first_prob, state.timer, starts=st)
    yield s0, self._output(state, ids_at(s0, prob))
    last = prop.remember(None, prob, alive)
    with prefetch.forward(state.frames, state.flows, range(s0 + 1, n),
                          state.timer, bool(self.config.get("prefetch", True))) as items:
      for i, image, flow in items:
        if isinstance(prop.net, PropagationNet):
          prop.net.use(state.variables)  # this video's adapted variables, or the base ones
        prob, alive, _ = prop.step(prob, image, flow, alive, first_area, state.timer, last)
        prob, alive = start_objects(prob, alive, state.first_prob, state.first_area, st == i)
        last = prop.remember(last, prob, alive)  # each object's last mask, for revive_ratio (else None)
        yield i, self._output(state, ids_at(i, prob))
    if back is not None:
      back.close()


@dataclasses.dataclass
class SequenceJob:
  """One video of `segment_dataset`, segmented into OUT/<name>/."""
  name: str  # the results folder's name: OUT/<name>/<frame>.png
  frames: object  # opened frames (data/frames.py), the prompt's frame first
  # -> the prompt's id mask, uint8 [H, W] at the frames' input size; called when the video's turn comes.
  first_mask: Optional[Callable[[], np.ndarray]] = None
  source: str = "first-frame mask"  # what an error about the mask names (its file)
  # Instead of first_mask: prompts(seg, state) adds the video's prompts itself (masks on any frame,
  # boxes: Segmenter.add_mask / add_box), when the video's turn comes.
  prompts: Optional[Callable[["Segmenter", VideoState], None]] = None
  cache_key: Optional[str] = None  # the flow / candidate cache key (init_state's name); None: `name`
  before: Sequence[str] = ()  # names of frames before the prompt's frame, written as background
  overlay_fps: float = 0.0  # > 0: also writes OUT/<name>_overlay (masks over the frames) at this rate


@dataclasses.dataclass
class SequenceDone:
  """What `segment_dataset` yields once a video is written."""
  job: SequenceJob
  state: VideoState  # its timer, object ids and, with method vsreid, the solver's result
  writer: object  # the closed data.results.SequenceWriter: final folder, count, manifest
  adapted: Optional[dict]  # Segmenter.adapt's info; None without online adaptation
  seconds: float  # wall time of the video, from opening it to its last file


def _phase_callback(bar, name: str):
  """callback(phase, done, total) for Segmenter.segment: the bar follows the solver's phases
  (propagate, re-id) while it runs the whole video before the first frame comes out."""
  shown = [None]

  def callback(phase, done, total):
    if phase != shown[0]:
      shown[0] = phase
      bar.reset(total=total)
      bar.set_description(f"{name} {phase}", refresh=False)
    bar.n = done
    bar.refresh()
  return callback


def segment_dataset(seg: Segmenter, jobs: Iterable[SequenceJob], out_dir: str, *, per_object: bool = False,
                    progress: bool = False, backward: bool = False,
                    prepare: Optional[Callable[[VideoState, SequenceJob], None]] = None) -> Iterator[SequenceDone]:
  """Segments videos one after another with `seg`'s method and writes each one's results.

  Per job: `init_state`, `add_mask(job.first_mask())` (or `job.prompts(seg, state)`), `prepare(state, job)`, online adaptation
  (when the config asks for it), then every frame of `seg.segment` into a `data.results.SequenceWriter`
  (OUT/<name>/<frame>.png palette masks, the frames of `job.before` as background; moved into place
  only when the whole video is written, so an interrupted or failed one leaves no complete-looking
  folder), with the side files OUT/<name>_timing.json and, with method vsreid, OUT/<name>_retrievals.json.
  A signal (signals.py) stops the run between two frames.

  Args:
    seg: the Segmenter; its config chooses the method, net and flow.
    jobs: the videos, in order.
    out_dir: the results folder (written as data/results.py lays it out).
    per_object: also a 0/255 mask per object and frame (SequenceWriter's object_ids).
    progress: a progress bar per video that follows the solver's phases.
    backward: objects given after the first frame are also propagated backward (Segmenter.segment).
    prepare: called with each video's state once its first mask is set, before any work (a memory
      check, ground-truth candidates for `state.candidates`, ...).

  Yields:
    A SequenceDone after each video is written; nothing runs unless the generator is consumed.
  """
  import tqdm  # pylint: disable=g-import-not-at-top
  from vsreid_jax import signals  # pylint: disable=g-import-not-at-top
  from vsreid_jax.data.results import SequenceWriter  # pylint: disable=g-import-not-at-top
  from vsreid_jax.report.layout import write_timing  # pylint: disable=g-import-not-at-top
  from vsreid_jax.solver.algorithm3 import write_retrievals  # pylint: disable=g-import-not-at-top
  for job in jobs:
    start = time.perf_counter()
    frames = job.frames
    state = seg.init_state(frames, name=job.cache_key or job.name)
    if job.prompts is not None:
      job.prompts(seg, state)
    else:
      seg.add_mask(state, job.first_mask(), source=job.source)
    if prepare is not None:
      prepare(state, job)
    info = seg.adapt(state, progress=progress)
    overlay = job.overlay_fps > 0
    bar = tqdm.tqdm(total=len(frames), desc=job.name, unit="frame", disable=not progress, leave=False)
    with SequenceWriter(out_dir, job.name, overlay_fps=job.overlay_fps,
                        object_ids=state.object_ids if per_object else None) as writer, bar:
      for name in job.before:
        writer.write(name, np.zeros(frames.size, np.uint8))
      callback = _phase_callback(bar, job.name)
      for i, ids in seg.segment(state, callback=callback, backward=backward):
        if i == 0:
          callback("write", 0, len(frames))
        signals.check()  # a signal swallowed on the way (see signals.py) stops the run here
        writer.write(frames.names[i], ids, frames[i] if overlay else None)
        bar.update(1)
      signals.check()
      if state.result is not None:
        write_retrievals(writer.side_path("_retrievals.json"), job.name, state.result, state.object_ids)
      write_timing(writer.side_path("_timing.json"), job.name, len(frames), len(state.object_ids), state.timer,
                   time.perf_counter() - start)
    yield SequenceDone(job=job, state=state, writer=writer, adapted=info, seconds=time.perf_counter() - start)
