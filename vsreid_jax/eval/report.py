"""Result tables and a grouped bar chart (cv2-drawn: no plotting library needed)."""
from typing import Dict, Sequence

import cv2
import numpy as np

COLOURS = ((200, 120, 40), (40, 160, 220), (60, 180, 90), (180, 80, 170), (90, 90, 220))  # BGR


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence]) -> str:
  def fmt(v):
    return f"{v:.3f}" if isinstance(v, float) else str(v)
  lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
  return "\n".join(lines)


def bar_chart(path, labels: Sequence[str], series: Dict[str, Sequence[float]], title: str,
              y_max: float = 1.0, size=(900, 420)) -> None:
  """Grouped bars: one group per label, one bar per series (values in 0..y_max), written as PNG."""
  w, h = size
  img = np.full((h, w, 3), 255, np.uint8)
  left, right, top, bottom = 60, 20, 50, 90
  cv2.putText(img, title, (left, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
  plot_h = h - top - bottom
  for k in range(6):  # y grid
    v = y_max * k / 5
    y = int(h - bottom - plot_h * v / y_max)
    cv2.line(img, (left, y), (w - right, y), (225, 225, 225), 1)
    cv2.putText(img, f"{v:.1f}", (10, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (80, 80, 80), 1, cv2.LINE_AA)
  names = list(series)
  group_w = (w - left - right) / max(len(labels), 1)
  bar_w = group_w * 0.8 / max(len(names), 1)
  for g, label in enumerate(labels):
    x0 = left + g * group_w + group_w * 0.1
    for s, name in enumerate(names):
      v = float(series[name][g])
      xa, xb = int(x0 + s * bar_w), int(x0 + (s + 1) * bar_w) - 2
      y = int(h - bottom - plot_h * min(max(v, 0.0), y_max) / y_max)
      cv2.rectangle(img, (xa, y), (xb, h - bottom), COLOURS[s % len(COLOURS)], -1)
      cv2.putText(img, f"{v:.2f}", (xa, y - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, label, (int(x0), h - bottom + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
  for s, name in enumerate(names):  # legend
    x = left + s * 220
    cv2.rectangle(img, (x, h - 40), (x + 14, h - 26), COLOURS[s % len(COLOURS)], -1)
    cv2.putText(img, name, (x + 20, h - 28), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
  cv2.imwrite(str(path), img)
