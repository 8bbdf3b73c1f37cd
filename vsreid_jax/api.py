"""A small Python API for notebooks, in the spirit of SAM 2's video predictor.

    seg = Segmenter()                                  # default config and net
    state = seg.init_state("path/to/frames_or_video")
    seg.add_mask(state, first_frame_ids)               # uint8 [H, W], ids 1..K
    seg.adapt(state)                                   # optional: config.online_steps > 0
    for frame_index, ids in seg.segment(state):        # uint8 [H, W] per frame
        ...

`segment` runs the configured method: "vsreid" (Algorithm 3: propagation, then re-identification
of lost objects with the detector and ReID nets, recovery and re-propagation) or "propagate"
(Algorithm 1 only, streamed frame by frame: `propagate`).

`segment_dataset(seg, jobs, out_dir)` segments many videos and writes each one's results as
`vsreid segment` does; the CLI and the experiments call it, and are thin shells over this.
"""
import dataclasses
import functools
import os
import time
from typing import Callable, Iterable, Iterator, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vsreid_jax.configs import segment as segment_config
from vsreid_jax.data.frames import open_frames
from vsreid_jax.data.palette import VOID_ID
from vsreid_jax.data.results import sequence_name
from vsreid_jax import memory
from vsreid_jax.flow import prefetch
from vsreid_jax.data.frames import ResizedFrames, open_frames, resize_ids
from vsreid_jax.errors import InputError
from vsreid_jax import flow as flow_lib
from vsreid_jax.flow.cache import FlowCache
from vsreid_jax.models import weights
from vsreid_jax.models.propagation import build_model, dummy_inputs, make_propagation_fn
from vsreid_jax.propagation.algorithm1 import PropagationConfig, Propagator, object_bucket, pad_objects
from vsreid_jax.propagation.nets import identity_net, with_flip_average
from vsreid_jax.solver.merge import merge_probs, merge_to_ids
from vsreid_jax.utils import StageTimer


@dataclasses.dataclass
class VideoState:
  frames: object  # a FolderFrames / VideoFrames sequence
  flows: FlowCache
  name: str
  object_ids: Optional[np.ndarray] = None  # [K] uint8 ids in the first mask
  first_prob: Optional[np.ndarray] = None  # [Kb, H, W] float32 one-hot of the first mask
  first_area: Optional[np.ndarray] = None  # [Kb] pixels per object in the first mask
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


class SwappableNet:
  """A learned N_mp whose variables are an argument of its jitted function, so that each video can
  run its own (online-adapted) variables without recompiling: `net.variables = ...` swaps them.

  Calls like a net fn (image, flow, prob) -> logits; `jitted(variables, image, flow, prob)` is the
  compiled function (flip-averaged when `flip`), what `utils.jit_cache_size` counts.
  """

  def __init__(self, model, variables, flip: bool, config_name: str, model_config: ml_collections.ConfigDict):
    self.model, self.config_name, self.model_config = model, config_name, model_config
    base = make_propagation_fn(model, variables).jitted
    if flip:
      self.jitted = jax.jit(lambda v, image, flow, prob: with_flip_average(functools.partial(base, v))(image, flow, prob))
    else:
      self.jitted = base
    # On the device once (not with every call); uncommitted like the loaded numpy arrays.
    self.base_variables = jax.device_put(variables)
    self.variables, self._source = self.base_variables, None

  def use(self, variables: Optional[dict]) -> None:
    """Runs with `variables` from now on; None: the base (loaded) variables."""
    if variables is not self._source:  # called every frame: transfer only on a change
      self._source = variables
      self.variables = self.base_variables if variables is None else jax.device_put(variables)

  def __call__(self, image, flow, prob):
    return self.jitted(self.variables, image, flow, prob)


