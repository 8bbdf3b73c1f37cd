"""Training examples for N_mp, cut with the same crop functions inference uses.

One example is (sequence, frame i >= 1, object id): crops at S x S of frame i's image, the DIS
flow i -> i-1 (rescaled to crop pixels), a prior probability of the object on frame i, and the
GT of frame i. The box is that of prior > 0.5 (as in Algorithm 1), enlarged by the margin with
a random jitter. The prior is, with configurable probabilities:
  warp:  GT of frame i-1 warped onto frame i by the real DIS flow (what inference sees),
  deform: a simulated deformation of GT i (MaskTrack-style, `augment.deform_mask`),
  skip:  GT of frame i-k, k in 2..max_skip, warped over k steps (warp-only drift, harder).

Example `index` is a pure function of (spec, index), so a data position is one integer; the
tfds builder (`tfds_propagation.py`) materialises indices 0..N-1 of the same function.
Records store crops compactly (image/prior/target uint8, flow float16); `to_batch` decodes.
"""
import concurrent.futures
import collections
import functools
import hashlib
import json
import os
import shutil
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from vsreid_jax.data import augment
from vsreid_jax.data import occlusion
from vsreid_jax.data import training_sets
from vsreid_jax.data.davis import DavisDataset
from vsreid_jax.data.palette import VOID_ID
from vsreid_jax.errors import InputError
from vsreid_jax import flow as flow_lib
from vsreid_jax.flow.cache import FlowCache
from vsreid_jax.flow.warp import warp
from vsreid_jax import geometry

PRIOR_KINDS = ("warp", "deform", "skip")
KEYS = ("image", "flow", "prior", "target")
# Independent random streams per example index: example sampling and online augmentation.
_EXAMPLE_STREAM, _AUGMENT_STREAM = 0, 1


def default_cache_dir() -> str:
  return os.path.join(os.path.expanduser("~"), ".cache", "vsreid_jax")


def make_spec(roots: Sequence[Tuple[str, str]], sequences: Sequence[Tuple[int, str]], *, crop_size: int,
              margin: float, margin_jitter: float = 0.0, prior_probs=(1.0, 0.0, 0.0), max_skip: int = 4,
              flow: str = flow_lib.DEFAULT, flow_weights: str = "", seed: int = 0,
              deform: Optional[dict] = None) -> dict:
  """Everything that determines the examples, JSON-able (its hash names the tfds config).

  `roots`: (path, resolution) of DAVIS-layout roots, or the entries of `training_sets.DatasetSpec.root_entry`
  (path, "", "youtube-vos") for YouTube-VOS-layout roots; `sequences`: (root index, sequence name).
  """
  flow_lib.check_name(flow, "config.data.flow")
  probs = np.asarray(prior_probs, np.float64)
  if probs.shape != (3,) or (probs < 0).any() or probs.sum() <= 0:
    raise ValueError(f"prior_probs must be 3 non-negative weights {PRIOR_KINDS}, got {prior_probs}")
  return dict(roots=[[os.path.abspath(os.fspath(r[0]))] + list(r[1:]) for r in roots],
              sequences=[[int(i), s] for i, s in sequences], crop_size=int(crop_size), margin=float(margin),
              margin_jitter=float(margin_jitter), prior_probs=[float(p) for p in probs / probs.sum()],
              max_skip=int(max_skip), flow=flow, flow_weights=flow_weights, seed=int(seed),
              deform=dict(deform or {}))


def spec_hash(*specs) -> str:
  return hashlib.sha1(json.dumps(specs, sort_keys=True).encode()).hexdigest()[:12]


def specs_from_config(data, crop_size: int, margin: float) -> Tuple[dict, dict]:
  """(train spec, held-out validation spec) from a `config.data` ConfigDict.

  With `data.datasets` / `data.val_datasets` (data/training_sets.py: `davis:ROOT[:RES[:SET]]`,
  `youtube-vos:ROOT`): train on the sequences of the first, validate on those of the second.
  Without (the default): every sequence of each of `data.roots`' `train.txt` in `data.data_dir`
  not in `data.held_out` trains, the held-out ones in `data.validate_on` validate (all held-out ones
  when none is listed); `data.synthetic` adds clips composed from those training sequences
  (`synthetic_clips`). Train examples use the prior mix of `data.prior_probs`; validation ones
  real-warp priors only, no margin jitter.
  """
  common = dict(crop_size=crop_size, margin=margin, max_skip=data.max_skip, flow=data.flow,
                flow_weights=data.flow_weights,
                deform=data.deform.to_dict())
  if data.get("datasets", ()) or data.get("val_datasets", ()):
    if data.get("synthetic", ()):
      raise InputError("config.data.synthetic composes clips from the default DAVIS-2016 split; with --dataset, "
                       "build them with experiments/make_occlusion_benchmark.py --sources and name the folder "
                       "as one more --dataset davis:FOLDER:240p:occlusion")
    roots, train_seqs, val_seqs = _named_datasets(data)
  else:
    roots, train_seqs, val_seqs = _default_split(data)
  train = make_spec(roots, train_seqs, margin_jitter=data.margin_jitter, prior_probs=data.prior_probs,
                    seed=data.seed, **common)
  val = make_spec(roots, val_seqs or train_seqs[:1], margin_jitter=0.0, prior_probs=(1.0, 0.0, 0.0),
                  seed=data.seed + 1, **common)
  return train, val


