"""Metrics as CSV rows (one file per kind: train, eval) and a PNG of the curves drawn with cv2."""
import contextlib
import csv
import os
import time
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import jax
import numpy as np

from vsreid_jax.train import tensorboard

COLOURS = [(200, 80, 30), (30, 130, 230), (40, 160, 40), (40, 40, 200), (150, 60, 150), (0, 150, 150)]  # BGR


class CsvLog:
  """Appends dict rows to a CSV with a fixed header; `truncate(step)` drops rows after a step
  (a resumed run rewrites what the killed run logged after its last checkpoint).

  Each appended row also goes to TensorBoard event files in `<csv folder>/tensorboard/`, tagged
  `<csv name>/<field>` (e.g. `metrics/loss`, `eval/iou`), written without TensorFlow.
  """

  def __init__(self, path, fields: Optional[Sequence[str]] = None):
    self.path = os.fspath(path)
    self._events = None  # opened on the first append
    self.fields = list(fields) if fields else None  # None: the file's header, else the first row's keys
    if self.fields is None and os.path.isfile(self.path):
      with open(self.path, newline="") as f:
        self.fields = next(csv.reader(f), None)

  def rows(self) -> List[Dict[str, float]]:
    if not os.path.isfile(self.path):
      return []
    with open(self.path, newline="") as f:
      return [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(f)]

  def truncate(self, max_step: int) -> None:
    keep = [r for r in self.rows() if r["step"] <= max_step]
    self._write(keep, "w")

  def append(self, row: Dict[str, float]) -> None:
    self._write([row], "a")
    if self._events is None:
      self._events = tensorboard.EventWriter(os.path.join(os.path.dirname(os.path.abspath(self.path)),
                                                          "tensorboard"))
    stem = os.path.splitext(os.path.basename(self.path))[0]
    self._events.scalars(int(row["step"]), {f"{stem}/{k}": float(v) for k, v in row.items()
                                            if k != "step" and k in self.fields})

  def _write(self, rows, mode):
    if self.fields is None:
      if not rows:
        return
      self.fields = ["step"] + sorted(k for k in rows[0] if k != "step")
    new = mode == "w" or not os.path.isfile(self.path) or os.path.getsize(self.path) == 0
    with open(self.path, mode, newline="") as f:
      w = csv.DictWriter(f, self.fields, extrasaction="ignore")
      if new:
        w.writeheader()
      for r in rows:
        w.writerow({k: (int(v) if k == "step" else f"{v:.6g}") for k, v in r.items() if k in self.fields})


class StepWindow:
  """The per-step metrics of one logging window, averaged into a CSV row with seconds per step.

  Every training loop (N_mp, detector, ReID) logs through it. The first step of a run compiles, so
  it is timed alone and later windows are steady state; `paused()` keeps evaluation, checkpoints
  and plots out of the step time.
  """

  def __init__(self, start: int):
    self.start = start  # the step the run starts from; step start + 1 compiles
    self._metrics, self._timed, self._first = [], 0, 0.0
    self._t = time.perf_counter()

  def add(self, step: int, metrics) -> None:
    self._metrics.append(metrics)
    if step == self.start + 1:
      jax.block_until_ready(metrics)
      now = time.perf_counter()
      self._first, self._t, self._timed = now - self._t, now, 0
    else:
      self._timed += 1

  def row(self, step: int, lr: float) -> Dict[str, float]:
    """Mean of each metric over the window, with step, lr and seconds per step; starts a new window."""
    ms = jax.device_get(self._metrics)
    dt = (time.perf_counter() - self._t) / self._timed if self._timed else self._first
    row = {k: float(np.mean([x[k] for x in ms])) for k in ms[0]}
    row.update(step=step, lr=lr, seconds=dt)
    self._metrics, self._t, self._timed = [], time.perf_counter(), 0
    return row

  @contextlib.contextmanager
  def paused(self):
    t = time.perf_counter()
    yield
    self._t += time.perf_counter() - t


def _fmt(v):
  return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.2e}"


