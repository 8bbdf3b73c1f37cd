r"""Minimal reproduction of paper_r101's CPU gap: one dilated 3x3 conv, 2048 -> 512 at 41x41.

  nice -n 5 python experiments/bench_conv_repro.py --threads 2 --iters 3

The paper net's ASPP runs four of these (dilations 6, 12, 18, 24) per stream; on this CPU they
dominate its forward. Each variant runs in a fresh process (XLA flags are read at start-up), with
the same thread count for both frameworks (sched_setaffinity before JAX starts; torch threads):
  jax      lax.conv_general_dilated, NHWC/HWIO (what flax emits), under several XLA_FLAGS
  jax_nchw the same conv in NCHW/OIHW
  jax_s2b  dilation as space-to-batch: the d*d phases of the input as a batch, a dense 3x3 conv
  jax_taps the conv as 9 shifted matmuls [HW, Cin] @ [Cin, Cout] summed
  torch    torch.nn.functional.conv2d, NCHW
Each variant's output is checked against a float64 numpy reference (max |diff| printed).
"""
import argparse
import json
import os
import subprocess
import sys
import time

RESULT = "CONV_RESULT "
FLAG_VARIANTS = {
    "default": "",
    "no_thunk_runtime": "--xla_cpu_use_thunk_runtime=false",
    "no_multi_thread_eigen": "--xla_cpu_multi_thread_eigen=false",
    "onednn": "--xla_cpu_use_onednn=true",
    "onednn_custom_call": "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_custom_call=true",
    "xnnpack": "--xla_cpu_use_xnnpack=true",
}


def inputs(args):
  import numpy as np  # pylint: disable=g-import-not-at-top
  rng = np.random.RandomState(0)
  x = rng.randn(1, args.size, args.size, args.cin).astype(np.float32)
  w = (rng.randn(3, 3, args.cin, args.cout) / np.sqrt(9 * args.cin)).astype(np.float32)
  return x, w


