"""Which of the paper rule's drift retrievals are right: the evidence behind solver.drift_iou/drift_margin.

For every (frame > 0, object) pair whose object is present in a row's masks (e.g. the "+re-id" or
the propagation-only "+flow stream" row of experiments/ablation.py), takes the object's most similar
candidate, as the paper's rule does, and measures
  iou_cur   IoU of that candidate's box with the current mask's box (the paper accepts < rho_occ),
  evidence  the best similarity of a candidate on the current mask box (IoU >= rho_occ; 0 where none),
  owned     whether another present object's mask box covers the candidate (IoU >= rho_occ),
  right     whether the retrieval would be right: the current mask box is off the ground-truth box
            (IoU < 0.3) and the candidate is on it (IoU >= 0.5); any other accepted one replaces a
            good mask or moves a wrong one to a wrong place.
Prints how many right and wrong retrievals the paper's test (similarity > rho_reid, iou_cur <
rho_occ) accepts, and the paper's test plus the stricter one (iou_cur < drift_iou, similarity >
evidence + drift_margin, without and with exclusive) for each (drift_iou, drift_margin).

  python experiments/drift_evidence.py --davis /tmp/occ-hard-val:240p --set occlusion \
      --masks /tmp/abl/row3/occ-hard-val --cache /tmp/abl/cache [--rho-reid 0.92]

Candidates come from the ablation's cache (the same detector and ReID weights; computed where
missing). One round's decision only (retrievals change the masks).
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vsreid_jax.api import Segmenter  # pylint: disable=wrong-import-position
from vsreid_jax.configs import segment as segment_config  # pylint: disable=wrong-import-position
from vsreid_jax.data import DavisDataset  # pylint: disable=wrong-import-position
from vsreid_jax.geometry import box_iou, mask_box_np as mask_box  # pylint: disable=wrong-import-position
from vsreid_jax.reid.algorithm2 import similarity  # pylint: disable=wrong-import-position
from vsreid_jax.solver import caches  # pylint: disable=wrong-import-position
from vsreid_jax.data.palette import read_mask  # pylint: disable=wrong-import-position


def pairs_of(ds, seq, masks_dir, cache_dir, seg, rho_occ):
  """[(iou_cur, similarity, evidence, right, owned, current mask right)] of one sequence's present
  (frame > 0, object) pairs; owned: another present object's mask box covers the candidate."""
  frames = ds.frames(seq)
  names = frames.names
  gt = [ds.annotation(seq, n) for n in names]
  pred = [read_mask(os.path.join(masks_dir, seq, n + ".png")) for n in names]
  ids = [i for i in np.unique(gt[0]) if i]
  first = np.stack([(gt[0] == i).astype(np.float32) for i in ids])
  detector, embedder, fingerprint = seg.reid_nets()
  tmpl = caches.templates(embedder, frames[0], first)
  key = os.path.join(os.path.basename(os.path.normpath(ds.root)), seq)  # as experiments/ablation.py names it
  c = caches.CandidateSource(frames, detector, embedder, int(seg.config.solver.candidate_batch), cache_dir, key,
                             fingerprint).get(np.arange(len(names)))
  out = []
  for t in range(1, len(names)):
    valid = np.asarray(c.valid[t], bool)
    if not valid.any():
      continue
    sim = np.where(valid[:, None], similarity(c.embeddings[t], tmpl), -np.inf)
    boxes = np.asarray(c.boxes[t])
    for j, oid in enumerate(ids):
      cur = pred[t] == oid
      if cur.sum() < 0.1 * first[j].sum():  # lost (Algorithm 1's rule): not a drift case
        continue
      cur_box = mask_box(cur)
      top = int(np.argmax(sim[:, j]))
      on_cur = box_iou(boxes, cur_box)[:, 0] >= rho_occ
      evidence = float(np.max(np.where(on_cur, sim[:, j], -np.inf))) if np.any(on_cur & valid) else 0.0
      g = mask_box(gt[t] == oid)
      right = g is not None and box_iou(cur_box, g)[0, 0] < 0.3 and box_iou(boxes[top], g)[0, 0] >= 0.5
      cur_ok = g is not None and box_iou(cur_box, g)[0, 0] >= 0.5
      others = [mask_box(pred[t] == o) for i, o in enumerate(ids)
                if o != oid and (pred[t] == o).sum() >= 0.1 * first[i].sum()]
      owned = any(box_iou(boxes[top], b)[0, 0] >= rho_occ for b in others)
      out.append((float(box_iou(boxes[top], cur_box)[0, 0]), float(sim[top, j]), evidence, bool(right), owned,
                  bool(cur_ok)))
  return out


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--davis", action="append", required=True, metavar="ROOT[:RES]")
  ap.add_argument("--set", default="val")
  ap.add_argument("--sequences", nargs="+")
  ap.add_argument("--masks", action="append", required=True,
                  help="per --davis, the folder of <sequence>/<frame>.png id masks of a row")
  ap.add_argument("--cache", required=True, help="the ablation's cache (candidates per sequence)")
  ap.add_argument("--rho-reid", type=float, default=None, help="default: the ReID net's")
  ap.add_argument("--drift-iou", type=float, nargs="+", default=[0.3, 0.2, 0.1, 0.05])
  ap.add_argument("--drift-margin", type=float, nargs="+", default=[0.0, 0.02, 0.05, 0.1])
  args = ap.parse_args(argv)
  seg = Segmenter(segment_config.get_config())
  _, embedder, _ = seg.reid_nets()
  rho_reid = embedder.rho_reid if args.rho_reid is None else args.rho_reid
  rho_occ = embedder.rho_occ
  rows = []
  for spec, masks_dir in zip(args.davis, args.masks):
    root, _, res = spec.partition(":")
    ds = DavisDataset(root, res or "480p")
    for seq in ds.sequences(args.set):
      if args.sequences and seq not in args.sequences:
        continue
      rows += pairs_of(ds, seq, masks_dir, args.cache, seg, rho_occ)
  a = np.array(rows, np.float64).reshape(-1, 6)
  iou, sim, ev, right, owned, cur_ok = a[:, 0], a[:, 1], a[:, 2], a[:, 3] > 0, a[:, 4] > 0, a[:, 5] > 0
  paper = (sim > rho_reid) & (iou < rho_occ)
  print(f"{len(a)} present pairs; rho_reid {rho_reid}, rho_occ {rho_occ}; the paper's test accepts "
        f"{paper.sum()}: {(paper & right).sum()} right, {(paper & ~right).sum()} wrong "
        f"({(right & ~paper).sum()} right ones it misses)")
  print(f"of the wrong ones: {(paper & ~right & cur_ok).sum()} replace a right mask (box IoU >= 0.5 with the "
        f"ground truth), {(paper & ~right & owned).sum()} take a candidate another present object's mask covers")
  print("exclusive drift_iou drift_margin  accepted right wrong (replacing a right mask)")
  for x in (False, True):
    for d in args.drift_iou:
      for m in args.drift_margin:
        acc = paper & (iou < d) & (sim > ev + m) & ~(owned & x)
        print(f"{str(x):9s} {d:9.2f} {m:12.2f} {acc.sum():9d} {(acc & right).sum():5d} {(acc & ~right).sum():5d} "
              f"({(acc & ~right & cur_ok).sum()})")
  return 0


if __name__ == "__main__":
  sys.exit(main())