def _named_datasets(data):
  """Roots and (root index, sequence) lists of `data.datasets` (train) and `data.val_datasets`
  (validation), strings of training_sets.parse."""
  if not data.datasets or not data.val_datasets:
    raise InputError(f"config.data.datasets={tuple(data.datasets)}, val_datasets={tuple(data.val_datasets)}: "
                     "name both the training and the validation datasets (--dataset ... --val-dataset ...), "
                     "or neither for the default DAVIS-2016 split")
  return training_sets.split(data.datasets, data.val_datasets)


def _default_split(data):
  """The DAVIS-2016 roots in `data.data_dir` (`data.roots`) with `data.held_out` left out of training."""
  if not data.data_dir:
    raise InputError("config.data.data_dir is empty: set it to the folder holding the DAVIS roots "
                     "(experiments/train_propagation.py defaults it to ../shared/data)")
  roots, train_seqs, val_seqs = [], [], []
  for i, (name, resolution) in enumerate(data.roots):
    path = os.path.join(data.data_dir, name)
    roots.append((path, resolution))
    for seq in DavisDataset(path, resolution).sequences(data.subset):
      (val_seqs if seq in data.held_out else train_seqs).append((i, seq))
  if not train_seqs:
    raise InputError(f"no training sequences left in {data.data_dir} after holding out {data.held_out}")
  chosen = [(i, seq) for i, seq in val_seqs if seq in data.get("validate_on", ())]
  val_seqs = chosen or val_seqs
  sources = [seq for _, seq in train_seqs]
  for entry in data.get("synthetic", ()):
    path = synthetic_clips(data, sources, *entry)
    roots.append((path, occlusion.RESOLUTION))
    train_seqs.extend((len(roots) - 1, seq) for seq in DavisDataset(path, occlusion.RESOLUTION).sequences(occlusion.SUBSET))
  return roots, train_seqs, val_seqs


def synthetic_clips(data, sources: Sequence[str], kind: str, clips: int, frames: int, seed: int) -> str:
  """The folder of `clips` synthetic occlusion clips of `frames` frames (`occlusion.build_benchmark`
  of `kind` and `seed`) composed from the training `sources` of `data.data_dir`, built once under
  <cache_dir>/synthetic (into a temporary folder renamed when whole) and reused."""
  if kind not in occlusion.KINDS:
    raise InputError(f"config.data.synthetic: kind {kind!r}; choose one of {', '.join(occlusion.KINDS)}")
  key = spec_hash(os.path.abspath(data.data_dir), list(map(list, data.roots)), list(sources))[:8]
  path = os.path.join(data.get("cache_dir") or default_cache_dir(), "synthetic",
                      f"{kind}-{int(clips)}x{int(frames)}-seed{int(seed)}-{key}")
  if os.path.isfile(os.path.join(path, "info.json")):
    return path
  tmp = f"{path}.tmp{os.getpid()}"
  shutil.rmtree(tmp, ignore_errors=True)
  try:
    occlusion.build_benchmark(tmp, data.data_dir, list(sources), int(seed), int(clips), int(frames),
                              roots=[tuple(r) for r in data.roots], subset=data.subset, kind=kind)
  except (ValueError, RuntimeError) as e:
    shutil.rmtree(tmp, ignore_errors=True)
    raise InputError(f"config.data.synthetic ({kind!r}, {clips}, {frames}, {seed}): {e}") from None
  try:
    os.rename(tmp, path)
  except OSError:  # another process finished the same clips first: theirs are the same
    shutil.rmtree(tmp, ignore_errors=True)
  return path