def jax_fn(kind, d):
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  dn = ("NHWC", "HWIO", "NHWC")

  def conv(x, w):
    return jax.lax.conv_general_dilated(x, w, (1, 1), ((d, d), (d, d)), rhs_dilation=(d, d), dimension_numbers=dn)

  def nchw(x, w):
    y = jax.lax.conv_general_dilated(x.transpose(0, 3, 1, 2), w.transpose(3, 2, 0, 1), (1, 1), ((d, d), (d, d)),
                                     rhs_dilation=(d, d), dimension_numbers=("NCHW", "OIHW", "NCHW"))
    return y.transpose(0, 2, 3, 1)

  def s2b(x, w):
    n, h, wd, c = x.shape
    hp, wp = -(-h // d) * d, -(-wd // d) * d  # pad up to a multiple of d (zeros, as the conv's padding)
    x = jnp.pad(x, ((0, 0), (0, hp - h), (0, wp - wd), (0, 0)))
    # x[n, p*d + r, q*d + s, c] -> phases[(n, r, s), p, q, c]
    ph = x.reshape(n, hp // d, d, wp // d, d, c).transpose(0, 2, 4, 1, 3, 5).reshape(n * d * d, hp // d, wp // d, c)
    y = jax.lax.conv_general_dilated(ph, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=dn)
    co = y.shape[-1]
    y = y.reshape(n, d, d, hp // d, wp // d, co).transpose(0, 3, 1, 4, 2, 5).reshape(n, hp, wp, co)
    return y[:, :h, :wd]

  def taps(x, w):
    n, h, wd, c = x.shape
    xp = jnp.pad(x, ((0, 0), (d, d), (d, d), (0, 0)))
    out = 0.0
    for a in range(3):
      for b in range(3):
        patch = xp[:, a * d:a * d + h, b * d:b * d + wd, :].reshape(-1, c)
        out = out + patch @ w[a, b]
    return out.reshape(n, h, wd, -1)

  return jax.jit({"jax": conv, "jax_nchw": nchw, "jax_s2b": s2b, "jax_taps": taps}[kind])


def numpy_conv(x, w, d):
  """Reference: the dilated conv as 9 shifted BLAS matmuls in float64."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  n, h, wd, c = x.shape
  xp = np.pad(x.astype(np.float64), ((0, 0), (d, d), (d, d), (0, 0)))
  out = sum(xp[:, a * d:a * d + h, b * d:b * d + wd, :].reshape(-1, c) @ w[a, b].astype(np.float64)
            for a in range(3) for b in range(3))
  return out.reshape(n, h, wd, -1)


def one(args):
  os.sched_setaffinity(0, set(range(args.threads)))
  import numpy as np  # pylint: disable=g-import-not-at-top
  x, w = inputs(args)
  if args.kind == "torch":
    import torch  # pylint: disable=g-import-not-at-top
    torch.set_num_threads(args.threads)
    tx, tw = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), torch.from_numpy(w.transpose(3, 2, 0, 1).copy())

    def run():
      with torch.no_grad():
        return torch.nn.functional.conv2d(tx, tw, padding=args.dilation, dilation=args.dilation)
    out = lambda: run().numpy().transpose(0, 2, 3, 1)
  else:
    import jax  # pylint: disable=g-import-not-at-top
    fn = jax_fn(args.kind, args.dilation)
    jx, jw = jax.device_put(x), jax.device_put(w)
    run = lambda: fn(jx, jw).block_until_ready()
    out = lambda: np.asarray(run())
  t = time.perf_counter()
  y = out()
  first = time.perf_counter() - t
  times = []
  for _ in range(args.iters):
    t = time.perf_counter()
    run()
    times.append(time.perf_counter() - t)
  ref = numpy_conv(x, w, args.dilation)
  print(RESULT + json.dumps(dict(first=first, best=min(times), diff=float(np.abs(y - ref).max()))), flush=True)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--size", type=int, default=41)
  p.add_argument("--cin", type=int, default=2048)
  p.add_argument("--cout", type=int, default=512)
  p.add_argument("--dilation", type=int, default=12)
  p.add_argument("--threads", type=int, default=2)
  p.add_argument("--iters", type=int, default=3)
  p.add_argument("--flags", nargs="*", default=list(FLAG_VARIANTS), help="XLA_FLAGS variants of the default conv")
  p.add_argument("--kinds", nargs="*", default=["jax_nchw", "jax_s2b", "jax_taps", "torch"])
  p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
  p.add_argument("--kind", default="jax", help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.one:
    return one(args)
  flops = 2 * args.size ** 2 * 9 * args.cin * args.cout
  runs = [("jax", name) for name in args.flags] + [(k, "default") for k in args.kinds]
  print(f"3x3 conv {args.cin}->{args.cout} at {args.size}x{args.size}, dilation {args.dilation}, "
        f"{args.threads} threads, {flops / 1e9:.1f} GFLOP; best of {args.iters}")
  print(f"{'variant':<28} {'ms':>8} {'GFLOP/s':>8} {'first s':>8} {'max|diff|':>10}")
  best = {}
  for kind, flag in runs:
    env = dict(os.environ, XLA_FLAGS=FLAG_VARIANTS[flag], OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    cmd = [sys.executable, os.path.abspath(__file__), "--one", "--kind", kind] + [
        f"--{k}={getattr(args, k)}" for k in ("size", "cin", "cout", "dilation", "threads", "iters")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    line = [l for l in proc.stdout.splitlines() if l.startswith(RESULT)]
    label = kind if flag == "default" else f"{kind} {flag}"
    if not line:
      print(f"{label:<28} failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
      continue
    r = json.loads(line[0][len(RESULT):])
    best[label] = r["best"]
    print(f"{label:<28} {1000 * r['best']:8.1f} {flops / r['best'] / 1e9:8.1f} {r['first']:8.2f} {r['diff']:10.2e}",
          flush=True)
  if "torch" in best and "jax" in best:
    fastest = min((v, k) for k, v in best.items() if k != "torch")
    print(f"\njax default / torch time: {best['jax'] / best['torch']:.2f}x; fastest jax variant "
          f"{fastest[1]!r}: {fastest[0] / best['torch']:.2f}x torch's time ({best['torch'] / fastest[0]:.2f}x its speed)")


if __name__ == "__main__":
  main()
