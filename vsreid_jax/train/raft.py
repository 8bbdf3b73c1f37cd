"""RAFT training: the sequence loss, the jitted step, the synthetic flow batches and its Trainer,
run by train/fit.py (`experiments/train_raft.py` is the command).

Batch i is samples [i*B, (i+1)*B) of the deterministic synthetic flow set (flow/synthetic_flow.py),
so the restored state and the step count fix everything else: `resume=True` continues exactly.
`export` writes the latest checkpoint as a RAFT weights file (`RAFTFlow.from_weights`).

Loss: RAFT's sequence loss, sum_i gamma^(N-1-i) * mean endpoint error of iteration i over
valid pixels (gamma 0.8); train.loss="l1" gives torchvision's reference (mean |flow - gt|).
"""
import functools
import itertools
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from vsreid_jax.data import splits
from vsreid_jax.errors import InputError
from vsreid_jax.flow import raft, synthetic_flow
from vsreid_jax.models import weights as weights_lib
from vsreid_jax.train import checkpoint as ckpt_lib
from vsreid_jax.train import fit
from vsreid_jax.train import state as state_lib

TRAIN_FIELDS = ("step", "loss", "epe", "grad_norm", "lr", "seconds")
DEFAULT_DAVIS = str(splits.shared_data_dir() / "davis2016-train")
# Sample indices of the held-out set: far beyond anything training reaches.
EVAL_OFFSET = 10 ** 9


def sequence_loss(preds, flow_gt, valid, gamma: float, kind: str = "epe", max_gt_flow: float = 400.0):
  """preds [N,B,H,W,2] (one per iteration), flow_gt [B,H,W,2], valid [B,H,W] -> (loss, last EPE)."""
  if kind not in ("epe", "l1"):
    raise ValueError(f"unknown train.loss {kind!r}; use epe or l1")
  valid = valid & (jnp.linalg.norm(flow_gt, axis=-1) < max_gt_flow)
  diff = preds - flow_gt
  # The epsilon keeps the gradient of the norm finite at a perfect prediction.
  epe = jnp.sqrt(jnp.sum(diff ** 2, -1) + 1e-12)
  per_pixel = epe if kind == "epe" else jnp.abs(diff).mean(-1)
  count = jnp.maximum(valid.sum(), 1)
  per_iter = jnp.sum(per_pixel * valid, axis=(1, 2, 3)) / count
  n = preds.shape[0]
  weights = gamma ** jnp.arange(n - 1, -1, -1, dtype=jnp.float32)
  return jnp.sum(weights * per_iter), jnp.sum(epe[-1] * valid) / count


