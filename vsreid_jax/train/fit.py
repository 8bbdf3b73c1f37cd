"""One training loop for every net: `fit(trainer, config, workdir)`.

A net's trainer (`Trainer`) says how to make a fresh state, how to take one step and which batch
each step gets; `fit` does the rest, the same way for N_mp (train/loop.py), the detector
(detection/train.py), the ReID net (reid/train.py) and RAFT (train/raft.py):
  workdir        `checkpoints/` (orbax: state + data position), `metrics.csv`, `eval.csv`,
                 `metrics.png`, `config.json`, `tensorboard/`
  exact resume   `resume=True` restores the newest checkpoint (state, and the examples consumed) and
                 continues as if never stopped: the batches are a function of the step (or of the
                 example position), so parameters and logged losses equal an uninterrupted run's;
                 rows a killed run logged after its checkpoint are dropped
  schedule       every `config.train.log_every` steps a CSV row (metrics averaged over the window),
                 every `eval_every` the trainer's eval, every `checkpoint_every` a checkpoint, every
                 `plot_every` the PNG; each also at the last step of the call (`stop_at` or `steps`)
  max_seconds    `config.train.max_seconds` > 0: stop with a checkpoint once the call has run that
                 long (counted from `started`); `resume=True` continues the same schedule
  Ctrl-C         SIGINT / SIGTERM (`signals.Interrupted`, a KeyboardInterrupt) save a checkpoint of
                 the last whole step, then the interrupt goes on up (exit 130 / 143 from the CLI)
  NaN guard      every logged row and every step before a checkpoint is checked: a non-finite
                 metric (loss, grad_norm, ...) stops the run with `Diverged` (a one-line error) and
                 saves nothing after it, so the last checkpoint is the last good state
  prefetch       batches are made `trainer.prefetch` steps ahead on one thread (flow/prefetch.py)
In a multi-process job every process runs this; process 0 alone writes the logs and the plot.
"""
import dataclasses
import os
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import jax
import numpy as np
import tqdm

from vsreid_jax import distributed
from vsreid_jax import signals
from vsreid_jax.flow import prefetch as prefetch_lib
from vsreid_jax.errors import InputError
from vsreid_jax.train import checkpoint as ckpt_lib
from vsreid_jax.train import metrics as metrics_lib

EvalFn = Callable[[Any, int], Dict[str, float]]


class Diverged(InputError):
  """A step gave non-finite metrics; the run stopped, keeping the checkpoints before it."""


@dataclasses.dataclass
class Trainer:
  """What `fit` needs of a net: three functions and what its logs show.

  Attributes:
    init_state: init_state(restoring) -> a fresh train state (train/state.TrainState), placed
      (devices, shardings) as a restored one must be: the checkpoint is restored into it.
      `restoring` is True when a checkpoint will replace it (costly initialisation, such as
      reading a previous stage's weights, may be skipped).
    step_fn: step_fn(state, batch) -> (state, metrics): one training step, jitted (it may donate
      `state`); metrics {name: scalar}, among them `loss` (and `grad_norm`).
    batches: batches(start, position) -> an iterator of the batches of steps start + 1,
      start + 2, ...; `position` counts the examples consumed before step start + 1 (0 on a
      fresh start; on resume what the checkpoint recorded).
    batch_size: examples per step (the global batch), for `position` and examples/s; 0 where the
      batches follow the step alone and do not say their size (ReID).
    schedule: the learning rate of step s + 1, schedule(s) (an optax schedule).
    fields: metrics.csv columns (a subset of the metrics plus step, lr, seconds, examples_per_s).
    eval_fn: eval_fn(state, step) -> {name: value}, every `eval_every` steps and at the end;
      None: no eval.csv.
    eval_fields: eval.csv columns; None: those of the first row.
    plot_keys, eval_keys: the curves of metrics.png.
    prefetch: batches made ahead on a thread; 0: made in the loop's thread.
    desc: the progress bar's label.
  """
  init_state: Callable[[bool], Any]
  step_fn: Callable[[Any, Any], Tuple[Any, Dict[str, Any]]]
  batches: Callable[[int, int], Iterator[Any]]
  batch_size: int
  schedule: Callable[[int], Any]
  fields: Sequence[str]
  eval_fn: Optional[EvalFn] = None
  eval_fields: Optional[Sequence[str]] = None
  plot_keys: Tuple[str, ...] = ("loss",)
  eval_keys: Tuple[str, ...] = ()
  prefetch: int = 1
  desc: str = "train"


def due(step: int, every: int, stop: int) -> bool:
  """Whether a periodic action (log, eval, checkpoint, plot) runs after `step`: every `every`
  steps (0: never) and at the last step of the call."""
  return step == stop or (every > 0 and step % every == 0)


def _first_bad(steps: List[int], metrics: List[Dict[str, Any]]) -> Optional[Tuple[int, Dict[str, float]]]:
  """(step, its non-finite metrics) of the first step of the list whose metrics are not all finite."""
  for step, m in zip(steps, jax.device_get(metrics)):
    bad = {k: float(v) for k, v in m.items() if not np.all(np.isfinite(v))}
    if bad:
      return step, bad
  return None


def _ahead(batches: Iterator[Any], steps: range, depth: int):
  """(step, batch) for each step, made `depth` ahead on one thread (flow/prefetch.Prefetcher)."""
  if depth <= 0:
    return None, ((s, next(batches)) for s in steps)
  ahead = prefetch_lib.Prefetcher(lambda s: next(batches), steps, depth=depth)
  return ahead, iter(ahead)


