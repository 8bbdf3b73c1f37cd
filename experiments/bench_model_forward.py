r"""Forward time of the propagation net N_mp, JAX vs the same net in torch.

  python experiments/bench_model_forward.py --config paper_r101 --crop 321
  python experiments/bench_model_forward.py --config lite_cpu --crop 193

JAX: `make_propagation_fn` (jitted, batch N, inference), compile time (first
call) and steady-state ms per call. torch (when importable): the same
architecture built here from the same config: for bottleneck/width-64 configs
torchvision's ResNet (`resnet101`, `replace_stride_with_dilation`), its stem
swapped for the deep stem and its first dilated blocks dilated as in the
original when the config says so; a mirror of the basic-block ResNet
otherwise (torchvision's BasicBlock has no dilation). Same ASPP, skip decoder,
two streams, mean, bilinear upsampling. Parameter counts of the two are
printed side by side as a check that the architectures match.

Threads: both frameworks get the same number. The process is pinned to the
first `--threads` CPUs (sched_setaffinity, before JAX starts: XLA sizes its
pool from the affinity mask) and torch.set_num_threads(--threads).
OMP_WAIT_POLICY defaults to PASSIVE: on a shared, oversubscribed machine
torch's OpenMP workers otherwise spin at every barrier (measured here on the
lite net: 550 ms per call instead of 130 ms); XLA's pool does not spin.
"""

import argparse
import os
import statistics
import sys
import time


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--config", default="paper_r101",
                 choices=["lite_cpu", "paper_r101"])
  p.add_argument("--crop", type=int, default=321)
  p.add_argument("--batch", type=int, default=1)
  p.add_argument("--iters", type=int, default=5)
  p.add_argument("--warmup", type=int, default=1)
  p.add_argument("--threads", type=int, default=os.cpu_count())
  p.add_argument("--no-torch", action="store_true")
  p.add_argument("--omp-wait-policy", default="PASSIVE",
                 help="OMP_WAIT_POLICY for torch (unless already set)")
  return p.parse_args(argv)


def time_calls(fn, warmup, iters):
  """(first call s, [steady-state call s]); fn must block until done."""
  t0 = time.perf_counter()
  fn()
  first = time.perf_counter() - t0
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(iters):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return first, times


def bench_jax(config, args):
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from vsreid_jax.models import propagation  # pylint: disable=g-import-not-at-top

  model = propagation.build_model(config.model)
  dummy = propagation.dummy_inputs(args.crop, args.batch)
  # Host-filled weights: timing does not depend on values, and flax's init
  # would compile a sampler per parameter shape.
  variables = propagation.numpy_init(model, *dummy)
  n_params = sum(int(np.prod(x.shape))
                 for x in jax.tree_util.tree_leaves(variables["params"]))
  fn = propagation.make_propagation_fn(model, variables)
  rng = np.random.RandomState(0)
  s, n = args.crop, args.batch
  image = rng.uniform(0, 255, (n, s, s, 3)).astype(np.float32)
  flow = rng.randn(n, s, s, 2).astype(np.float32)
  prob = rng.uniform(0, 1, (n, s, s, 1)).astype(np.float32)
  first, times = time_calls(
      lambda: fn(image, flow, prob).block_until_ready(), args.warmup,
      args.iters)
  return dict(first=first, times=times, params=n_params)