def build_net(name: str, flip: Optional[bool], streams: Optional[Tuple[str, ...]] = None):
  """Resolves "identity", "default" (the shipped weights) or a weights file to a jitted N_mp.

  `streams`: run only these of the net's streams, e.g. ("rgb",) for the single-stream ablation
  (the two-stream weights with the flow stream left out; None: all).
  Returns (net fn, the net's model ConfigDict, None for identity): its crop size, margin and
  test-time settings are the defaults of propagation.
  """
  if name == "identity":
    return identity_net, None  # flipping the identity changes nothing
  path = weights.DEFAULT_WEIGHTS if name == "default" else name
  w = weights.load_net_weights(path, "propagation")
  try:
    model_cfg = w.config or weights.model_config(w.name)
  except InputError as e:
    raise InputError(f"{path}: {e}") from None
  # A single-stream net (e.g. trained with `vsreid train --stage rgb`) brings only its streams.
  trained = tuple(s for s in model_cfg.model.streams if f"{s}_stream" in w.variables.get("params", {}))
  if streams and not set(streams) <= set(trained):
    raise InputError(f"{path}: has no {' / '.join(sorted(set(streams) - set(trained)))} stream (it has "
                     f"{', '.join(trained)}); use a net trained with those streams")
  model_cfg.model.streams = trained
  init = functools.partial(build_model(model_cfg.model).init, train=False)
  weights.check_variables(path, w.variables, jax.eval_shape(init, jax.random.key(0), *dummy_inputs(model_cfg.crop_size)),
                          w.name)
  if streams:
    model_cfg.model.streams = tuple(streams)
  fn = SwappableNet(build_model(model_cfg.model), w.variables, model_cfg.test_flip if flip is None else flip,
                    w.name, model_cfg)
  return fn, model_cfg


def net_scales(model_cfg: ml_collections.ConfigDict) -> Tuple[Tuple[float, int], ...]:
  """The net's own test scale: ((its crop margin, its crop size),), what it was trained on."""
  return ((float(model_cfg.crop_margin), int(model_cfg.crop_size)),)


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
                           threshold=p.threshold, lost_ratio=p.lost_ratio, binarize_prior=bool(binarize))


