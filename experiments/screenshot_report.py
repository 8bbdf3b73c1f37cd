"""Opens a `vsreid report` page in headless Chromium: a screenshot, a check that Chromium decodes
every sequence video of the report, and a check that clicking a column header sorts the table.

  apt-get install -y chromium       # Debian's package
  python experiments/screenshot_report.py REPORT_DIR --out shot.png [--window-size 1200,1800]

Prints one line per video (decoded size and duration, or the media error) and the sequence order
before and after a click on the J&F header (or "sequence" when the report has no scores); exits 1
when a video does not decode or the table does not sort.
"""
import argparse
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
# Chromium runs as root in containers only without its sandbox; the GPU is not needed headless.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--mute-audio")
TIMEOUT_S = 120
# Virtual time Chromium lets the page run (timers, media loading) before it dumps the DOM.
BUDGET_MS = 10000


def find_chromium():
  """Path of a Chromium executable, or None."""
  return next((p for p in (shutil.which(c) for c in CANDIDATES) if p), None)


def _run(chromium, *args) -> str:
  out = subprocess.run([chromium, *FLAGS, *args], capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
  if out.returncode != 0:
    raise RuntimeError(f"{chromium} exited with {out.returncode}: {out.stderr.strip()[-500:]}")
  return out.stdout


def screenshot(chromium, page: str, png: str, size=(1200, 1800)) -> None:
  """Writes a PNG of the page as Chromium renders it at window size (width, height)."""
  _run(chromium, f"--screenshot={os.path.abspath(png)}", f"--window-size={size[0]},{size[1]}",
       "file://" + os.path.abspath(page))
  if not os.path.isfile(png):
    raise RuntimeError(f"{chromium} wrote no screenshot {png}")


def _result(dom: str) -> dict:
  match = re.search(r'<pre id="probe-result">(.+?)</pre>', dom, re.S)
  if not match:
    raise RuntimeError("the probe page produced no result (Chromium ran out of virtual time?)")
  return json.loads(html.unescape(match.group(1)))


PROBE = """<!DOCTYPE html><html><body><pre id="probe-result"></pre><script>
var srcs = %s, out = document.getElementById('probe-result'), done = 0, res = {};
function fin(src, msg) { res[src] = msg; if (++done === srcs.length) out.textContent = JSON.stringify(res); }
srcs.forEach(function (src) {
  var v = document.createElement('video'); v.muted = true; v.preload = 'auto';
  v.addEventListener('loadeddata', function () {
    fin(src, {ok: true, width: v.videoWidth, height: v.videoHeight, seconds: v.duration}); }, {once: true});
  v.addEventListener('error', function () {
    fin(src, {ok: false, error: v.error ? v.error.code : null}); }, {once: true});
  v.src = src; v.load();
});
if (!srcs.length) out.textContent = '{}';
</script></body></html>
"""


def probe_videos(chromium, report_dir: str) -> dict:
  """{video path relative to the report: {ok, width, height, seconds} or {ok: False, error}}."""
  with open(os.path.join(report_dir, "index.html"), encoding="utf-8") as f:
    sources = re.findall(r'<source src="([^"]+)"', f.read())
  urls = ["file://" + os.path.abspath(os.path.join(report_dir, s)) for s in sources]
  result = probe_sources(chromium, urls)
  return {src: result[url] for src, url in zip(sources, urls)}


def probe_sources(chromium, urls) -> dict:
  """{url: {ok, width, height, seconds} or {ok: False, error}}: Chromium loading each video."""
  with tempfile.TemporaryDirectory() as tmp:
    page = os.path.join(tmp, "probe.html")
    with open(page, "w") as f:
      f.write(PROBE % json.dumps(list(urls)))
    return _result(_run(chromium, f"--virtual-time-budget={BUDGET_MS}", "--dump-dom", "file://" + page))


CLICK = """<script>
(function () {
  var table = document.querySelector('table.sortable'), heads = table.tHead.rows[0].cells, col = -1;
  for (var i = 0; i < heads.length; i++) if (heads[i].textContent === %s) col = i;
  function order() {
    return Array.prototype.map.call(table.tBodies[0].rows, function (r) { return r.cells[0].textContent; });
  }
  var before = order();
  heads[col].click();
  var asc = order();
  heads[col].click();
  var desc = order();
  var pre = document.createElement('pre');
  pre.id = 'probe-result';
  pre.textContent = JSON.stringify({column: col, before: before, asc: asc, desc: desc});
  document.body.appendChild(pre);
})();
</script>
"""


def click_sort(chromium, report_dir: str, header: str) -> dict:
  """Row order (first cells) of the page's first sortable table (the sequences, else an ablation)
  before and after one and two clicks on `header`, run by Chromium on a copy of index.html (in the
  report folder, removed afterwards) with the clicks appended."""
  with open(os.path.join(report_dir, "index.html"), encoding="utf-8") as f:
    text = f.read()
  page = os.path.join(report_dir, ".sort-check.html")
  with open(page, "w", encoding="utf-8") as f:
    f.write(text.replace("</body>", CLICK % json.dumps(header) + "</body>"))
  try:
    return _result(_run(chromium, "--dump-dom", "file://" + os.path.abspath(page)))
  finally:
    os.remove(page)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("report", help="a vsreid report folder (holding index.html)")
  ap.add_argument("--out", required=True, help="screenshot PNG to write")
  ap.add_argument("--window-size", default="1200,1800", help="W,H in pixels")
  args = ap.parse_args(argv)
  chromium = find_chromium()
  if chromium is None:
    print("screenshot_report: error: no Chromium found; apt-get install -y chromium", file=sys.stderr)
    return 2
  page = os.path.join(args.report, "index.html")
  size = tuple(int(v) for v in args.window_size.split(","))
  screenshot(chromium, page, args.out, size)
  print(f"{args.out}: screenshot of {page} at {size[0]}x{size[1]} ({chromium})")
  failed = False
  for src, r in probe_videos(chromium, args.report).items():
    failed |= not r["ok"]
    print(f"  video {src}: " + (f"decoded {r['width']}x{r['height']}, {r['seconds']:.2f} s" if r["ok"]
                                else f"NOT decoded (media error {r['error']})"))
  with open(page, encoding="utf-8") as f:
    header = "J&F" if "<th>J&amp;F</th>" in f.read() else "sequence"
  sort = click_sort(chromium, args.report, header)
  print(f"  table order: {sort['before']}; after a click on {header}: {sort['asc']}; after another: {sort['desc']}")
  if sort["column"] < 0 or sort["asc"] == sort["desc"] and len(set(sort["asc"])) > 1:
    print("  the table did not sort", file=sys.stderr)
    failed = True
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
