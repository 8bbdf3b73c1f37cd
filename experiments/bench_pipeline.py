r"""End-to-end pipeline benchmark on any JAX backend: per-stage ms, frames/s, compile time, peak memory.

  python experiments/bench_pipeline.py                         # demo clip, both nets, both methods
  python experiments/bench_pipeline.py --before /work/main     # the same run with another checkout too,
                                                               # printed side by side as ratios
  python experiments/bench_pipeline.py --davis ROOT --sequence bear --frames 40 --nets lite_cpu
  python experiments/bench_pipeline.py --nets lite_cpu --prefetch both  # with and without read-ahead

Every (package, net, method) runs in a fresh process (so compile time is a cold start and peak RSS
is that run's own) through the Python API (`Segmenter.segment`), which both old and new
checkouts share. Nets: `lite_cpu` (the shipped weights) and `paper_r101` (the paper's two-stream
ResNet-101 with random weights, written once to the work folder; `--paper-crop` shrinks its crop
so that it finishes on a CPU: 449 is the paper's). Random weights lose objects, so `paper_r101`
under `vsreid` also exercises the detector and ReID.

Printed per run: ms/frame of every stage the timer books (flow, warp, crop, net, paste, finish,
merge, detect, embed, reid, recover, read), frames/s excluding compilation, end-to-end frames/s
(wall clock including compilation), compile seconds, peak host RSS and, where the backend reports
it (GPU/TPU `memory_stats`), the device's peak bytes in use. With prefetch on (the default; `--prefetch`),
the forward pass's flows are computed on the read-ahead thread: "read" is then the time the main
thread waited for the next frame and its flow, and "flow" only the flows computed in the main
thread (the solver's recoveries). The persistent compilation cache is
off in the measured processes (compile time is the cold figure).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

RESULT = "BENCH_RESULT "
STAGES = ("read", "flow", "warp", "crop", "net", "paste", "finish", "merge", "detect", "embed", "reid", "recover")


def paper_weights(path, crop):
  """Random-weight paper_r101 weights file (host-initialised; timing does not depend on values)."""
  if os.path.isfile(path):
    return path
  from vsreid_jax.models import propagation, weights  # pylint: disable=g-import-not-at-top
  cfg = weights.model_config("paper_r101")
  model = propagation.build_model(cfg.model)
  variables = propagation.numpy_init(model, *propagation.dummy_inputs(crop, 1))
  weights.save_weights(path, variables, "paper_r101")
  return path


def one(args):
  """Runs one (net, method) in this process and prints its figures as one JSON line."""
  import jax  # pylint: disable=g-import-not-at-top
  from vsreid_jax.api import Segmenter  # pylint: disable=g-import-not-at-top
  from vsreid_jax.configs import segment as segment_config  # pylint: disable=g-import-not-at-top
  from vsreid_jax.data import read_mask  # pylint: disable=g-import-not-at-top
  from vsreid_jax.data.frames import FolderFrames  # pylint: disable=g-import-not-at-top
  from vsreid_jax.utils import peak_rss_mb  # pylint: disable=g-import-not-at-top

  config = segment_config.get_config()
  config.method = args.method
  if isinstance(config.flow, str):
    config.flow = f"dis-{args.flow}"
  else:  # older checkouts (--before): a flow section with a DIS preset
    config.flow.preset = args.flow
  if "prefetch" in config:  # older checkouts (--before) have no read-ahead
    config.prefetch = args.prefetch == "on"
  if args.net == "paper_r101":
    config.net = paper_weights(os.path.join(args.workdir, f"paper_r101_random_{args.paper_crop}.msgpack"),
                               args.paper_crop)
    config.propagation.scales = ((0.15, args.paper_crop),)
  files = sorted(f for f in os.listdir(args.images) if f.endswith((".jpg", ".png")))[:args.frames]
  frames = FolderFrames(args.images, names=files)
  seg = Segmenter(config)
  state = seg.init_state(frames, name=args.name)
  seg.add_mask(state, read_mask(os.path.join(args.masks, os.path.splitext(files[0])[0] + ".png")))
  start = time.perf_counter()
  for _ in seg.segment(state):
    pass
  wall = time.perf_counter() - start
  timer = state.timer
  stats = jax.local_devices()[0].memory_stats() or {}
  result = getattr(state, "result", None)
  out = dict(backend=jax.default_backend(), device=str(jax.local_devices()[0].device_kind), frames=len(frames),
             objects=len(state.object_ids), wall=wall, seconds=dict(timer.seconds), calls=dict(timer.calls),
             rss_mb=peak_rss_mb(), device_peak_mb=stats.get("peak_bytes_in_use", 0) / 2 ** 20 or None,
             retrievals=len(result.retrievals) if result is not None else 0)
  print(RESULT + json.dumps(out), flush=True)


def launch(args, pythonpath, net, method):
  env = dict(os.environ, PYTHONPATH=pythonpath, VSREID_COMPILE_CACHE="0")
  cmd = [sys.executable, os.path.abspath(__file__), "--one", "--net", net, "--method", method,
         "--images", args.images, "--masks", args.masks, "--name", args.name, "--frames", str(args.frames),
         "--flow", args.flow, "--prefetch", args.prefetch, "--paper-crop", str(args.paper_crop), "--workdir", args.workdir]
  proc = subprocess.run(["nice", "-n", str(args.nice)] + cmd, env=env, capture_output=True, text=True)
  line = [l for l in proc.stdout.splitlines() if l.startswith(RESULT)]
  if proc.returncode or not line:
    print(f"FAILED ({pythonpath}, {net}, {method}):\n{proc.stderr[-3000:]}", flush=True)
    return None
  return json.loads(line[0][len(RESULT):])


def summary(r):
  s = r["seconds"]
  steady = sum(v for k, v in s.items() if k != "compile")
  n = r["frames"]
  return dict(fps=n / steady if steady else float("inf"), e2e=n / r["wall"], compile=s.get("compile", 0.0),
              rss=r["rss_mb"], dev=r["device_peak_mb"], ms={k: 1000 * s[k] / n for k in STAGES if k in s})


def row(label, r):
  m = summary(r)
  stages = " ".join(f"{k}={v:.1f}" for k, v in m["ms"].items())
  dev = f"{m['dev']:.0f}" if m["dev"] else "n/a"
  return (f"{label:<34} {m['fps']:7.2f} {m['e2e']:7.2f} {m['compile']:8.1f} {m['rss']:7.0f} {dev:>7} "
          f"{r['retrievals']:4d}  {stages}")


def main(argv=None):
  here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  demo = os.path.join(here, "vsreid_jax", "assets", "demo")
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
  p.add_argument("--net", default=None, help=argparse.SUPPRESS)
  p.add_argument("--method", default=None, help=argparse.SUPPRESS)
  p.add_argument("--nets", nargs="+", default=["lite_cpu", "paper_r101"])
  p.add_argument("--methods", nargs="+", default=["propagate", "vsreid"])
  p.add_argument("--davis", default=None, help="a DAVIS root (default: the demo clip)")
  p.add_argument("--sequence", default=None)
  p.add_argument("--resolution", default="480p")
  p.add_argument("--frames", type=int, default=25, help="first N frames")
  p.add_argument("--paper-frames", type=int, default=6, help="first N frames for paper_r101")
  p.add_argument("--paper-crop", type=int, default=129, help="paper_r101 crop (the paper: 449)")
  p.add_argument("--flow", default="medium", choices=["ultrafast", "fast", "medium"])
  p.add_argument("--prefetch", default="on", choices=["on", "off", "both"],
                 help="frames and flows read ahead on a thread (segment config prefetch); both: each run twice")
  p.add_argument("--before", default=None, metavar="DIR", help="another checkout to run too (ratios after/before)")
  p.add_argument("--before-first", action="store_true", help="run the --before checkout first in each pair")
  p.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "vsreid_bench_pipeline"))
  p.add_argument("--nice", type=int, default=5)
  p.add_argument("--images", default=None, help=argparse.SUPPRESS)
  p.add_argument("--masks", default=None, help=argparse.SUPPRESS)
  p.add_argument("--name", default=None, help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.one:
    return one(args)
  os.makedirs(args.workdir, exist_ok=True)
  if "paper_r101" in args.nets:  # written here, not in a measured process (it would add to its RSS)
    paper_weights(os.path.join(args.workdir, f"paper_r101_random_{args.paper_crop}.msgpack"), args.paper_crop)
  if args.davis:
    args.images = os.path.join(args.davis, "JPEGImages", args.resolution, args.sequence)
    args.masks = os.path.join(args.davis, "Annotations", args.resolution, args.sequence)
    args.name = args.sequence
  else:
    args.images, args.masks, args.name = os.path.join(demo, "JPEGImages"), os.path.join(demo, "Annotations"), "demo"
  packages = [("after", here)] + ([("before", os.path.abspath(args.before))] if args.before else [])
  if args.before_first:  # the first process may pay for cold disk caches: check the order's effect
    packages.reverse()
  results = {}
  header = (f"{'package/net/method':<34} {'fps*':>7} {'e2e fps':>7} {'compile':>8} {'RSS MiB':>7} {'dev MiB':>7} "
            f"{'ret':>4}  ms/frame per stage")
  print(header, flush=True)
  modes = ["on", "off"] if args.prefetch == "both" else [args.prefetch]
  for net in args.nets:
    for method in args.methods:
      for label, path in packages:
        for mode in modes:
          frames = args.paper_frames if net == "paper_r101" else args.frames
          r = launch(argparse.Namespace(**dict(vars(args), frames=frames, prefetch=mode)), path, net, method)
          if r is None:
            continue
          if mode == modes[0]:
            results[(label, net, method)] = r
          else:
            results[(label, net, method, "off")] = r
          print(row(f"{label}/{net}/{method}" + ("/no-prefetch" if mode == "off" else ""), r), flush=True)
  any_r = next(iter(results.values()), None)
  if any_r:
    print(f"\nbackend {any_r['backend']} ({any_r['device']}); clip {args.name}; fps* excludes compilation; "
          f"e2e: wall clock incl. compilation; ret: retrievals")
  print("\nratios (after / before: fps* and e2e > 1 is faster; compile and RSS < 1 is better), "
        "and vsreid / propagate within a package:")
  for net in args.nets:
    for method in args.methods:
      a, b = results.get(("after", net, method)), results.get(("before", net, method))
      if a and b:
        sa, sb = summary(a), summary(b)
        print(f"  {net}/{method}: fps* {sa['fps'] / sb['fps']:.2f}x, e2e {sa['e2e'] / sb['e2e']:.2f}x, "
              f"compile {sa['compile'] / max(sb['compile'], 1e-9):.2f}x, RSS {sa['rss'] / sb['rss']:.2f}x")
      for label, _ in packages:
        on, off = results.get((label, net, method)), results.get((label, net, method, "off"))
        if on and off:
          print(f"  {label}/{net}/{method}: prefetch on / off: fps* {summary(on)['fps'] / summary(off)['fps']:.2f}x, "
                f"e2e {summary(on)['e2e'] / summary(off)['e2e']:.2f}x")
    for label, _ in packages:
      v, pr = results.get((label, net, "vsreid")), results.get((label, net, "propagate"))
      if v and pr:
        print(f"  {label}/{net}: vsreid costs {summary(pr)['fps'] / summary(v)['fps']:.2f}x propagate "
              f"(steady time per frame), {summary(pr)['e2e'] / summary(v)['e2e']:.2f}x end to end")


if __name__ == "__main__":
  main()
