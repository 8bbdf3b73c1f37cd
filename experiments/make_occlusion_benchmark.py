"""Writes the multi-object occlusion benchmark (vsreid_jax/data/occlusion.py) as a DAVIS-layout root.

  python experiments/make_occlusion_benchmark.py --split test --out /tmp/occlusion
      [--kind standard|hard] [--seed 0] [--sequences 6] [--frames 40] [--sources dance-jump,...]

Backgrounds and cut-outs come from one fixed split of vsreid_jax/data/splits.py (--split val to
choose on, test to report once; the nets never trained on either). `--kind hard` makes 3-4 object
clips with a longer occlusion and a look-alike twin of the target (data/occlusion.py). Prints, per
clip, its objects, their sources and the frames where each is hidden, partly hidden or outside;
writes <out>_contact.png beside the root: per clip, a few frames with the GT overlaid.
"""
import argparse
import json
import os
import sys

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vsreid_jax.data.splits import shared_data_dir  # pylint: disable=wrong-import-position
from vsreid_jax.data import occlusion  # pylint: disable=wrong-import-position
from vsreid_jax.data.davis import DavisDataset  # pylint: disable=wrong-import-position
from vsreid_jax.data.results import overlay  # pylint: disable=wrong-import-position


def spans(frames):
  """[3, 4, 5, 9] -> '3-5,9'."""
  out, start = [], None
  for i, t in enumerate(frames):
    if start is None:
      start = t
    if i + 1 == len(frames) or frames[i + 1] != t + 1:
      out.append(f"{start}-{t}" if t > start else f"{t}")
      start = None
  return ",".join(out) or "-"


def sheet_frames(info):
  """Frames worth a look: 0, mid-occlusion, mid-outside, re-entry, after the occlusion, last."""
  objs = {o["id"]: o for o in info["objects"]}
  hid, out = objs[1]["hidden"], objs[info["exit"]]["outside"]
  n = info["n_frames"]
  picks = [0, hid[len(hid) // 2], out[len(out) // 2], min(out[-1] + 3, n - 1),
           min(hid[-1] + 6, n - 1), n - 1]
  return sorted(set(picks))[:6]


def contact_sheet(root, infos, path, scale=0.5):
  """One row per clip: the picked frames with the GT overlaid and the frame number written on."""
  ds = DavisDataset(root, occlusion.RESOLUTION)
  rows = []
  for name, info in infos.items():
    frames = ds.frames(name)
    tiles = []
    for t in sheet_frames(info):
      ids = ds.annotation(name, frames.names[t])
      tile = overlay(frames[t], ids)
      tile = cv2.resize(tile, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
      present = " ".join(str(k) for k in np.unique(ids) if k)
      cv2.putText(tile, f"{t}: {present}", (3, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
      tiles.append(tile)
    while len(tiles) < 6:
      tiles.append(np.zeros_like(tiles[0]))
    row = np.concatenate(tiles, 1)
    label = np.zeros((16, row.shape[1], 3), np.uint8)
    cv2.putText(label, name, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    rows.append(np.concatenate([label, row], 0))
  cv2.imwrite(path, cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR))


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--data-dir", default=str(shared_data_dir()), help="folder holding the DAVIS 2016 roots")
  ap.add_argument("--out", required=True, help="benchmark root to write")
  ap.add_argument("--split", required=True, choices=("val", "test"),
                  help="fixed split the backgrounds and cut-outs come from (val: for choosing; test: to report)")
  ap.add_argument("--kind", default="standard", choices=sorted(occlusion.KINDS),
                  help="standard (the first benchmark) or hard (3-4 objects, longer occlusion, a twin)")
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--sequences", type=int, default=6, help="number of clips")
  ap.add_argument("--frames", type=int, default=40, help="frames per clip")
  ap.add_argument("--sources", default="", help="comma-separated background/cut-out sequences (default: --split's)")
  args = ap.parse_args(argv)
  cv2.setNumThreads(1)  # light on shared CPUs; the result does not depend on it

  sources = [s for s in args.sources.split(",") if s] or None
  names = occlusion.build_benchmark(args.out, args.data_dir, sources, args.seed, args.sequences, args.frames,
                                    split=args.split, kind=args.kind)
  with open(os.path.join(args.out, "info.json")) as f:
    infos = json.load(f)
  print(f"{len(names)} clips of {args.frames} frames at {occlusion.SIZE[1]}x{occlusion.SIZE[0]} in {args.out} "
        f"(ImageSets/2017/{occlusion.SUBSET}.txt, resolution {occlusion.RESOLUTION}), seed {args.seed}, "
        f"split {args.split}, kind {args.kind}")
  for name in names:
    info = infos[name]
    print(f"{name}: background frames {info['background']['frames'][0]}.. of {info['background']['source']}")
    for o in info["objects"]:
      partly = [t for t, v in enumerate(o["visible"]) if 0.1 <= v < 0.7 and t not in o["outside"]]
      print(f"  id {o['id']} {o['role']:10s} {o['source']:40s} frame-0 area {o['area'][0]:6d} px  "
            f"hidden {spans(o['hidden']):12s} partly {spans(partly):12s} outside {spans(o['outside'])}")
  sheet = os.path.normpath(args.out) + "_contact.png"
  contact_sheet(args.out, infos, sheet)
  print(f"contact sheet: {sheet}")


if __name__ == "__main__":
  main()
