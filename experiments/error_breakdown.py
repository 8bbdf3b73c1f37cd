"""Where N_mp loses its points: J&F of the real pipeline against two oracles (issue 17).

For each net, on the sequences of a split of data/splits.py (default: val), whole videos:
  real      Algorithm 1 as `vsreid segment --method propagate` runs it (the previous prediction,
            warped, is the prior; its box is the crop; objects below the lost rule are dropped);
  gt_box    the same, but every frame is cropped around the ground-truth box of the object
            (enlarged by the net's margin): localisation perfect, the prior still the net's own;
  gt_prior  every frame's prior is the ground-truth mask of the previous frame, warped (binarised,
            as the nets were trained): no accumulated drift, one step of error only.
real -> gt_box is what localisation costs, real -> gt_prior what the accumulation of errors costs;
what gt_prior still misses is the net's one-step segmentation error (and the flow's).

  python experiments/error_breakdown.py --nets identity default --split val --out /tmp/breakdown
  python experiments/error_breakdown.py --nets default --target color --split val --out /tmp/breakdown

`--target` fuses a first-frame target model with N_mp in every mode (propagation/target.py; the
settings as validate_propagation.py's `--target`).
"""
import argparse
import functools
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments.validate_propagation import target_overrides  # pylint: disable=wrong-import-position
from vsreid_jax import configs  # pylint: disable=wrong-import-position
from vsreid_jax.api import Segmenter  # pylint: disable=wrong-import-position
from vsreid_jax.configs import segment as segment_config  # pylint: disable=wrong-import-position
from vsreid_jax.data import DavisDataset  # pylint: disable=wrong-import-position
from vsreid_jax.data import splits  # pylint: disable=wrong-import-position
from vsreid_jax.data.results import SequenceWriter  # pylint: disable=wrong-import-position
from vsreid_jax.eval.davis import evaluate_sequences  # pylint: disable=wrong-import-position
from vsreid_jax.flow.warp import warp  # pylint: disable=wrong-import-position
from vsreid_jax import geometry  # pylint: disable=wrong-import-position
from vsreid_jax.propagation.algorithm1 import binarize, paste_stage  # pylint: disable=wrong-import-position
from vsreid_jax.solver.merge import merge_to_ids  # pylint: disable=wrong-import-position

MODES = ("real", "gt_box", "gt_prior")


@functools.partial(jax.jit, static_argnames=("margin", "size", "threshold", "gt_box"))
def oracle_crops(image, flow, warped, gt, *, margin, size, threshold, gt_box):
  """Like algorithm1.crop_stage, the boxes taken from gt[K,H,W] (gt_box) or from warped[K,H,W]."""
  h, w = warped.shape[1:]
  boxes, valid = jax.vmap(lambda p: geometry.mask_box(p, threshold))(gt if gt_box else warped)
  boxes = jax.vmap(lambda b: geometry.enlarge_box(b, margin, h, w))(boxes)
  img_c = jax.vmap(lambda b: geometry.crop_resize(image, b, size))(boxes)
  flow_c = jax.vmap(lambda b: geometry.crop_flow(flow, b, size))(boxes)
  prob_c = jax.vmap(lambda p, b: geometry.crop_resize(p[..., None], b, size))(warped, boxes)
  return img_c, flow_c, prob_c, boxes, valid


def oracle_propagate(seg: Segmenter, state, gt_masks: np.ndarray, mode: str):
  """Yields (frame, ids) of Algorithm 1 with an oracle box or prior; gt_masks[T,K,H,W] in {0,1}.
  No lost rule: with an oracle the object is never dropped (what the oracle is about)."""
  prop = seg.propagator
  cfg = prop.config
  kb = state.first_prob.shape[0]
  pad = lambda m: np.concatenate([m, np.zeros((kb - m.shape[0],) + m.shape[1:], m.dtype)]) if kb > m.shape[0] else m
  prob = jnp.asarray(state.first_prob)
  prop.fit_target(state.frames[0], state.first_prob)
  yield 0, merge_to_ids(prob, state.object_ids)
  h, w = prob.shape[1:]
  for i in range(1, len(state.frames)):
    image = jnp.asarray(state.frames[i], jnp.float32)
    flow = jnp.asarray(state.flows.get(i, i - 1))
    prev = jnp.asarray(pad(gt_masks[i - 1])) if mode == "gt_prior" else prob
    if cfg.binarize_prior:
      prev = binarize(prev, cfg.threshold)
    warped = warp(prev, flow)
    gt = jnp.asarray(pad(gt_masks[i]))
    total = 0.0
    for margin, size in cfg.scales:
      img_c, flow_c, prob_c, boxes, valid = oracle_crops(image, flow, warped, gt, margin=float(margin), size=int(size),
                                                         threshold=cfg.threshold, gt_box=mode == "gt_box")
      logits = prop.net(img_c, flow_c, prob_c)
      if prop.target is not None:
        logits = prop.target.fuse(img_c, logits)
      total = total + paste_stage(logits, boxes, valid, height=h, width=w)
    prob = total / len(cfg.scales)
    yield i, merge_to_ids(prob, state.object_ids)