@functools.partial(jax.jit, static_argnames=("size",))
def crop_example(image, flow, prior, target, margin, *, size):
  """Crops like `algorithm1.crop_stage`: the box of prior > 0.5 (of the target when the prior is
  empty), enlarged by `margin` (a traced scalar, so jitter does not recompile)."""
  h, w = prior.shape
  box, valid = geometry.mask_box(prior)
  target_box, _ = geometry.mask_box(target)
  box = geometry.enlarge_box(jnp.where(valid, box, target_box), margin, h, w)
  return (geometry.crop_resize(image, box, size), geometry.crop_flow(flow, box, size),
          geometry.crop_resize(prior[..., None], box, size), geometry.crop_resize(target[..., None], box, size), box)


def to_record(image, flow, prior, target) -> Dict[str, np.ndarray]:
  """Float crops -> the stored form (uint8 image and probabilities, float16 flow)."""
  q = lambda p: np.round(np.clip(np.asarray(p), 0, 1) * 255).astype(np.uint8)
  return dict(image=np.round(np.clip(np.asarray(image), 0, 255)).astype(np.uint8),
              flow=np.asarray(flow).astype(np.float16), prior=q(prior), target=q(target))


def to_batch(records: Sequence[Dict[str, np.ndarray]]) -> Dict[str, np.ndarray]:
  """Stacks records into float32 arrays: image 0..255, flow in crop pixels, prior/target 0..1."""
  stack = lambda k: np.stack([r[k] for r in records]).astype(np.float32)
  return dict(image=stack("image"), flow=stack("flow"), prior=stack("prior") / 255.0,
              target=stack("target") / 255.0)


class PropagationExamples:
  """Example generator over the sequences of a spec (see `make_spec`)."""

  def __init__(self, spec: dict, cache_dir: Optional[str] = None):
    self.spec = spec
    self.cache_dir = os.path.join(cache_dir or default_cache_dir(), "flow")
    self.datasets = [training_sets.open_root(entry) for entry in spec["roots"]]
    self.sequences = [tuple(s) for s in spec["sequences"]]
    self.deform = augment.DeformConfig(**{k: tuple(v) if isinstance(v, list) else v
                                          for k, v in spec["deform"].items()})
    self.backend = flow_lib.get(spec["flow"], spec["flow_weights"])
    self._frames = {}
    # Object ids present per frame, and the (sequence, frame, object) items to sample from.
    self.ids: List[List[frozenset]] = []
    self.items = []
    for s, (r, seq) in enumerate(self.sequences):
      names = self.frames(s).names
      # Every id of a frame is one object (multi-object DAVIS 2017 / YouTube-VOS masks); void is none.
      ids = [frozenset(int(v) for v in np.unique(self.datasets[r].annotation(seq, n)) if v not in (0, VOID_ID))
             for n in names]
      self.ids.append(ids)
      self.items += [(s, i, k) for i in range(1, len(names)) for k in sorted(ids[i - 1])]
    if not self.items:
      raise InputError(f"no (frame, object) pairs to train on in {[seq for _, seq in self.sequences]}: no object "
                       "on two consecutive annotated frames (a YouTube-VOS root to train on needs a mask at every "
                       "frame, as its train split has)")

  def frames(self, s):
    if s not in self._frames:
      r, seq = self.sequences[s]
      self._frames[s] = self.datasets[r].frames(seq)
    return self._frames[s]

  def _flow_cache(self, s) -> FlowCache:
    # A fresh cache object per use: flows come from disk, memory does not grow with the dataset.
    r, seq = self.sequences[s]
    return FlowCache(self.frames(s), self.backend, self.cache_dir, key=training_sets.flow_key(self.datasets[r], seq))

  def precompute_flows(self, progress: bool = True) -> None:
    """Computes (or finds on disk) every backward flow i -> i-1 once."""
    import tqdm  # pylint: disable=g-import-not-at-top
    total = sum(len(self.frames(s)) - 1 for s in range(len(self.sequences)))
    with tqdm.tqdm(total=total, desc="flow", disable=not progress) as bar:
      for s in range(len(self.sequences)):
        cache = self._flow_cache(s)
        for i in range(1, len(self.frames(s))):
          cache.get(i, i - 1)
          bar.update()

  def gt(self, s, i, k) -> np.ndarray:
    r, seq = self.sequences[s]
    return (self.datasets[r].annotation(seq, self.frames(s).names[i]) == k).astype(np.float32)

  def warped_prior(self, s, j, i, k):
    """GT of frame j carried to frame i > j by warping with the flow, one frame at a time."""
    cache = self._flow_cache(s)
    prob = jnp.asarray(self.gt(s, j, k))[None]
    for t in range(j + 1, i + 1):
      prob = warp(prob, jnp.asarray(cache.get(t, t - 1)))
    return prob[0], cache.get(i, i - 1)

  def example(self, index: int) -> Dict[str, np.ndarray]:
    """The record of example `index` plus `kind` (index into PRIOR_KINDS) and `index`."""
    spec = self.spec
    rng = np.random.default_rng([spec["seed"], _EXAMPLE_STREAM, index])
    for _ in range(100):
      s, i, k = self.items[int(rng.integers(len(self.items)))]
      kind = int(rng.choice(3, p=spec["prior_probs"]))
      target = self.gt(s, i, k)
      if PRIOR_KINDS[kind] == "deform":
        prior, flow = augment.deform_mask(target, rng, self.deform), self._flow_cache(s).get(i, i - 1)
      else:
        j = i - 1
        if PRIOR_KINDS[kind] == "skip" and i >= 2:
          j = i - int(rng.integers(2, min(spec["max_skip"], i) + 1))
          if k not in self.ids[s][j]:
            j = i - 1
        kind = PRIOR_KINDS.index("skip" if j < i - 1 else "warp")
        prior, flow = self.warped_prior(s, j, i, k)
      if np.asarray(prior).max() <= 0.5 and not target.any():
        continue  # nothing to crop around; draw again from the same stream
      margin = max(spec["margin"] + rng.uniform(-1, 1) * spec["margin_jitter"], 0.0)
      image = jnp.asarray(self.frames(s)[i], jnp.float32)
      img_c, flow_c, prior_c, target_c, _ = crop_example(image, jnp.asarray(flow), jnp.asarray(prior),
                                                         jnp.asarray(target), margin, size=spec["crop_size"])
      record = to_record(img_c, flow_c, prior_c, target_c)
      record.update(kind=np.int64(kind), index=np.int64(index))
      return record
    raise InputError(f"example {index}: no usable (frame, object) pair after 100 draws; are the masks empty?")