class Segmenter:
  """Semi-supervised multi-object video segmentation with the configured method: "vsreid"
  (Algorithm 3: propagation, re-identification of lost objects, recovery) or "propagate"
  (Algorithm 1 only)."""

  def __init__(self, config: Optional[ml_collections.ConfigDict] = None, flow_cache_dir: Optional[str] = None):
    self.config = config or segment_config.get_config()
    self.flow_backend = flow_lib.get(self.config.flow, self.config.flow_weights)
    net, model_cfg = build_net(self.config.net, self.config.flip, self.config.get("streams"))
    self.propagator = Propagator(net, propagation_config(self.config, model_cfg))
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
                        motion_sigma=float(s.motion_sigma), template_refresh=int(s.template_refresh),
                        recovery_guard=bool(s.recovery_guard), merge=str(s.merge),
                        prefetch=bool(self.config.get("prefetch", True)))

  @property
  def can_adapt(self) -> bool:
    """Whether the net has weights to adapt online (not the identity)."""
    return isinstance(self.propagator.net, SwappableNet)

  def adapt(self, state: VideoState, progress: bool = False) -> Optional[dict]:
    """Online adaptation: fine-tunes a copy of the net on synthetic pairs made from the first frame
    and its masks (`train/online.py`) for `config.online_steps` steps; the video then propagates
    with the adapted variables (the base weights are untouched). Returns the adaptation info
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
    self.adapter = online.cached_adapter(net.model, cfg, int(net.model_config.crop_size),
                                         float(net.model_config.crop_margin), net.model_config.to_json())
    k = len(state.object_ids)
    state.variables, info = self.adapter.adapt(net.base_variables, state.frames[0], state.first_prob[:k],
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
                               "base": self.config.net}, config=net.model_config, kind="propagation")

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

  def add_mask(self, state: VideoState, mask: np.ndarray, source: str = "first-frame mask") -> None:
    """Sets the first frame's objects from an id mask [H, W] (0 background, ids 1..254; 255 is void,
    pixels to ignore as in DAVIS: no object, treated as background)."""
    mask = np.asarray(mask)
    h, w = state.input_size or state.frames.size
    if mask.shape != (h, w):
      raise InputError(f"{source}: mask is {mask.shape[1]}x{mask.shape[0]} but the frames are {w}x{h}; "
                       "resize the mask with nearest-neighbour interpolation to the frame size")
    mask = resize_ids(mask, state.frames.size)  # config.max_size: the mask follows the frames
    ids = np.unique(mask)
    ids = ids[(ids != 0) & (ids != VOID_ID)].astype(np.uint8)  # void is no object, as in DAVIS
    if ids.size == 0:
      what = "background and void (255)" if np.any(mask == VOID_ID) else "background"
      raise InputError(f"{source}: mask is empty (all {what}); draw at least one object with an id in 1..254")
    kb = object_bucket(len(ids), self.propagator.config.object_buckets)
    memory.check_crop(self.propagator.config.scales, kb, self.config.propagation.crop_bytes_per_pixel)
    onehot = (mask[None] == ids[:, None, None]).astype(np.float32)
    state.object_ids = ids
    state.first_prob = pad_objects(onehot, kb)
    state.first_area = state.first_prob.sum(axis=(1, 2))

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

  def segment(self, state: VideoState, progress: bool = False, callback=None) -> Iterator[Tuple[int, np.ndarray]]:
    """Yields (frame index, id mask uint8 [H, W]) for every frame with the configured method.

    "vsreid" solves the whole video first (Algorithm 3 needs every frame's candidates and may
    rewrite any frame), then yields; state.result keeps its probabilities and retrieval log.
    `callback(phase, done, total)` reports that work before the first frame comes out (phases
    "propagate", "re-id"; see `solve`), so a progress bar can move meanwhile.
    """
    if self.method == "propagate":
      yield from self.propagate(state)
      return
    result = self.solve(state, progress=progress, callback=callback)
    for i in range(len(state.frames)):
      with state.timer.stage("merge", merge_probs):
        ids = result.ids(i, state.object_ids)
      yield i, self._output(state, ids)

  def solve(self, state: VideoState, progress: bool = False, reid: bool = True, callback=None):
    """Algorithm 3 on one video -> solver.algorithm3.SolveResult (also kept in state.result).
    reid=False: the same solver with no re-identification (propagation only).
    callback(phase, done, total): progress of the phases ("propagate" frames,
    "re-id" rounds)."""
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

      def tmpl():
        with state.timer.stage("embed", embedder):
          return caches.templates(embedder, state.frames[0], state.first_prob[:k])
    if isinstance(self.propagator.net, SwappableNet):
      self.propagator.net.use(state.variables)
    state.result = Solver(self.propagator, cfg).solve(
        state.frames, state.flows, state.first_prob, state.first_area, k, cands, tmpl, timer=state.timer,
        progress=progress, desc=state.name, callback=callback)
    if cands is not None and hasattr(cands, "close"):
      cands.close()
    return state.result

  def propagate(self, state: VideoState) -> Iterator[Tuple[int, np.ndarray]]:
    """Yields (frame index, id mask uint8 [H, W]) for every frame, the first included."""
    if state.object_ids is None:
      raise ValueError("call add_mask(state, mask) before propagate(state)")
    prop = self.propagator
    prob = jnp.asarray(state.first_prob)
    alive = jnp.asarray(state.first_area > 0)
    first_area = jnp.asarray(state.first_area)
    with state.timer.stage("merge", merge_probs):
      ids = merge_to_ids(prob, state.object_ids)
    yield 0, self._output(state, ids)
    with prefetch.forward(state.frames, state.flows, range(1, len(state.frames)), state.timer,
                          bool(self.config.get("prefetch", True))) as items:
      for i, image, flow in items:
        if isinstance(prop.net, SwappableNet):
          prop.net.use(state.variables)  # this video's adapted variables, or the base ones
        prob, alive, _ = prop.step(prob, image, flow, alive, first_area, state.timer)
        with state.timer.stage("merge", merge_probs):
          ids = merge_to_ids(prob, state.object_ids)
        yield i, self._output(state, ids)


@dataclasses.dataclass
class SequenceJob:
  """One video of `segment_dataset`, segmented into OUT/<name>/."""
  name: str  # the results folder's name: OUT/<name>/<frame>.png
  frames: object  # opened frames (data/frames.py), the prompt's frame first
  # -> the prompt's id mask, uint8 [H, W] at the frames' input size; called when the video's turn comes.
  first_mask: Callable[[], np.ndarray]
  source: str = "first-frame mask"  # what an error about the mask names (its file)
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
                    progress: bool = False,
                    prepare: Optional[Callable[[VideoState, SequenceJob], None]] = None) -> Iterator[SequenceDone]:
  """Segments videos one after another with `seg`'s method and writes each one's results.

  Per job: `init_state`, `add_mask(job.first_mask())`, `prepare(state, job)`, online adaptation
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
      for i, ids in seg.segment(state, callback=callback):
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
