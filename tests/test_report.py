"""`vsreid report` and `vsreid segment --report`: the HTML report of a results folder.

A small generated run (warp-only propagation of the generated clips) is segmented once; the tests
read the written page and check its figures against `vsreid eval`, its videos, plots, timelines,
the ablation table, the one-line errors, and (when Chromium is installed) the page in a browser.
"""
import csv
import json
import os
import re
import shutil
import sys

import cv2
import numpy as np
import pytest

from vsreid_jax import cli
from vsreid_jax.configs import report as report_config
from vsreid_jax.data import synthetic, write_mask
from vsreid_jax.data.palette import PALETTE
from vsreid_jax.eval.davis import evaluate
from vsreid_jax.report import build_report
from vsreid_jax.solver.algorithm3 import SolveResult, write_retrievals

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments import screenshot_report  # pylint: disable=wrong-import-position

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEQUENCES = {"two-objects": (10, 2), "one-object": (8, 1)}  # frames, objects (conftest's shapes_root)


@pytest.fixture(scope="module")
def run(shapes_root, tmp_path_factory):
  """OUT of `vsreid segment --davis shapes_root --net identity --method propagate --eval --report`."""
  out = str(tmp_path_factory.mktemp("run") / "out")
  assert cli.main(["segment", "--davis", shapes_root, "--set", "val", "--out", out, "--net", "identity",
                   "--method", "propagate", "--scales", "0.15:65", "--overlay", "--eval", "--report",
                   "--no-progress"]) == 0
  return out