def augment_record(record: Dict[str, np.ndarray], seed: int, index: int, colour_prob: float,
                   flip_prob: float) -> Dict[str, np.ndarray]:
  """Online colour jitter + flip, a pure function of (seed, index)."""
  rng = np.random.default_rng([seed, _AUGMENT_STREAM, index])
  return augment.augment_crops({k: record[k] for k in KEYS}, rng, colour_prob, flip_prob)


class BatchIterator:
  """Batches of `get_record(i)` for consecutive example positions, prefetched in a thread.

  `position` (examples consumed so far) is the whole iterator state: batch b holds positions
  [b * B, (b + 1) * B), each augmented by a function of (seed, position) only, so a restored
  position continues exactly. `num_records` wraps positions onto a finite record set.
  `rows=(a, b)` reads only rows a..b-1 of every batch of `batch_size` (this process's share of the
  global batch in a multi-process job, vsreid_jax/distributed.py); `position` still counts whole
  batches, so every process holds the same iterator state.
  """

  def __init__(self, get_record: Callable[[int], dict], batch_size: int, *, seed: int = 0, position: int = 0,
               num_records: Optional[int] = None, augment_prob=(0.8, 0.5), prefetch: int = 2,
               rows: Optional[Tuple[int, int]] = None):
    self.get_record = get_record
    self.rows = rows or (0, batch_size)
    self.batch_size = batch_size
    self.seed = seed
    self.position = position
    self.num_records = num_records
    self.colour_prob, self.flip_prob = augment_prob
    self.prefetch = prefetch
    self._pool = concurrent.futures.ThreadPoolExecutor(1) if prefetch > 0 else None
    self._pending = collections.deque()

  def _make(self, start):
    records = []
    for p in range(start + self.rows[0], start + self.rows[1]):
      record = self.get_record(p % self.num_records if self.num_records else p)
      if self.colour_prob > 0 or self.flip_prob > 0:
        record = augment_record(record, self.seed, p, self.colour_prob, self.flip_prob)
      records.append(record)
    return to_batch(records)

  def __iter__(self):
    return self

  def __next__(self) -> Dict[str, np.ndarray]:
    if self._pool is None:
      batch = self._make(self.position)
    else:
      # Keep `prefetch` batches in flight, scheduled strictly in position order.
      next_start = self.position + len(self._pending) * self.batch_size
      while len(self._pending) < self.prefetch + 1:
        self._pending.append(self._pool.submit(self._make, next_start))
        next_start += self.batch_size
      batch = self._pending.popleft().result()
    self.position += self.batch_size
    return batch

  def state(self) -> dict:
    return {"position": int(self.position)}

  def close(self):
    if self._pool is not None:
      for f in self._pending:
        f.cancel()
      self._pool.shutdown(wait=True)
      self._pool = None
      self._pending.clear()
