"""N_mp training: its Trainer (data, data-parallel steps, eval hook), run by train/fit.py.

`train(config, workdir)` runs until `config.train.steps` (or an earlier `stop_at`), saving a
checkpoint every `checkpoint_every` steps and at the end. `resume=True` restores the latest
checkpoint (state + data position) and continues exactly: the batches, the dropout randomness and
hence the parameters and the logged losses are those of an uninterrupted run. Files in workdir:
  checkpoints/   orbax, the last `keep_checkpoints` (also saved when `train.max_seconds` runs out)
  metrics.csv    step, loss (mean over the log window), bce, iou, grad_norm, lr, seconds/step, examples/s
                 (the first step of a process, which compiles, is timed apart from its window)
  eval.csv       step and whatever the eval function returns
  metrics.png    the curves (cv2)
  config.json    the config used
"""
import dataclasses
import os
import time
from typing import Callable, Dict, List, Optional

import jax
import numpy as np

from vsreid_jax import distributed
from vsreid_jax.train import propagation_examples as pe
from vsreid_jax.errors import InputError
from vsreid_jax.train import fit as fit_lib
from vsreid_jax.train import metrics as metrics_lib  # pylint: disable=unused-import  # loop.metrics_lib: tests
from vsreid_jax.train import stages
from vsreid_jax.train import state as state_lib
from vsreid_jax.train import step as step_lib

TRAIN_FIELDS = ("step", "loss", "bce", "iou", "grad_norm", "lr", "seconds", "examples_per_s")
EvalFn = Callable[[state_lib.TrainState, int], Dict[str, float]]


def global_batch_size(data, n_devices: int) -> int:
  size = data.batch_size or data.batch_per_device * n_devices
  if size <= 0 or size % n_devices:
    raise InputError(f"data.batch_size={data.batch_size}, data.batch_per_device={data.batch_per_device}: the "
                     f"global batch {size} must be a positive multiple of the {n_devices} device(s); set "
                     "data.batch_size to one (or 0 and data.batch_per_device > 0)")
  return size


@dataclasses.dataclass
class Data:
  """Where batches come from: `get_record(i)` for example i (wrapped at `num_records` if finite),
  and the fixed held-out validation records."""
  get_record: Callable[[int], dict]
  num_records: Optional[int]
  val_records: List[dict]


def make_data(config, progress: bool = True) -> Data:
  """Train/validation examples from `config.data` via tfds (array_record) or python."""
  d = config.data
  cache_dir = d.cache_dir or pe.default_cache_dir()
  train_spec, val_spec = pe.specs_from_config(d, d.crop_size, d.margin)
  if d.source == "tfds":
    from vsreid_jax.train import tfds_propagation  # pylint: disable=g-import-not-at-top
    sources = tfds_propagation.data_sources(train_spec, val_spec, d.num_train_examples, d.num_val_examples,
                                            os.path.join(cache_dir, "tfds"), cache_dir)
    train, val = sources["train"], sources["validation"]
    return Data(train.__getitem__, len(train), [val[i] for i in range(len(val))])
  if d.source == "python":
    train = pe.PropagationExamples(train_spec, cache_dir)
    val = pe.PropagationExamples(val_spec, cache_dir)
    train.precompute_flows(progress)
    val.precompute_flows(progress)
    return Data(train.example, None, [val.example(i) for i in range(d.num_val_examples)])
  raise ValueError(f"config.data.source must be 'tfds' or 'python', got {d.source!r}")


def iou_eval_fn(records: List[dict], mesh, batch_size: int) -> EvalFn:
  """Cheap validation: mean per-crop IoU of the net and of its (real-warp) prior on held-out crops.

  Not a substitute for end-to-end J&F over whole videos (errors accumulate), but it tells at once
  whether the net improves on the prior it was given.
  """
  eval_step = step_lib.make_eval_step(mesh)
  n = len(records)
  padded = records + records[-1:] * ((-n) % batch_size)  # whole batches; the copies are dropped
  batches = [pe.to_batch(padded[i:i + batch_size]) for i in range(0, len(padded), batch_size)]

  def fn(state, step):
    del step
    out = [jax.device_get(eval_step(state, distributed.shard_batch(b, mesh, batch_size))) for b in batches]
    cat = {k: np.concatenate([o[k] for o in out])[:n] for k in out[0]}
    return {k: float(v.mean()) for k, v in cat.items()}

  return fn