def _panel(canvas, rect, series, title, log_y=False, x_range=None):
  """Draws [(name, xs, ys)] into rect=(x, y, w, h) of the canvas with axes, range labels, legend."""
  x, y, w, h = rect
  font = cv2.FONT_HERSHEY_SIMPLEX
  cv2.putText(canvas, title, (x, y - 8), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
  cv2.rectangle(canvas, (x, y), (x + w, y + h), (0, 0, 0), 1)
  pts = [(np.asarray(xs, float), np.asarray(ys, float)) for _, xs, ys in series if len(xs)]
  if not pts:
    return
  tf = (lambda v: np.log10(np.maximum(v, 1e-8))) if log_y else (lambda v: v)
  allx = np.concatenate([p[0] for p in pts])
  ally = np.concatenate([tf(p[1]) for p in pts])
  x0, x1 = x_range if x_range else (allx.min(), allx.max())
  x1 = max(x1, x0 + 1)
  y0, y1 = ally.min(), ally.max()
  if y1 - y0 < 1e-9:
    y0, y1 = y0 - 0.5, y1 + 0.5
  sx = lambda v: x + 5 + (v - x0) / (x1 - x0) * (w - 10)
  sy = lambda v: y + h - 5 - (v - y0) / (y1 - y0) * (h - 10)
  for gy in np.linspace(y0, y1, 5):
    cv2.line(canvas, (x, int(sy(gy))), (x + w, int(sy(gy))), (225, 225, 225), 1)
    label = _fmt(10 ** gy if log_y else gy)
    cv2.putText(canvas, label, (x - 62, int(sy(gy)) + 4), font, 0.4, (60, 60, 60), 1, cv2.LINE_AA)
  for gx in np.linspace(x0, x1, 5):
    cv2.putText(canvas, str(int(round(gx))), (int(sx(gx)) - 15, y + h + 16), font, 0.4, (60, 60, 60), 1,
                cv2.LINE_AA)
  for i, (name, xs, ys) in enumerate(series):
    if not len(xs):
      continue
    c = COLOURS[i % len(COLOURS)]
    poly = np.stack([sx(np.asarray(xs, float)), sy(tf(np.asarray(ys, float)))], 1).round().astype(np.int32)
    cv2.polylines(canvas, [poly], False, c, 1, cv2.LINE_AA)
    if len(poly) == 1:
      cv2.circle(canvas, tuple(poly[0]), 3, c, -1)
    cv2.putText(canvas, name, (x + w - 150, y + 18 + 16 * i), font, 0.45, c, 1, cv2.LINE_AA)


def plot(path, train_rows: List[Dict[str, float]], eval_rows: Optional[List[Dict[str, float]]] = None,
         train_keys: Tuple[str, ...] = ("loss",), eval_keys: Tuple[str, ...] = ("iou", "prior_iou")) -> None:
  """Loss (log scale) and learning rate against step; eval metrics below when there are any."""
  panels = [("train " + ", ".join(train_keys), [(k, [r["step"] for r in train_rows if k in r],
                                                 [r[k] for r in train_rows if k in r]) for k in train_keys], True),
            ("learning rate", [("lr", [r["step"] for r in train_rows if "lr" in r],
                                [r["lr"] for r in train_rows if "lr" in r])], False)]
  if eval_rows:
    panels.append(("eval", [(k, [r["step"] for r in eval_rows if k in r], [r[k] for r in eval_rows if k in r])
                            for k in eval_keys], False))
  steps = [r["step"] for r in list(train_rows) + list(eval_rows or [])]
  x_range = (min(steps), max(steps)) if steps else None  # one step axis for all panels
  ph, width = 220, 900
  canvas = np.full((len(panels) * (ph + 50) + 20, width, 3), 255, np.uint8)
  for i, (title, series, log_y) in enumerate(panels):
    _panel(canvas, (75, 30 + i * (ph + 50), width - 100, ph), series, title, log_y, x_range)
  tmp = os.fspath(path) + ".tmp.png"
  cv2.imwrite(tmp, canvas)
  os.replace(tmp, os.fspath(path))