def table(page: str):
  """({sequence or "global": [cell text]}, [header]) of the page's sequence table."""
  section = page[page.index('<table class="sortable" id="sequences">'):]
  section = section[:section.index("</table>")]
  heads = re.findall(r"<th>(.*?)</th>", section)
  rows = {}
  for seq, cells in re.findall(r'<tr data-seq="([^"]+)">(.*?)</tr>', section, re.S):
    rows[seq] = [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", cells)]
  return rows, [h.replace("&amp;", "&") for h in heads]


def read(path):
  with open(path, encoding="utf-8") as f:
    return f.read()


def test_report_table_equals_vsreid_eval(run, shapes_root):
  for name in os.listdir(run):
    if name.endswith(".csv"):
      os.remove(os.path.join(run, name))
  assert cli.main(["eval", "--davis", shapes_root, "--set", "val", "--results", run, "--no-progress"]) == 0
  with open(os.path.join(run, "global_results-val.csv")) as f:
    global_csv = next(csv.DictReader(f))
  with open(os.path.join(run, "per-sequence_results-val.csv")) as f:
    per_object = list(csv.DictReader(f))
  rows, heads = table(read(os.path.join(run, "report", "index.html")))
  assert list(rows) == list(SEQUENCES) + ["global"]
  columns = {"J&F": "J&F-Mean", "J": "J-Mean", "J recall": "J-Recall", "J decay": "J-Decay", "F": "F-Mean",
             "F recall": "F-Recall", "F decay": "F-Decay"}
  for head, key in columns.items():  # the global row shows exactly what vsreid eval wrote
    assert rows["global"][heads.index(head)] == global_csv[key], head
  exact = evaluate(shapes_root, "val", run, progress=False)
  report = json.loads(read(os.path.join(run, "report", "report.json")))
  for seq, (frames, objects) in SEQUENCES.items():
    mine = [r for r in per_object if r["Sequence"].rsplit("_", 1)[0] == seq]
    assert len(mine) == objects
    for head, key in (("J", "J-Mean"), ("F", "F-Mean")):  # per sequence: the mean of its objects' rows
      assert abs(float(rows[seq][heads.index(head)]) - np.mean([float(r[key]) for r in mine])) <= 0.0015
    entry = next(s for s in report["sequences"] if s["name"] == seq)
    j = np.mean([jm for name, jm, _ in exact.per_object if name.rsplit("_", 1)[0] == seq])
    assert entry["scores"]["J-Mean"] == pytest.approx(j, abs=1e-12)
    assert rows[seq][heads.index("frames")] == str(frames) and rows[seq][heads.index("objects")] == str(objects)
    timing = json.loads(read(os.path.join(run, f"{seq}_timing.json")))
    assert timing["frames"] == frames and timing["frames_per_second"] > 0
    assert rows[seq][heads.index("frames/s")] == f"{timing['frames_per_second']:.1f}"
  assert report["global_"]["J&F-Mean"] == pytest.approx(exact.global_["J&F-Mean"], abs=1e-12)


def test_every_sequence_has_its_video_and_curves(run):
  report_dir = os.path.join(run, "report")
  page = read(os.path.join(report_dir, "index.html"))
  assert not re.search(r"https?://|<script src|<link ", page)  # opens offline: nothing fetched
  for seq, (frames, objects) in SEQUENCES.items():
    section = page[page.index(f'<section id="seq-{seq}">'):]
    section = section[:section.index("</section>")]
    video = re.search(r'<source src="(assets/[^"]+\.(webm|mp4))" type="video/(webm|mp4)">', section).group(1)
    cap = cv2.VideoCapture(os.path.join(report_dir, video))
    decoded = []
    while True:
      ok, frame = cap.read()
      if not ok:
        break
      decoded.append(frame)
    assert len(decoded) == frames and decoded[0].shape[1] <= report_config.get_config().video_width
    plot = re.search(r'<img src="(assets/[^"]+\.png)"', section).group(1)
    image = cv2.cvtColor(cv2.imread(os.path.join(report_dir, plot)), cv2.COLOR_BGR2RGB)
    for obj in range(1, objects + 1):  # each object's J and F curves, in its palette colour
      assert np.all(image == PALETTE[obj], axis=-1).sum() > 100, (seq, obj)
    assert image.shape[1] == 600  # plot_width_in 7.5 x 80 dpi: screen size, not print size
  assets = os.path.join(report_dir, "assets")
  total = sum(os.path.getsize(os.path.join(assets, f)) for f in os.listdir(assets))
  assert total < 300_000


def test_report_without_ground_truth_has_no_scores(run, tmp_path, capsys):
  out = tmp_path / "r"
  assert cli.main(["report", run, "--out", str(out), "--no-progress"]) == 0
  assert "index.html" in capsys.readouterr().out
  page = read(out / "index.html")
  rows, heads = table(page)
  assert list(rows) == sorted(SEQUENCES) + ["global"]  # the report folder inside the run is no sequence
  assert "J&F" not in heads and "J" not in heads and heads[1:4] == ["frames", "objects", "lost frames"]
  assert "video: two-objects_overlay." in page  # frames taken from segment --overlay's video
  # Run again over the earlier report: it is replaced.
  assert cli.main(["report", run, "--out", str(out), "--no-progress"]) == 0


def test_timeline_shows_lost_and_reidentified_frames_from_the_retrieval_log(tmp_path):
  frames, masks = synthetic.leave_and_return(n_frames=12, out=(4, 8))
  results = tmp_path / "results"
  for t, mask in enumerate(masks):
    os.makedirs(results / "clip", exist_ok=True)
    write_mask(results / "clip" / f"{t:05d}.png", mask)
  assert not (masks[4:8] == 2).any() and (masks[8:] == 2).any(axis=(1, 2)).all()
  log = [dict(frame=9, object=1, score=0.91234, box=[70.0, 20.0, 90.0, 40.0], frames_rewritten=[8, 9, 10, 11],
              first=8, last=11)]
  write_retrievals(results / "clip_retrievals.json", "clip", SolveResult(None, None, None, log, 7, 0.5),
                   np.array([1, 2], np.uint8))
  build_report(results, tmp_path / "report", frames={"clip": frames}, progress=False)
  report = json.loads(read(tmp_path / "report" / "report.json"))
  (clip,) = report["sequences"]
  assert clip["timeline"] == {"1": "p" * 12, "2": "pppp----RRRR"}
  assert clip["lost_frames"] == {"1": 0, "2": 4} and clip["retrievals"] == 1
  page = read(tmp_path / "report" / "index.html")
  assert "&middot; frame 9 &middot; similarity 0.912<br>frames rewritten 8&ndash;11 (4)</figcaption>" in page
  (thumb,) = clip["thumbs"]
  assert cv2.imread(str(tmp_path / "report" / thumb)).shape[:2] == (64, 96)  # never upscaled past the frame
  rows, heads = table(page)
  assert rows["clip"][heads.index("lost frames")] == "4" and rows["clip"][heads.index("retrievals")] == "1"


def test_ablation_rows_beside_the_papers(tmp_path):
  abl = tmp_path / "abl"
  abl.mkdir()
  shutil.copy(os.path.join(REPO, "experiments", "results", "ablation_occlusion.csv"), abl / "ablation.csv")
  shutil.copy(os.path.join(REPO, "experiments", "results", "ablation_occlusion.md"), abl / "ablation.md")
  assert cli.main(["report", str(abl), "--out", str(tmp_path / "r"), "--no-progress"]) == 0
  page = read(tmp_path / "r" / "index.html")
  row = re.search(r"<tr><td>\+re-id</td>(.*?)</tr>", page).group(1)
  cells = [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
  assert cells[:5] == ["0.309", "0.293", "0.326", "0.652", "-0.343"]  # J&F, J, F, paper, J&F - paper
  assert "6 sequences, 18 objects, set occlusion" in page
  assert os.path.getsize(tmp_path / "r" / "assets" / "ablation.png") > 0


@pytest.mark.parametrize("problem", ["no-results", "foreign-out", "broken-log", "foreign-log", "empty"])
def test_bad_input_gives_one_line_error(run, tmp_path, capsys, problem):
  results, out = run, tmp_path / "out"
  if problem == "no-results":
    results = str(tmp_path / "missing")
  elif problem == "foreign-out":
    out.mkdir()
    (out / "notes.txt").write_text("mine")
  elif problem in ("broken-log", "foreign-log"):
    results = str(tmp_path / "res")
    shutil.copytree(os.path.join(run, "one-object"), os.path.join(results, "one-object"))
    log = dict(retrievals=[dict(frame=30, object=0, object_id=1, score=0.9, frames_rewritten=[30, 31])])
    with open(os.path.join(results, "one-object_retrievals.json"), "w") as f:
      f.write("{not json" if problem == "broken-log" else json.dumps(log))
  elif problem == "empty":
    results = str(tmp_path / "empty")
    os.makedirs(results)
  assert cli.main(["report", results, "--out", str(out), "--no-progress"]) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("vsreid: error: ") and "\n" not in err
  expected = {"no-results": "missing: results folder not found", "foreign-out": "is not an earlier report",
              "broken-log": "one-object_retrievals.json: not valid JSON",
              "foreign-log": "one-object_retrievals.json: retrieval at frame 30 is outside the 8 result frames",
              "empty": "no result sequences"}[problem]
  assert expected in err
  if problem == "foreign-out":
    assert (out / "notes.txt").read_text() == "mine" and sorted(os.listdir(out)) == ["notes.txt"]
  else:
    assert not out.exists()
  assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]  # no partial report left


def test_report_opens_in_headless_chromium(run, tmp_path):
  chromium = screenshot_report.find_chromium()
  if chromium is None:
    pytest.skip("Chromium not installed (apt-get install -y chromium)")
  report_dir = os.path.join(run, "report")
  png = tmp_path / "shot.png"
  screenshot_report.screenshot(chromium, os.path.join(report_dir, "index.html"), str(png), (1000, 900))
  shot = cv2.imread(str(png))
  assert shot.shape[:2] == (900, 1000) and shot.std() > 10  # a rendered page, not a blank one
  videos = screenshot_report.probe_videos(chromium, report_dir)
  assert len(videos) == len(SEQUENCES) and all(v["ok"] and v["width"] > 0 for v in videos.values()), videos
  sort = screenshot_report.click_sort(chromium, report_dir, "J&F")
  report = json.loads(read(os.path.join(report_dir, "report.json")))
  scores = {s["name"]: s["scores"]["J&F-Mean"] for s in report["sequences"]}
  assert sort["asc"] == sorted(scores, key=scores.get) and sort["desc"] == sorted(scores, key=scores.get)[::-1]


def test_without_a_browser_codec_the_page_shows_first_frames(monkeypatch, tmp_path):
  from vsreid_jax.data import media  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(media, "browser_codec", lambda: None)
  frames, masks = synthetic.moving_shapes(n_frames=4, n_objects=1)
  for t, mask in enumerate(masks):
    os.makedirs(tmp_path / "res" / "clip", exist_ok=True)
    write_mask(tmp_path / "res" / "clip" / f"{t:05d}.png", mask)
  build_report(tmp_path / "res", tmp_path / "r", progress=False)
  page = read(tmp_path / "r" / "index.html")
  assert "<video" not in page and "encode neither H.264 nor VP9" in page
  assert '<img src="assets/clip_poster.jpg"' in page and os.path.isfile(tmp_path / "r" / "assets" / "clip_poster.jpg")
  assert "video: masks only" in page
