"""Detector figures on the HELD-OUT sequences (never trained on):

  python experiments/eval_detector.py [--weights FILE] [--every N] [--proposals 100]

- proposal recall: the fraction of GT boxes (one per object mask) matched at IoU >= 0.5 by one of
  the top --proposals RPN proposals of their frame;
- detection recall: the same with the M final detections (any score), and with the top-1 and the
  detections scoring >= 0.5;
- per-frame cost (ms, batch 1, steady state on this CPU), compilation timed apart.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vsreid_jax.data import splits  # pylint: disable=wrong-import-position
from vsreid_jax.data.davis import DavisDataset  # pylint: disable=wrong-import-position
from vsreid_jax.data.objects import frame_boxes# pylint: disable=wrong-import-position
from vsreid_jax.geometry import box_iou# pylint: disable=wrong-import-position
from vsreid_jax.detection.detector import DEFAULT_DETECTOR_WEIGHTS, Detector  # pylint: disable=wrong-import-position
from vsreid_jax.utils import StageTimer  # pylint: disable=wrong-import-position

IOU = 0.5


def recalled(gt: np.ndarray, boxes: np.ndarray) -> np.ndarray:
  """Per GT box: matched by any of `boxes` at IoU >= 0.5."""
  if len(boxes) == 0:
    return np.zeros(len(gt), bool)
  return (box_iou(gt, boxes) >= IOU).any(axis=1)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--weights", default=DEFAULT_DETECTOR_WEIGHTS)
  p.add_argument("--every", type=int, default=1, help="use every N-th frame")
  p.add_argument("--proposals", type=int, default=100)
  p.add_argument("--split", default="all", choices=["all", "val", "test"],
                 help="the held-out sequences scored: all (val and test, the default), or one split "
                 "(a net trained before the val split existed saw val: compare such nets on test)")
  args = p.parse_args(argv)
  det = Detector.from_weights(args.weights)
  timer = StageTimer()
  hits = {"proposals": [], "detections": [], "top1": [], "score>=0.5": []}
  n_frames, n_det = 0, []
  held = splits.held_out(args.split)
  for name, resolution in splits.DATA_ROOTS:
    ds = DavisDataset(str(splits.shared_data_dir() / name), resolution)
    for seq in held[name]:
      frames = ds.frames(seq)
      for t in range(0, len(frames), args.every):
        gt = np.stack(list(frame_boxes(ds.annotation(seq, frames.names[t])).values()) or [np.zeros(4)])
        image = frames[t]
        with timer.stage("detect", det.jitted):
          out = det.outputs(image[None])
        n_frames += 1
        if not gt.any():
          continue  # no object in this frame
        props = out["proposals"][0][out["proposal_valid"][0]][:args.proposals]
        boxes = out["boxes"][0][out["valid"][0]]
        scores = out["scores"][0][out["valid"][0]]
        hits["proposals"].append(recalled(gt, props))
        hits["detections"].append(recalled(gt, boxes))
        hits["top1"].append(recalled(gt, boxes[:1]))
        hits["score>=0.5"].append(recalled(gt, boxes[scores >= 0.5]))
        n_det.append(int((scores >= 0.5).sum()))
  print(f"weights {args.weights} ({det.config_name}), {args.split} {n_frames} frames "
        f"({', '.join(splits.never_trained(args.split))}), every {args.every}")
  n_gt = sum(len(h) for h in hits["proposals"])
  print(f"GT boxes: {n_gt}; recall at IoU {IOU}:")
  print(f"  top-{args.proposals} RPN proposals: {np.concatenate(hits['proposals']).mean():.3f}")
  print(f"  all {det.config.roi.detections_per_img} detections:  {np.concatenate(hits['detections']).mean():.3f}")
  print(f"  top-1 detection:          {np.concatenate(hits['top1']).mean():.3f}")
  print(f"  detections scoring >=0.5: {np.concatenate(hits['score>=0.5']).mean():.3f} "
        f"(mean {np.mean(n_det):.2f} such detections per frame)")
  steady = timer.seconds["detect"] / max(timer.calls["detect"], 1)
  print(f"cost per frame (batch 1, resize + network + NMS, steady state): {1000 * steady:.1f} ms over "
        f"{timer.calls['detect']} frames; compilation {timer.seconds['compile']:.1f} s "
        f"({timer.calls['compile']} call)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