def build_torch_model(mc, torch, torchvision):
  """torch twin of propagation.build_model(mc) (NCHW)."""
  from vsreid_jax.models import resnet as resnet_lib  # pylint: disable=g-import-not-at-top
  tnn = torch.nn
  b, h, k = mc.backbone, mc.aspp, mc.skip
  strides, dilations = resnet_lib.stage_strides_and_dilations(
      len(b.stage_sizes), b.output_stride)

  def conv_bn_relu(cin, cout, ksize, stride=1, dilation=1):
    return tnn.Sequential(
        tnn.Conv2d(cin, cout, ksize, stride, dilation * (ksize // 2),
                   dilation, bias=False),
        tnn.BatchNorm2d(cout), tnn.ReLU(inplace=True))

  class BasicBlock(tnn.Module):
    """torchvision's BasicBlock with dilation (as resnet.BasicBlock)."""

    def __init__(self, cin, planes, stride, dilation, first_dilation):
      super().__init__()
      self.conv1 = tnn.Conv2d(cin, planes, 3, stride, first_dilation,
                              first_dilation, bias=False)
      self.bn1 = tnn.BatchNorm2d(planes)
      self.conv2 = tnn.Conv2d(planes, planes, 3, 1, dilation, dilation,
                              bias=False)
      self.bn2 = tnn.BatchNorm2d(planes)
      self.downsample = None
      if stride != 1 or cin != planes:
        self.downsample = tnn.Sequential(
            tnn.Conv2d(cin, planes, 1, stride, bias=False),
            tnn.BatchNorm2d(planes))

    def forward(self, x):
      y = torch.relu(self.bn1(self.conv1(x)))
      y = self.bn2(self.conv2(y))
      x = x if self.downsample is None else self.downsample(x)
      return torch.relu(x + y)

  def backbone(in_ch):
    w = b.width
    if b.block == "bottleneck":
      if w != 64:
        raise NotImplementedError("torch twin: bottleneck needs width 64")
      net = torchvision.models.resnet.ResNet(
          torchvision.models.resnet.Bottleneck, list(b.stage_sizes),
          replace_stride_with_dilation=[s == 1 for s in strides[1:]])
      if b.dilate_first_block:  # original: first block dilated too
        for i, d in enumerate(dilations):
          conv = getattr(net, f"layer{i + 1}")[0].conv2
          conv.dilation, conv.padding = (d, d), (d, d)
    else:
      net = tnn.Module()
      cin, prev = w, 1
      for i, (n, s, d) in enumerate(zip(b.stage_sizes, strides, dilations)):
        first = d if b.dilate_first_block else prev
        blocks = [BasicBlock(cin, w * 2**i, s, d, first)]
        blocks += [BasicBlock(w * 2**i, w * 2**i, 1, d, d)
                   for _ in range(n - 1)]
        setattr(net, f"layer{i + 1}", tnn.Sequential(*blocks))
        cin, prev = w * 2**i, d
      net.maxpool = tnn.MaxPool2d(3, 2, 1)
    if b.deep_stem:
      net.conv1 = tnn.Sequential(
          conv_bn_relu(in_ch, w, 3, 2), conv_bn_relu(w, w, 3),
          tnn.Conv2d(w, 2 * w, 3, 1, 1, bias=False))
      net.bn1 = tnn.BatchNorm2d(2 * w)
      blk = net.layer1[0]  # its input is now 2 * width channels
      blk.conv1 = tnn.Conv2d(2 * w, blk.conv1.out_channels, 1, bias=False)
      if blk.downsample is not None:
        blk.downsample[0] = tnn.Conv2d(2 * w, blk.downsample[0].out_channels,
                                       1, bias=False)
    else:
      net.conv1 = tnn.Conv2d(in_ch, w, 7, 2, 3, bias=False)
      net.bn1 = tnn.BatchNorm2d(w)
    net.fc = None
    net.avgpool = None
    return net

  expansion = 4 if b.block == "bottleneck" else 1
  top_ch = b.width * 2**(len(b.stage_sizes) - 1) * expansion
  low_ch = b.width * expansion

  class Stream(tnn.Module):

    def __init__(self, in_ch):
      super().__init__()
      self.backbone = backbone(in_ch)
      self.branches = tnn.ModuleList([
          conv_bn_relu(top_ch, h.branch_channels,
                       h.rate1_kernel_size if r == 1 else 3, 1, r)
          for r in h.rates])
      self.fuse = conv_bn_relu(h.branch_channels * len(h.rates),
                               h.out_channels, h.fuse_kernel_size)
      self.dropout = tnn.Dropout(h.dropout_rate)
      cls_in = h.out_channels
      if k.channels > 0:
        self.skip = conv_bn_relu(low_ch, k.channels, 1)
        self.decoder = conv_bn_relu(h.out_channels + k.channels,
                                    k.decoder_channels, 3)
        cls_in = k.decoder_channels
      self.classifier = tnn.Conv2d(cls_in, 1, 1)

    def forward(self, x):
      n = self.backbone
      x = n.maxpool(torch.relu(n.bn1(n.conv1(x))))
      low = x = n.layer1(x)
      x = n.layer4(n.layer3(n.layer2(x)))
      x = torch.cat([br(x) for br in self.branches], 1)
      x = self.dropout(self.fuse(x))
      if k.channels > 0:
        low = self.skip(low)
        x = torch.nn.functional.interpolate(
            x, size=low.shape[2:], mode="bilinear", align_corners=False)
        x = self.decoder(torch.cat([x, low], 1))
      return self.classifier(x)

  class TwoStream(tnn.Module):

    def __init__(self):
      super().__init__()
      self.streams = tuple(mc.streams)
      self.register_buffer("mean", torch.tensor(mc.rgb_mean).view(1, 3, 1, 1))
      self.register_buffer("std", torch.tensor(mc.rgb_std).view(1, 3, 1, 1))
      if "rgb" in self.streams:
        self.rgb_stream = Stream(4)
      if "flow" in self.streams:
        self.flow_stream = Stream(3)

    def forward(self, image, flow, prob):
      logits = []
      if "rgb" in self.streams:
        rgb = image.flip(1) if mc.bgr else image
        rgb = (rgb - self.mean) / self.std
        logits.append(self.rgb_stream(torch.cat([rgb, prob], 1)))
      if "flow" in self.streams:
        logits.append(self.flow_stream(
            torch.cat([flow * mc.flow_scale, prob], 1)))
      x = sum(logits) / len(logits)
      return torch.nn.functional.interpolate(
          x, size=image.shape[2:], mode="bilinear", align_corners=False)

  return TwoStream()


def bench_torch(config, args):
  from vsreid_jax.models import import_torch  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  torchvision = import_torch.import_torchvision()
  torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  model = build_torch_model(config.model, torch, torchvision).eval()
  n_params = sum(p.numel() for p in model.parameters())
  s, n = args.crop, args.batch
  image = torch.rand(n, 3, s, s) * 255
  flow = torch.randn(n, 2, s, s)
  prob = torch.rand(n, 1, s, s)

  def call():
    with torch.inference_mode():
      return model(image, flow, prob)

  assert call().shape == (n, 1, s, s)
  first, times = time_calls(call, args.warmup, args.iters)
  return dict(first=first, times=times, params=n_params,
              version=torch.__version__)


def main(argv=None):
  args = parse_args(argv)
  cpus = sorted(os.sched_getaffinity(0))
  if args.threads < len(cpus):
    os.sched_setaffinity(0, cpus[:args.threads])  # before JAX starts
  os.environ.setdefault("OMP_WAIT_POLICY", args.omp_wait_policy)  # pre-torch
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  from vsreid_jax import configs  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top

  config = configs.get("propagation", args.config)
  results = {"jax " + jax.__version__: bench_jax(config, args)}
  if not args.no_torch:
    try:
      r = bench_torch(config, args)
      results["torch " + r.pop("version")] = r
    except ImportError as e:
      print(f"torch part skipped: {e}")

  b = config.model.backbone
  print(f"\nconfig {args.config}: {'+'.join(config.model.streams)} streams, "
        f"{b.block} {list(b.stage_sizes)} width {b.width}, output stride "
        f"{b.output_stride}, deep stem {b.deep_stem}; crop {args.crop}, "
        f"batch {args.batch}, {args.iters} timed calls after {args.warmup} "
        f"warm-up")
  print(f"threads: {args.threads} for both (CPU affinity "
        f"{sorted(os.sched_getaffinity(0))}; torch.set_num_threads"
        f"({args.threads}), OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']})\n")
  print("| framework | params | first call (compile) s | ms/call median | "
        "ms/call min |")
  print("|---|---|---|---|---|")
  for name, r in results.items():
    print(f"| {name} | {r['params']:,} | {r['first']:.2f} | "
          f"{1e3 * statistics.median(r['times']):.1f} | "
          f"{1e3 * min(r['times']):.1f} |")
  if len(results) == 2:
    (_, j), (_, t) = results.items()
    print(f"| ratio JAX/torch | | | "
          f"{statistics.median(j['times']) / statistics.median(t['times']):.2f}"
          f" | {min(j['times']) / min(t['times']):.2f} |")


if __name__ == "__main__":
  main()
