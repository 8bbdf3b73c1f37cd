"""Plays a `vsreid segment --overlay` video in headless Chromium: a screenshot of a page holding
it in a <video> element (seeked to --at seconds) and the size and duration Chromium decoded.

  apt-get install -y chromium
  python experiments/screenshot_overlay.py OUT/demo_overlay.webm --out shot.png [--at 0.5]

Prints the decoded size and duration (or the media error); exits 1 when Chromium cannot decode it.
"""
import argparse
import html
import json
import os
import sys
import tempfile

from screenshot_report import BUDGET_MS, _result, _run, find_chromium, probe_sources  # pylint: disable=g-bad-import-order

PAGE = """<!DOCTYPE html><html><body style="margin:0;background:#222;color:#eee;font:14px sans-serif">
<video id="v" src="%(src)s" muted preload="auto" style="display:block"></video>
<pre id="status">loading</pre><script>
var v = document.getElementById('v'), s = document.getElementById('status');
v.addEventListener('loadeddata', function () { v.currentTime = %(at)s; }, {once: true});
v.addEventListener('seeked', function () {
  s.textContent = 'decoded ' + v.videoWidth + 'x' + v.videoHeight + ', ' + v.duration.toFixed(2) + ' s, at '
      + v.currentTime.toFixed(2) + ' s'; });
v.addEventListener('error', function () { s.textContent = 'media error ' + (v.error ? v.error.code : '?'); });
</script></body></html>
"""


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("video", help="an overlay video (OUT/<sequence>_overlay.mp4 or .webm)")
  ap.add_argument("--out", required=True, help="screenshot PNG to write")
  ap.add_argument("--at", type=float, default=0.5, help="seconds into the video to show (default 0.5)")
  args = ap.parse_args(argv)
  chromium = find_chromium()
  if chromium is None:
    print("screenshot_overlay: error: no Chromium found; apt-get install -y chromium", file=sys.stderr)
    return 2
  url = "file://" + os.path.abspath(args.video)
  result = probe_sources(chromium, [url])[url]
  with tempfile.TemporaryDirectory() as tmp:
    page = os.path.join(tmp, "overlay.html")
    with open(page, "w") as f:
      f.write(PAGE % {"src": html.escape(url), "at": json.dumps(args.at)})
    _run(chromium, f"--virtual-time-budget={BUDGET_MS}", f"--screenshot={os.path.abspath(args.out)}",
         "--window-size=900,600", "file://" + page)
  if not result["ok"]:
    print(f"{args.video}: NOT decoded by {chromium} (media error {result['error']})")
    return 1
  print(f"{args.video}: decoded by {chromium}: {result['width']}x{result['height']}, {result['seconds']:.2f} s; "
        f"screenshot at {args.at} s: {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
