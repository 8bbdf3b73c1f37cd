"""The report page: one self-contained HTML file (inline CSS and table-sorting JavaScript, no
network) referring to the files of its assets/ folder, and report.json with the same figures."""
import html
import json
import math
import os
from typing import List, Optional

import numpy as np

from vsreid_jax import __version__
from vsreid_jax.data.palette import PALETTE
from vsreid_jax.eval.davis import GLOBAL_COLUMNS
from vsreid_jax.report import plots

# Score columns of the sequence table: (header, GLOBAL_COLUMNS key).
SCORE_COLUMNS = (("J&F", "J&F-Mean"), ("J", "J-Mean"), ("J recall", "J-Recall"), ("J decay", "J-Decay"),
                 ("F", "F-Mean"), ("F recall", "F-Recall"), ("F decay", "F-Decay"))

# report.json writes each object's timeline as one character a frame.
TIMELINE_CHARS = {plots.LOST: "-", plots.PRESENT: "p", plots.REIDENTIFIED: "R"}

CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em auto; max-width: 1100px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { padding: 3px 8px; border-bottom: 1px solid #e4e4e4; text-align: right; }
th:first-child, td:first-child { text-align: left; }
table.sortable th { cursor: pointer; user-select: none; background: #f4f4f4; }
table.sortable th[data-order=asc]::after { content: " \\25B2"; }
table.sortable th[data-order=desc]::after { content: " \\25BC"; }
tfoot td { font-weight: bold; border-top: 2px solid #999; }
.seq { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
.meta { color: #555; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; vertical-align: -0.1em; border: 1px solid #0004; }
.cards { display: flex; flex-wrap: wrap; gap: 0.6em; }
.cards figure { margin: 0; width: 170px; font-size: 12px; }
.cards img { display: block; max-width: 100%; }
"""

SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  var heads = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads, function (th, col) {
    th.title = 'sort';
    th.addEventListener('click', function () {
      var asc = th.dataset.order !== 'asc';
      Array.prototype.forEach.call(heads, function (h) { delete h.dataset.order; });
      th.dataset.order = asc ? 'asc' : 'desc';
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      function key(row) {
        var cell = row.cells[col];
        if (cell.dataset.v === undefined) return cell.textContent.toLowerCase();
        var v = parseFloat(cell.dataset.v);
        return isNaN(v) ? null : v;
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === y) return 0;
        if (x === null) return 1;  // no value: always last
        if (y === null) return -1;
        return (x < y ? -1 : 1) * (asc ? 1 : -1);
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def _esc(text) -> str:
  return html.escape(str(text), quote=True)


def _num(value: Optional[float], fmt: str = "{:.3f}") -> str:
  """A numeric cell: the full value in data-v (for sorting), the rounded one shown."""
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return '<td data-v="">&ndash;</td>'
  return f'<td data-v="{value!r}">{fmt.format(value)}</td>'


def _swatch(obj: int) -> str:
  r, g, b = (int(c) for c in PALETTE[obj])
  return f'<span class="swatch" style="background:rgb({r},{g},{b})"></span> {obj}'


def _sequence_table(seqs, global_: Optional[dict]) -> str:
  scored = global_ is not None
  heads = ["sequence"] + ([h for h, _ in SCORE_COLUMNS] if scored else []) + [
      "frames", "objects", "lost frames", "retrievals", "frames/s"]
  lines = ['<table class="sortable" id="sequences"><thead><tr>' + "".join(f"<th>{_esc(h)}</th>" for h in heads)
           + "</tr></thead><tbody>"]
  for s in seqs:
    cells = [f'<td><a href="#seq-{_esc(s.name)}">{_esc(s.name)}</a></td>']
    if scored:
      cells += [_num(s.scores[key] if s.scores else None) for _, key in SCORE_COLUMNS]
    cells += [_num(s.frames, "{:d}"), _num(len(s.object_ids), "{:d}"),
              _num(int(np.sum(s.states == plots.LOST)), "{:d}"),
              _num(len(s.retrievals) if s.retrievals is not None else None, "{:d}"), _num(s.fps, "{:.1f}")]
    lines.append(f'<tr data-seq="{_esc(s.name)}">' + "".join(cells) + "</tr>")
  lines.append("</tbody>")
  frames = sum(s.frames for s in seqs)
  steady = [s.timing.get("steady_seconds") for s in seqs if s.timing]
  fps = frames / sum(steady) if steady and len(steady) == len(seqs) and sum(steady) > 0 else None
  retrievals = [len(s.retrievals) for s in seqs if s.retrievals is not None]
  cells = ["<td>all (global)</td>"]
  if scored:
    cells += [_num(global_[key]) for _, key in SCORE_COLUMNS]
  cells += [_num(frames, "{:d}"), _num(sum(len(s.object_ids) for s in seqs), "{:d}"),
            _num(int(sum(np.sum(s.states == plots.LOST) for s in seqs)), "{:d}"),
            _num(sum(retrievals) if retrievals else None, "{:d}"), _num(fps, "{:.1f}")]
  lines.append('<tfoot><tr data-seq="global">' + "".join(cells) + "</tr></tfoot></table>")
  return "\n".join(lines)


def _retrievals(s) -> str:
  """One card per retrieval: the thumbnail of its frame (box: the retrieved candidate), object,
  frame, similarity and the frames it rewrote, in the order the solver made them."""
  if s.retrievals is None:
    return '<p class="meta">No retrieval log (propagation only).</p>'
  if not s.retrievals:
    return '<p class="meta">The solver made no retrieval.</p>'
  cards = ['<p class="meta">Retrievals in the order the solver made them (box: the retrieved candidate):</p>',
           '<div class="cards">']
  for r, thumb in zip(s.retrievals, s.thumbs):
    frames = r["frames_rewritten"]
    span = (f"frames rewritten {min(frames)}&ndash;{max(frames)} ({len(frames)})" if frames
            else "lost again at once: nothing rewritten")
    cards.append(f'<figure><img src="{_esc(thumb)}" alt="frame {r["frame"]}" loading="lazy"><figcaption>'
                 f'object {_swatch(r["object_id"])} &middot; frame {r["frame"]} &middot; similarity '
                 f'{r["score"]:.3f}<br>{span}</figcaption></figure>')
  cards.append("</div>")
  return "\n".join(cards)


def _sequence_section(s, width: int) -> str:
  scores = (" &middot; J&amp;F {:.3f} (J {:.3f}, F {:.3f})".format(
      s.scores["J&F-Mean"], s.scores["J-Mean"], s.scores["F-Mean"]) if s.scores else "")
  fps = f" &middot; {s.fps:.1f} frames/s" if s.fps else ""
  if s.video:
    video = (f'<video controls loop muted preload="metadata" width="{width}" poster="{_esc(s.poster)}">'
             f'<source src="{_esc(s.video)}" type="{_esc(s.video_mime)}">'
             f'<img src="{_esc(s.poster)}" width="{width}" alt="first frame"></video>')
  else:
    video = f'<img src="{_esc(s.poster)}" width="{width}" alt="first frame (no browser video codec in this OpenCV)">'
  return "\n".join([
      f'<section id="seq-{_esc(s.name)}"><h2>{_esc(s.name)}</h2>',
      f'<p class="meta">{s.frames} frames &middot; objects {", ".join(_swatch(o) for o in s.object_ids)}'
      f"{scores}{fps} &middot; video: {_esc(s.frame_source)}</p>",
      f'<div class="seq"><div>{video}</div>',
      f'<img src="{_esc(s.plot)}" alt="per-frame J and F, and timeline of {_esc(s.name)}" loading="lazy"></div>',
      _retrievals(s), "</section>"])


def _ablation_section(a) -> str:
  rows = ['<table class="sortable"><thead><tr>' + "".join(f"<th>{_esc(c)}</th>" for c in a.columns)
          + "</tr></thead><tbody>"]
  for r in a.rows:
    cells = []
    for k, v in enumerate(r):
      try:
        x = float(v)
        cells.append(_num(x, "{:.3f}" if "." in v and k else "{:g}"))
      except ValueError:
        cells.append(f"<td>{_esc(v)}</td>")
    rows.append("<tr>" + "".join(cells) + "</tr>")
  rows.append("</tbody></table>")
  return "\n".join([f"<h3>{_esc(a.name)}</h3>", f'<p class="meta">{_esc(a.caption)}</p>', *rows,
                    f'<img src="{_esc(a.plot)}" alt="ablation J&amp;F against the paper">'])


def render(results_dir: str, subset: Optional[str], seqs: List, global_: Optional[dict], ablations: List,
         has_video: bool, video_width: int) -> str:
  """The whole index.html; videos are shown `video_width` pixels wide (small clips scaled up)."""
  title = f"vsreid report: {os.path.basename(os.path.normpath(os.path.abspath(results_dir)))}"
  scored = (f"Scores: the official DAVIS 2017 semi-supervised protocol (as <code>vsreid eval</code>), set "
            f"<code>{_esc(subset)}</code>; sequence rows average that sequence's objects, the global row all objects."
            if global_ is not None else "No ground truth given (<code>--davis ROOT --set SET</code>): no scores.")
  parts = [
      "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{_esc(title)}</title>",
      f"<style>{CSS}</style></head><body>", f"<h1>{_esc(title)}</h1>",
      f'<p class="meta">Results: <code>{_esc(os.path.abspath(results_dir))}</code> &middot; '
      f"vsreid-jax {__version__}</p>",
  ]
  if seqs:
    parts += ["<h2>Sequences</h2>", f'<p class="meta">{scored} Click a column to sort. Lost frames: frames '
              "where an object has no pixel in the written mask, summed over objects. Frames/s: steady state "
              "(compilation excluded) from <code>&lt;sequence&gt;_timing.json</code>.</p>",
              _sequence_table(seqs, global_)]
  if ablations:
    parts += ["<h2>Ablation (paper Table 1)</h2>", '<p class="meta">Rows of <code>experiments/ablation.py</code> '
              "beside the paper's J&amp;F (DAVIS 2017 test-dev).</p>"] + [_ablation_section(a) for a in ablations]
  if seqs and not has_video:
    parts.append('<p class="meta">This OpenCV can encode neither H.264 nor VP9: first frames only.</p>')
  parts += [_sequence_section(s, video_width) for s in seqs]
  parts += [f"<script>{SORT_JS}</script>", "</body></html>"]
  return "\n".join(parts) + "\n"


def write_json(path: str, results_dir: str, subset: Optional[str], seqs: List, global_: Optional[dict],
               ablations: List) -> None:
  """report.json: the table's figures unrounded, each object's timeline (TIMELINE_CHARS, one a frame)
  and where each sequence's files are."""
  payload = dict(
      results_dir=os.path.abspath(results_dir), set=subset, columns=list(GLOBAL_COLUMNS), global_=global_,
      sequences=[dict(name=s.name, frames=s.frames, objects=s.object_ids, scores=s.scores,
                      lost_frames={str(o): int(np.sum(s.states[k] == plots.LOST)) for k, o in enumerate(s.object_ids)},
                      timeline={str(o): "".join(TIMELINE_CHARS[v] for v in s.states[k])
                                for k, o in enumerate(s.object_ids)},
                      retrievals=None if s.retrievals is None else len(s.retrievals), frames_per_second=s.fps,
                      video=s.video, plot=s.plot, poster=s.poster, thumbs=s.thumbs) for s in seqs],
      ablations=[dict(name=a.name, columns=a.columns, rows=a.rows, plot=a.plot) for a in ablations])
  with open(path, "w") as f:
    json.dump(payload, f, indent=1)