def make_train_step(model, t):
  """jit(step): RAFT on normalised frames, all iterations, sequence loss, optimiser update."""

  def step(state, batch):
    def loss_fn(params):
      variables = {"params": params}
      mutable = False
      if state.batch_stats:  # raft_large's context encoder
        variables["batch_stats"], mutable = state.batch_stats, ["batch_stats"]
      out = model.apply(variables, raft.normalize(batch["frame_a"]), raft.normalize(batch["frame_b"]),
                        t.num_iters, train=True, all_predictions=True, mutable=mutable)
      preds, updates = out if mutable else (out, {})
      loss, epe = sequence_loss(preds, batch["flow"], batch["valid"], t.gamma, t.loss, t.max_gt_flow)
      return loss, (epe, updates.get("batch_stats", state.batch_stats))

    (loss, (epe, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    return state, dict(loss=loss, epe=epe, grad_norm=optax.tree.norm(grads))

  return jax.jit(step, donate_argnums=0)


def make_dataset(config, davis_root=None) -> synthetic_flow.SyntheticFlowSet:
  """davis_root: a DAVIS-layout root; "" for generated textures; None: the config's (or textures
  when that is absent)."""
  t = config.train
  root = davis_root if davis_root is not None else (t.davis_root or DEFAULT_DAVIS)
  if not os.path.isdir(root):
    root = None  # generated textures
  if t.height % raft.DOWNSAMPLE or t.width % raft.DOWNSAMPLE:
    raise InputError(f"train.height/width {t.height}x{t.width} must be multiples of {raft.DOWNSAMPLE}")
  return synthetic_flow.SyntheticFlowSet(root, t.height, t.width, max_flow=t.max_flow, seed=t.data_seed,
                                         size=2 * EVAL_OFFSET, crop_scale=tuple(t.crop_scale))


def get_batch(dataset, start: int, size: int) -> dict:
  a, b, flow, valid = dataset.batch(range(start, start + size))
  return dict(frame_a=a, frame_b=b, flow=flow, valid=valid)


@functools.lru_cache(maxsize=4)
def _components(model_json: str, optimizer_json: str, train_json: str):
  """Model, optimiser, schedule and jitted step of one config, kept for the process: the step's
  jit cache keys on the optimiser object (a static field of TrainState), so a second run in the
  same process (a resume, a test) reuses the compiled step only with the same objects."""
  config = ml_collections.ConfigDict(dict(model=json.loads(model_json), optimizer=json.loads(optimizer_json),
                                          train=json.loads(train_json)))
  model = raft.model_from_config(config.model)
  tx, schedule = state_lib.make_optimizer(config.optimizer, config.train.steps)
  return model, tx, schedule, make_train_step(model, config.train)


def make_evaluate(model, num_iters: int):
  """evaluate(state, batch) -> mean EPE of the final flow (inference mode, `num_iters` updates)."""
  forward = jax.jit(lambda v, a, b: model.apply(v, raft.normalize(a), raft.normalize(b), num_iters))

  def evaluate(state, batch):
    variables = {"params": state.params, **({"batch_stats": state.batch_stats} if state.batch_stats else {})}
    flows = np.asarray(forward(variables, batch["frame_a"], batch["frame_b"]))
    return float(np.mean([synthetic_flow.epe(f, g, v) for f, g, v in zip(flows, batch["flow"], batch["valid"])]))

  return evaluate


def trainer(config, davis_root=None) -> fit.Trainer:
  """RAFT's Trainer (vsreid_jax/train/fit.py): batch i is samples [i*B, (i+1)*B) of the
  deterministic synthetic set; one device."""
  t = config.train
  model, tx, schedule, step_fn = _components(config.model.to_json(), config.optimizer.to_json(), t.to_json())
  dataset = make_dataset(config, davis_root)
  evaluate = make_evaluate(model, config.num_iters)
  made = {}

  def init(restoring):
    del restoring
    variables = raft.init_variables(model, seed=t.seed, height=max(t.height, 128), width=max(t.width, 128))
    state = state_lib.create_train_state(model, variables, tx)
    # One signature for fresh, stepped and restored states (a Python-int step or uncommitted
    # arrays would each compile the step again).
    return jax.device_put(state.replace(step=jnp.asarray(0, jnp.int32)), jax.devices()[0])

  def batches(start, position):
    del position  # a function of the step (position = step * batch_size while the batch size stays)
    for s in itertools.count(start):
      yield get_batch(dataset, s * t.batch_size, t.batch_size)

  def eval_fn(state, step):
    del step
    if "batch" not in made:
      made["batch"] = get_batch(dataset, EVAL_OFFSET, t.eval_samples)
    return {"epe": evaluate(state, made["batch"])}

  return fit.Trainer(init_state=init, step_fn=step_fn, batches=batches, batch_size=t.batch_size, schedule=schedule,
                     fields=TRAIN_FIELDS, eval_fn=eval_fn if t.eval_samples else None, eval_fields=("step", "epe"),
                     plot_keys=("loss", "epe"), eval_keys=("epe",), desc="train raft")


def build(config):
  """Model, fresh train state (deterministic numpy init), LR schedule and jitted step."""
  t = config.train
  model, tx, schedule, step_fn = _components(config.model.to_json(), config.optimizer.to_json(), t.to_json())
  variables = raft.init_variables(model, seed=t.seed, height=max(t.height, 128), width=max(t.width, 128))
  return model, state_lib.create_train_state(model, variables, tx), schedule, step_fn


def train(config, workdir, *, resume: bool = False, stop_at=None, davis_root=None, progress: bool = True):
  """Trains per config.train with vsreid_jax/train/fit.py; returns {"state", "train_rows", "eval_rows"}."""
  return fit.fit(trainer(config, davis_root), config, workdir, resume=resume, stop_at=stop_at, progress=progress)


def export(config, workdir, path) -> int:
  """Writes the latest checkpoint's variables as a RAFT weights file (`RAFTFlow.from_weights`);
  returns its step."""
  variables, step = load_variables(config, workdir)
  weights_lib.save_weights(path, variables, config.variant, meta=dict(step=step), config=config, kind="raft")
  return step


def load_variables(config, workdir):
  """Flax variables of the latest checkpoint in workdir (for RAFTFlow)."""
  _, state, _, _ = build(config)
  ckpt = ckpt_lib.Checkpointer(os.path.join(os.path.abspath(workdir), "checkpoints"))
  try:
    if ckpt.latest_step() is None:
      raise InputError(f"{workdir}: no checkpoints")
    state, data_state = ckpt.restore(state)
  finally:
    ckpt.close()
  variables = {"params": state.params}
  if state.batch_stats:
    variables["batch_stats"] = state.batch_stats
  return variables, int(data_state["step"])