def run(net: str, mode: str, jobs, out_dir: str, flow_cache: str, target: str = "off") -> float:
  """Segments every job with one net and mode into out_dir/<root>/<seq>; returns seconds."""
  config = segment_config.get_config()
  for assignment in target_overrides(target):
    configs.override(config, assignment, "--target")
  config.net = net
  config.method = "propagate"
  seg = Segmenter(config, flow_cache_dir=flow_cache)
  t = time.perf_counter()
  for ds, seq in jobs:
    frames = ds.frames(seq)
    state = seg.init_state(frames, name=os.path.join(os.path.basename(ds.root), seq))
    seg.add_mask(state, ds.first_mask(seq))
    if mode == "real":
      stream = seg.propagate(state)
    else:
      ann = np.stack([ds.annotation(seq, n) for n in frames.names])
      gt = (ann[:, None] == np.asarray(state.object_ids)[None, :, None, None]).astype(np.float32)
      stream = oracle_propagate(seg, state, gt, mode)
    with SequenceWriter(os.path.join(out_dir, os.path.basename(ds.root)), seq) as w:
      for i, ids in stream:
        w.write(frames.names[i], ids)
  return time.perf_counter() - t


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--nets", nargs="+", default=["identity", "default"], help="identity, default or weights files")
  ap.add_argument("--split", choices=["val", "test"], default="val")
  ap.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
  ap.add_argument("--out", required=True)
  ap.add_argument("--flow-cache", default=None, help="flow cache (default OUT/flow)")
  ap.add_argument("--target", default="off", help="target model: off, color, backbone[:key=value,...]")
  ap.add_argument("--data-dir", default=None)
  args = ap.parse_args(argv)
  data_dir = args.data_dir or str(splits.shared_data_dir())
  datasets = {name: DavisDataset(os.path.join(data_dir, name), res) for name, res in splits.DATA_ROOTS}
  split = {name: splits.sequences(args.split, name) for name, _ in splits.DATA_ROOTS}
  jobs = [(datasets[name], seq) for name, _ in splits.DATA_ROOTS for seq in split[name]]
  flow_cache = args.flow_cache or os.path.join(args.out, "flow")
  table = {}
  for k, net in enumerate(args.nets):
    for mode in args.modes:
      out_dir = os.path.join(args.out, f"net{k}", mode)
      seconds = run(net, mode, jobs, out_dir, flow_cache, args.target)
      objects = []
      for name, _ in splits.DATA_ROOTS:
        res = evaluate_sequences(datasets[name], list(split[name]), os.path.join(out_dir, name), progress=False)
        objects += res.per_object
      jf = float(np.mean([(j + f) / 2 for _, j, f in objects]))
      table[(net, mode)] = (jf, {o: (j + f) / 2 for o, j, f in objects})
      print(f"{net} {mode}: J&F {jf:.3f} ({seconds:.0f} s) " +
            ", ".join(f"{o} {(j + f) / 2:.3f}" for o, j, f in objects), flush=True)
  print(f"\n{args.split}: " + ", ".join(f"{n}: {list(s)}" for n, s in split.items()))
  print("\n| N_mp | " + " | ".join(args.modes) + " |\n|---" * 1 + "|---" * len(args.modes) + "|")
  for net in args.nets:
    print(f"| {os.path.basename(net)} | " + " | ".join(f"{table[(net, m)][0]:.3f}" for m in args.modes) + " |")
  objs = list(table[(args.nets[0], args.modes[0])][1])
  print("\nper object:\n| N_mp | mode | " + " | ".join(objs) + " |\n" + "|---" * (len(objs) + 2) + "|")
  for net in args.nets:
    for m in args.modes:
      print(f"| {os.path.basename(net)} | {m} | " + " | ".join(f"{table[(net, m)][1][o]:.3f}" for o in objs) + " |")


if __name__ == "__main__":
  main()
