"""Report plots with matplotlib (object-oriented API on the Agg canvas: no pyplot, no global
backend state): per-object J and F curves over a timeline of present / lost / re-identified
frames, and the ablation rows against the paper's."""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from vsreid_jax.data.palette import PALETTE

# Per-frame state of an object in the timeline.
LOST, PRESENT, REIDENTIFIED = 0, 1, 2
LOST_COLOUR = "#c8c8c8"


def object_colour(obj_id: int) -> Tuple[float, float, float]:
  """The object's DAVIS palette colour as matplotlib RGB in 0..1."""
  return tuple(float(c) / 255 for c in PALETTE[obj_id])


def _runs(states: np.ndarray):
  """(start, length, value) of the runs of equal values of a 1-D array."""
  change = np.flatnonzero(np.diff(states)) + 1
  starts = np.concatenate([[0], change])
  ends = np.concatenate([change, [len(states)]])
  return [(int(s), int(e - s), int(states[s])) for s, e in zip(starts, ends)]


def _save(fig: Figure, path: str, dpi: int) -> None:
  FigureCanvasAgg(fig)
  fig.savefig(path, dpi=dpi)


def sequence_figure(path: str, object_ids: Sequence[int], states: np.ndarray, retrievals: List[dict],
                    scores: Optional[Dict[int, Dict[str, np.ndarray]]], width_in: float, dpi: int) -> None:
  """Writes the figure of one sequence as PNG.

  Args:
    path: PNG to write.
    object_ids: the K palette ids.
    states: int [K, T] per frame LOST / PRESENT / REIDENTIFIED.
    retrievals: the solver's log entries (object_id, frame, score, frames_rewritten).
    scores: None (no ground truth) or {object id: {"J": [T - 2], "F": [T - 2]}} of frames 1..T-2.
    width_in, dpi: figure width in inches and resolution.
  """
  k, t = states.shape
  timeline_h = 0.5 + 0.32 * max(k, 1)
  heights = ([1.5, 1.5] if scores else []) + [timeline_h]
  fig = Figure(figsize=(width_in, sum(heights) + 0.9), layout="constrained")
  axes = fig.subplots(len(heights), 1, sharex=True, gridspec_kw=dict(height_ratios=heights))
  axes = np.atleast_1d(axes)
  if scores:
    x = np.arange(1, t - 1)
    for ax, measure in zip(axes[:2], ("J", "F")):
      for obj in object_ids:
        if obj in scores:
          ax.plot(x, scores[obj][measure], color=object_colour(obj), lw=1.4, label=f"object {obj}")
      ax.set_ylim(-0.03, 1.03)
      ax.set_ylabel(measure)
      ax.grid(alpha=0.3)
    axes[0].set_title("per-frame J (region) and F (boundary), first and last frame unscored", fontsize="small")
  ax = axes[-1]
  for row, obj in enumerate(object_ids):
    colour = object_colour(obj)
    for start, length, state in _runs(states[row]):
      style = {LOST: dict(facecolor=LOST_COLOUR), PRESENT: dict(facecolor=colour, alpha=0.45),
               REIDENTIFIED: dict(facecolor=colour, edgecolor="black", hatch="///", linewidth=0)}[state]
      ax.broken_barh([(start - 0.5, length)], (row - 0.3, 0.6), **style)
    for r in retrievals:
      if r.get("object_id") != obj:
        continue
      # Rows run downwards: the marker sits above the object's bar, the rewritten span under it.
      if r.get("frames_rewritten"):
        span = (min(r["frames_rewritten"]) - 0.5, max(r["frames_rewritten"]) + 0.5)
        ax.plot(span, [row + 0.38, row + 0.38], color="black", lw=1.2)
      ax.plot([r["frame"]], [row - 0.4], marker="v", color="black", ms=6)
      ax.annotate(f"{r['score']:.2f}", (r["frame"], row - 0.4), xytext=(5, -1), textcoords="offset points",
                  fontsize="x-small", va="center")
  ax.set_yticks(range(k), [f"object {obj}" for obj in object_ids], fontsize="small")
  for label, obj in zip(ax.get_yticklabels(), object_ids):
    label.set_color(object_colour(obj))  # the curves above use the same colours
  ax.set_ylim(k - 0.5, -0.7)
  ax.set_xlim(-0.5, t - 0.5)
  ax.set_xlabel("frame")
  first = object_colour(object_ids[0]) if len(object_ids) else LOST_COLOUR
  fig.legend(handles=[Patch(facecolor=first, alpha=0.45, label="present"),
                      Patch(facecolor=first, hatch="///", edgecolor="black", label="re-identified"),
                      Patch(facecolor=LOST_COLOUR, label="lost"),
                      Patch(facecolor="none", edgecolor="none", label="\u25bc retrieval (similarity), "
                            "line: the frames it rewrote")],
             loc="outside lower center", ncol=4, fontsize="x-small", frameon=False)
  _save(fig, path, dpi)


def ablation_figure(path: str, rows: Sequence[str], here: Sequence[float], paper: Sequence[Optional[float]],
                    title: str, width_in: float, dpi: int) -> None:
  """Grouped bars: J&F of each ablation row here and in the paper (missing paper values skipped)."""
  fig = Figure(figsize=(width_in, 2.8), layout="constrained")
  ax = fig.subplots()
  x = np.arange(len(rows))
  bars = ax.bar(x - 0.2, here, 0.4, label="J&F here", color="#3b75af")
  ax.bar_label(bars, fmt="%.3f", fontsize="x-small")
  known = [i for i, v in enumerate(paper) if v is not None]
  bars = ax.bar(x[known] + 0.2, [paper[i] for i in known], 0.4, label="paper (DAVIS 17 test-dev)", color="#ef8636")
  ax.bar_label(bars, fmt="%.3f", fontsize="x-small")
  ax.set_xticks(x, rows, fontsize="small")
  ax.set_ylim(0, 1)
  ax.set_ylabel("J&F")
  ax.set_title(title, fontsize="small")
  ax.legend(fontsize="x-small", frameon=False, loc="upper left")
  _save(fig, path, dpi)
