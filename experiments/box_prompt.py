"""Box prompt vs mask prompt (issue 14, item 2) on a split of data/splits.py.

For every sequence of `--split` (val by default) each object is given once by its first-frame GT
mask (`Segmenter.add_mask`) and once by the GT mask's tight box (`Segmenter.add_box`: N_mp's
recovery path makes the mask). Prints the first-frame IoU of each box-derived mask against the GT
mask, and the video J&F of both prompts from the project's DAVIS evaluator (the code `vsreid eval`
runs, which also scores OUT/<prompt>/<root>/ afterwards: see the printed commands).

  nice -n 5 python experiments/box_prompt.py --split val --method propagate --out /tmp/box_prompt
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vsreid_jax.api import Segmenter, SequenceJob, segment_dataset  # pylint: disable=wrong-import-position
from vsreid_jax.configs import segment as segment_config  # pylint: disable=wrong-import-position
from vsreid_jax.data import DavisDataset  # pylint: disable=wrong-import-position
from vsreid_jax.data import splits as data_splits  # pylint: disable=wrong-import-position
from vsreid_jax.geometry import mask_box_np as mask_box  # pylint: disable=wrong-import-position
from vsreid_jax.eval.davis import evaluate_sequences  # pylint: disable=wrong-import-position

PROMPTS = ("mask", "box")


def segment(seg, ds, seq, prompt, out_dir):
  """Segments one sequence from its first-frame GT given as `prompt`; writes OUT_DIR/<seq>/.
  Returns {object id: first-frame IoU of the prompt's mask against the GT} (1.0 for "mask")."""
  gt = ds.first_mask(seq)
  ious = {}

  def add(seg_, state):
    if prompt == "mask":
      seg_.add_mask(state, gt)
      ious.update({int(k): 1.0 for k in state.object_ids})
      return
    for k in np.unique(gt):
      if k in (0, 255):
        continue
      obj = gt == k
      got = seg_.add_box(state, mask_box(obj), frame_idx=0, obj_id=int(k))
      ious[int(k)] = float((got & obj).sum() / (got | obj).sum())

  job = SequenceJob(name=seq, frames=ds.frames(seq), prompts=add, cache_key=f"{os.path.basename(ds.root)}/{seq}")
  for _ in segment_dataset(seg, [job], out_dir):
    pass
  return ious


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--split", choices=["val", "test"], default="val")
  ap.add_argument("--method", choices=["propagate", "vsreid"], default="propagate",
                  help="propagate (Algorithm 1, default) or vsreid (the full solver)")
  ap.add_argument("--net", default="default", help="N_mp: default (shipped), identity or a weights file")
  ap.add_argument("--out", required=True, help="results folder: OUT/<prompt>/<root>/<seq>/")
  ap.add_argument("--data-dir", default=None)
  args = ap.parse_args(argv)
  data_dir = args.data_dir or str(data_splits.shared_data_dir())
  config = segment_config.get_config()
  config.net, config.method = args.net, args.method
  seg = Segmenter(config, flow_cache_dir=os.path.join(args.out, "flow"))  # flows computed once for both prompts
  roots = [(name, res, DavisDataset(os.path.join(data_dir, name), res)) for name, res in data_splits.DATA_ROOTS]
  scores = {p: [] for p in PROMPTS}  # per object: (J, F)
  first_iou = []
  for prompt in PROMPTS:
    t = time.perf_counter()
    for name, res, ds in roots:
      seqs = list(data_splits.sequences(args.split, name))
      out_dir = os.path.join(args.out, prompt, name)
      for seq in seqs:
        ious = segment(seg, ds, seq, prompt, out_dir)
        if prompt == "box":
          first_iou += [(f"{seq}/{k}", v) for k, v in ious.items()]
          print("  first-frame IoU " + ", ".join(f"{seq}/{k}: {v:.3f}" for k, v in ious.items()), flush=True)
      res_ = evaluate_sequences(ds, seqs, out_dir, progress=False)
      scores[prompt] += [(j, f) for _, j, f in res_.per_object]
      print(f"  {prompt} {name}: " + ", ".join(f"{o}: J&F {(j + f) / 2:.3f}" for o, j, f in res_.per_object) +
            f"   (vsreid eval --davis {ds.root} --set train --resolution {res} --results {out_dir} "
            f"--sequences {' '.join(seqs)})", flush=True)
    print(f"{prompt}: {time.perf_counter() - t:.0f} s", flush=True)
  print(f"\nmethod={seg.method} net={args.net} split={args.split} "
        f"box_passes={config.solver.box_passes} guide_size={config.solver.guide_size}")
  print("| prompt | first-frame IoU (mean over objects) | J&F | J | F |")
  print("|---|---|---|---|---|")
  for prompt in PROMPTS:
    j, f = np.mean([s[0] for s in scores[prompt]]), np.mean([s[1] for s in scores[prompt]])
    iou = "1 (the GT mask)" if prompt == "mask" else f"{np.mean([v for _, v in first_iou]):.3f}"
    print(f"| {prompt} | {iou} | {(j + f) / 2:.3f} | {j:.3f} | {f:.3f} |")


if __name__ == "__main__":
  main()