def fit(trainer: Trainer, config, workdir: str, *, resume: bool = False, stop_at: Optional[int] = None,
        progress: bool = True, started: Optional[float] = None) -> Dict[str, Any]:
  """Trains until `config.train.steps` (or `stop_at`, or `max_seconds`); see the module docstring.

  Args:
    trainer: the net's Trainer.
    config: the run's ConfigDict (recorded in config.json; a resume with another model config is
      refused); `config.train` holds steps, log_every, checkpoint_every, plot_every,
      keep_checkpoints and optionally eval_every, max_seconds.
    workdir: the run's folder; one holding checkpoints is refused unless `resume`.
    resume: continue from the newest checkpoint in workdir (a fresh start when there is none).
    stop_at: stop after this global step (the schedule still spans train.steps), as if killed there.
    progress: show a progress bar.
    started: time.perf_counter() of the run's start for max_seconds (default: now), so that the
      caller's data preparation counts.
  Returns:
    {"state": the last state, "train_rows": metrics.csv rows, "eval_rows": eval.csv rows}.
  Raises:
    Diverged: a step gave non-finite metrics (nothing saved after the last good checkpoint).
  """
  started = time.perf_counter() if started is None else started
  t = config.train
  workdir = os.path.abspath(workdir)
  ckpt = ckpt_lib.open_workdir(workdir, config, t.keep_checkpoints, resume)
  main = distributed.is_main()
  items = ahead = bar = None
  try:
    restoring = resume and ckpt.latest_step() is not None
    state = trainer.init_state(restoring)
    data_state = {}
    if restoring:
      state, data_state = ckpt.restore(state)
    start = int(jax.device_get(state.step))
    position = int(data_state.get("position", start * trainer.batch_size))
    log = lambda name, fields: metrics_lib.CsvLog(os.path.join(workdir, name), fields) if main else (
        distributed.MemoryLog())
    train_log, eval_log = log("metrics.csv", trainer.fields), log("eval.csv", trainer.eval_fields)
    for lg in (train_log, eval_log):  # drop what a killed run logged after its checkpoint (all, if none)
      if os.path.isfile(lg.path):
        lg.truncate(start)
    stop = min(stop_at if stop_at is not None else t.steps, t.steps)
    ahead, items = _ahead(trainer.batches(start, position), range(start + 1, stop + 1), trainer.prefetch)
    unchecked_steps, unchecked = [], []  # metrics of the steps since the last NaN check

    def guard():
      """Diverged when a step since the last check gave a non-finite metric."""
      bad = _first_bad(unchecked_steps, unchecked)
      unchecked_steps.clear()
      unchecked.clear()
      if bad is not None:
        step, values = bad
        last = ckpt.latest_step()
        kept = f"the last good checkpoint is step {last}" if last is not None else "no checkpoint was saved"
        raise Diverged(f"{workdir}: step {step} gave non-finite " + ", ".join(f"{k}={v}" for k, v in values.items())
                       + f"; training stopped and {kept}; lower optimizer.lr (or clip the gradients) and "
                       "--resume, or train in a new workdir")

    def save(step):
      if ckpt.latest_step() == step:
        return
      guard()
      ckpt.save(step, state, dict(step=step, position=position + (step - start) * trainer.batch_size))

    def plot():
      if main:
        metrics_lib.plot(os.path.join(workdir, "metrics.png"), train_log.rows(), eval_log.rows(),
                         train_keys=trainer.plot_keys, eval_keys=trainer.eval_keys)

    window = metrics_lib.StepWindow(start)
    bar = tqdm.tqdm(total=stop, initial=start, desc=trainer.desc, disable=not (progress and main),
                    dynamic_ncols=True)
    try:
      for step, batch in items:
        state, m = trainer.step_fn(state, batch)
        window.add(step, m)
        unchecked_steps.append(step)
        unchecked.append(m)
        bar.update()
        if due(step, t.log_every, stop):
          row = window.row(step, float(trainer.schedule(step - 1)))
          row["examples_per_s"] = trainer.batch_size / row["seconds"]
          train_log.append(row)
          guard()  # after the row is written: the CSV shows the divergence
          bar.set_postfix(loss=f"{row['loss']:.4f}", s_step=f"{row['seconds']:.2f}")
        with window.paused():  # eval, saving and plotting are not step time
          if trainer.eval_fn is not None and due(step, t.get("eval_every", 0), stop):
            row = dict(step=step, **trainer.eval_fn(state, step))
            eval_log.append(row)
            if main:
              tqdm.tqdm.write(f"step {step} eval: " + ", ".join(f"{k}={v:.4f}" for k, v in row.items() if k != "step"))
          if due(step, t.checkpoint_every, stop):
            save(step)
          if due(step, t.plot_every, stop):
            plot()
        if (t.get("max_seconds", 0) and distributed.agree(time.perf_counter() - started > t.max_seconds)
            and step < stop):
          save(step)  # out of time: stop here; --resume continues the same schedule
          plot()
          if main:
            tqdm.tqdm.write(f"train.max_seconds={t.max_seconds} reached at step {step}; checkpoint saved")
          break
        signals.check()  # a signal held during a garbage collection stops the run here
    except KeyboardInterrupt:  # Ctrl-C, or signals.Interrupted (SIGINT / SIGTERM)
      try:
        step = int(jax.device_get(state.step))
        if step > start and ckpt.latest_step() != step:
          save(step)
          ckpt.wait()
          if main:
            tqdm.tqdm.write(f"interrupted: saved a checkpoint at step {step}; --resume continues from it")
      except Exception:  # pylint: disable=broad-except
        pass  # interrupted inside a step (its donated input is gone) or diverged: the last checkpoint stands
      raise
    return dict(state=state, train_rows=train_log.rows(), eval_rows=eval_log.rows())
  finally:
    if bar is not None:
      bar.close()
    if ahead is not None:
      ahead.close()
    ckpt.close()