def init_state(config, model, tx, rng, from_stage: bool = True):
  """Random init; then, with `config.init.torch_checkpoint`, each stream's ResNet backbone from a
  torchvision-layout state_dict (ours: the flow stream takes the same ImageNet filters, its three
  input channels read as flow x, flow y, probability); then, with `from_stage` and
  `config.init.from_stage_workdir`, the streams a previous training stage trained (stages.py: the
  paper's RGB -> flow -> joint schedule)."""
  variables = state_lib.init_variables(model, rng, config.data.crop_size)
  path = config.init.get("torch_checkpoint", "")
  if path:
    from vsreid_jax.models import import_torch  # pylint: disable=g-import-not-at-top
    if not os.path.isfile(path):
      raise InputError(f"{path}: config.init.torch_checkpoint not found")
    state_dict = import_torch.load_state_dict(path)
    for stream in config.model.streams:
      variables = import_torch.import_resnet(
          variables, state_dict, prefix=(f"{stream}_stream", "backbone"),
          extra_channel_init=config.init.get("extra_channel_init", "zeros"), strict=config.init.get("strict", True))
  if from_stage and config.init.get("from_stage_workdir", ""):
    variables = stages.init_from_stage(config, variables)
  return state_lib.create_train_state(model, variables, tx)


def trainer(config, *, eval_fn: Optional[EvalFn] = None, model=None, data: Optional[Data] = None, devices=None,
            progress: bool = True) -> fit_lib.Trainer:
  """N_mp's Trainer (train/fit.py): data-parallel steps over `devices` (default: all), batches of
  consecutive example positions (`data`, default `make_data(config)`, made when first needed),
  eval_fn default `iou_eval_fn` on the held-out records."""
  t = config.train
  mesh = step_lib.make_mesh(devices)
  batch_size = global_batch_size(config.data, mesh.devices.size)
  if model is None:
    from vsreid_jax.models.propagation import build_model  # pylint: disable=g-import-not-at-top
    model = build_model(config.model)
  tx, schedule = state_lib.make_optimizer(config.optimizer, t.steps)
  rng = jax.random.key(t.seed)
  # A multi-process job: every process reads its rows of each batch.
  rows = distributed.process_rows(mesh, batch_size)
  train_step = step_lib.make_train_step(mesh, jax.random.fold_in(rng, 1),
                                        soft_iou_weight=config.loss.soft_iou_weight)
  made = {}

  def get_data() -> Data:
    if "data" not in made:
      made["data"] = data or make_data(config, progress)
    return made["data"]

  def init(restoring):
    # A resumed stage restores its own checkpoint: no need to read the previous stage's.
    state = init_state(config, model, tx, jax.random.fold_in(rng, 0), from_stage=not restoring)
    return jax.device_put(state, step_lib.replicated(mesh))

  def batches(start, position):
    del start  # the position says it all
    d = get_data()
    return pe.BatchIterator(d.get_record, batch_size, seed=config.data.seed, position=position,
                            num_records=d.num_records, augment_prob=(config.data.colour_prob, config.data.flip_prob),
                            prefetch=0, rows=rows)  # fit's prefetcher makes them ahead

  def step_fn(state, batch):
    return train_step(state, distributed.shard_batch(batch, mesh, batch_size))

  def default_eval(state, step):
    if "eval" not in made:
      made["eval"] = iou_eval_fn(get_data().val_records, mesh, batch_size)
    return made["eval"](state, step)

  return fit_lib.Trainer(init_state=init, step_fn=step_fn, batches=batches, batch_size=batch_size,
                         schedule=schedule, fields=TRAIN_FIELDS, eval_fn=eval_fn or default_eval,
                         eval_keys=("iou", "prior_iou"), prefetch=config.data.prefetch)


def train(config, workdir: Optional[str] = None, *, resume: bool = False, stop_at: Optional[int] = None,
          eval_fn: Optional[EvalFn] = None, model=None, data: Optional[Data] = None, devices=None,
          progress: bool = True):
  """Trains N_mp with train/fit.py; returns {"state", "train_rows", "eval_rows"}.

  stop_at: stop after this global step (the LR schedule still spans config.train.steps), as if
    killed there; `resume=True` later continues. eval_fn(state, step) -> {name: value} runs every
    `eval_every` steps and at the end; default `iou_eval_fn` on the held-out records.
  """
  started = time.perf_counter()  # for train.max_seconds: the whole call, data preparation included
  workdir = workdir or config.train.workdir
  if not workdir:
    raise InputError("no workdir: pass --workdir DIR (or set config.train.workdir)")
  stages.check_stage(config)
  tr = trainer(config, eval_fn=eval_fn, model=model, data=data, devices=devices, progress=progress)
  return fit_lib.fit(tr, config, workdir, resume=resume, stop_at=stop_at, progress=progress, started=started)
