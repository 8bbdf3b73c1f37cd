"""Held-out evaluation of the ReID net: rank-1 retrieval, ROC, the threshold rho_reid, and cost.

  python experiments/eval_reid.py [--weights FILE] [--out experiments/reid_roc]

On the 6 held-out sequences (never trained on), at their native resolution: the template is the
embedding of the object's frame-0 ground-truth box. In every later frame the candidates are
  - the object's ground-truth box (the right answer),
  - `--background` random boxes of that frame with IoU < 0.1 with the object,
  - `--partial` boxes of that frame with IoU 0.1-0.4 with the object,
  - the ground-truth boxes of the other held-out sequences' objects (at the same frame index,
    clamped to their length).
Rank-1: the right box has the highest cosine similarity to the template. ROC: positives are
template vs the right box, negatives template vs every other candidate. rho_reid is the lowest
threshold (0.01 grid) with FPR <= --max-fpr (most re-identifications at that false-alarm rate);
the max balanced-accuracy threshold is printed too. The same candidates are scored by two
baselines: an HSV colour histogram (Hellinger-normalised: the cosine is the Bhattacharyya
coefficient) and the ReID net with random weights. Writes <out>.csv (per threshold TPR/FPR of
each method) and <out>.png (cv2: ROC, and TPR/FPR against the threshold with rho_reid marked),
then times Embedder.embed on one 480p frame for M = 16 and 32 boxes (compile timed apart).
"""
import argparse
import os
import sys
import time

import cv2
import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vsreid_jax.data import splits  # pylint: disable=wrong-import-position
from vsreid_jax.data.objects import ObjectBank# pylint: disable=wrong-import-position
from vsreid_jax.models.propagation import numpy_init  # pylint: disable=wrong-import-position
from vsreid_jax.reid import data as data_lib  # pylint: disable=wrong-import-position
from vsreid_jax.reid import model as model_lib  # pylint: disable=wrong-import-position
from vsreid_jax.reid.embedder import DEFAULT_REID_WEIGHTS, Embedder  # pylint: disable=wrong-import-position

THRESHOLDS = np.round(np.arange(-1.0, 1.0001, 0.01), 2)
HIST_BINS = (8, 4, 4)  # HSV
KINDS = ("background", "partial", "other")


def hsv_histogram(crops: np.ndarray) -> np.ndarray:
  """[M, S, S, 3] RGB -> [M, 128] unit vectors sqrt(normalised HSV histogram)."""
  out = []
  for c in crops:
    hsv = cv2.cvtColor(np.clip(np.round(c), 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV)
    h = cv2.calcHist([hsv], [0, 1, 2], None, list(HIST_BINS), [0, 180, 0, 256, 0, 256]).ravel()
    h = np.sqrt(h / max(h.sum(), 1))
    out.append(h / max(np.linalg.norm(h), 1e-12))
  return np.stack(out).astype(np.float32)


def collect_frames(bank, args, rng):
  """Per held-out sequence: [(t, boxes [1 + nb + np, 4], image)] (object box first), frame 0 first."""
  seqs = {}
  for root, seq in bank.sequences:
    items = []
    for ref in bank.refs_of(root, seq):
      image, _ = bank.frame(root, seq, ref.frame)
      h, w = image.shape[:2]
      box = np.asarray(ref.box, np.float32)
      boxes = [box]
      boxes += [data_lib.background_box(box, rng, 0.1, w, h) for _ in range(args.background)]
      boxes += [data_lib.partial_box(box, rng, (0.1, 0.4), w, h) for _ in range(args.partial)]
      items.append((ref.frame, np.stack(boxes), image))
    seqs[f"{root}/{seq}"] = sorted(items, key=lambda x: x[0])
  return seqs


def embed_all(seqs, embed_fn):
  """{seq: [M_frames, 1 + nb + np, D]} with embed_fn(image, boxes) -> [M, D]."""
  return {s: np.stack([embed_fn(image, boxes) for _, boxes, image in items]) for s, items in seqs.items()}


def scores(emb, args):
  """Positive scores [N], negative scores {kind: [...]}, rank-1 hits [N] (also per kind)."""
  names = sorted(emb)
  pos, neg, hit = [], {k: [] for k in KINDS}, {k: [] for k in ("all",) + KINDS}
  nb = args.background
  for s in names:
    e = emb[s]
    template = e[0, 0]
    for i in range(1, len(e)):
      sim = e[i] @ template
      others = np.array([emb[o][min(i, len(emb[o]) - 1), 0] @ template for o in names if o != s])
      groups = {"background": sim[1:1 + nb], "partial": sim[1 + nb:], "other": others}
      pos.append(sim[0])
      for k, v in groups.items():
        neg[k].extend(v.tolist())
        hit[k].append(sim[0] > v.max())
      hit["all"].append(sim[0] > max(v.max() for v in groups.values()))
  return np.array(pos), {k: np.array(v) for k, v in neg.items()}, {k: np.array(v) for k, v in hit.items()}


def roc(pos, neg):
  """TPR, FPR at THRESHOLDS (score > threshold accepts) and the exact AUC (Mann-Whitney)."""
  tpr = np.array([(pos > t).mean() for t in THRESHOLDS])
  fpr = np.array([(neg > t).mean() for t in THRESHOLDS])
  order = np.argsort(np.concatenate([neg, pos]), kind="mergesort")
  ranks = np.empty(len(order))
  ranks[order] = np.arange(1, len(order) + 1)
  allv = np.concatenate([neg, pos])
  for v in np.unique(allv):  # average ranks of ties
    m = allv == v
    ranks[m] = ranks[m].mean()
  auc = (ranks[len(neg):].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))
  return tpr, fpr, float(auc)


def roc_points(pos, neg):
  """Exact ROC (FPR, TPR) through every score, from (0, 0) to (1, 1), for the plot."""
  t = np.unique(np.concatenate([pos, neg]))[::-1]
  tpr = np.concatenate([[0.0], (pos[None] >= t[:, None]).mean(1), [1.0]])
  fpr = np.concatenate([[0.0], (neg[None] >= t[:, None]).mean(1), [1.0]])
  return fpr, tpr


def choose(tpr, fpr, max_fpr):
  """Index of the lowest threshold with FPR <= max_fpr, and of the max balanced accuracy."""
  ok = np.flatnonzero(fpr <= max_fpr)
  return int(ok[0]), int(np.argmax((tpr + 1 - fpr) / 2))


def draw_panel(canvas, rect, series, title, xlabel, ylabel, x_range, marks=()):
  """series: [(name, xs, ys, BGR)]; marks: [(x, y or None, BGR, label)] (y None: a vertical line)."""
  x, y, w, h = rect
  font = cv2.FONT_HERSHEY_SIMPLEX
  cv2.putText(canvas, title, (x, y - 10), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
  cv2.rectangle(canvas, (x, y), (x + w, y + h), (0, 0, 0), 1)
  x0, x1 = x_range
  sx = lambda v: int(round(x + (v - x0) / (x1 - x0) * w))
  sy = lambda v: int(round(y + h - v * h))
  for g in np.linspace(0, 1, 6):
    cv2.line(canvas, (x, sy(g)), (x + w, sy(g)), (225, 225, 225), 1)
    cv2.putText(canvas, f"{g:.1f}", (x - 32, sy(g) + 4), font, 0.4, (60, 60, 60), 1, cv2.LINE_AA)
    gx = x0 + g * (x1 - x0)
    cv2.putText(canvas, f"{gx:.2f}", (sx(gx) - 14, y + h + 16), font, 0.4, (60, 60, 60), 1, cv2.LINE_AA)
  cv2.putText(canvas, xlabel, (x + w // 2 - 40, y + h + 34), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
  cv2.putText(canvas, ylabel, (x + 4, y + 14), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
  for i, (name, xs, ys, colour) in enumerate(series):
    pts = np.stack([[sx(a) for a in xs], [sy(b) for b in ys]], 1).astype(np.int32)
    cv2.polylines(canvas, [pts], False, colour, 2, cv2.LINE_AA)
    cv2.putText(canvas, name, (x + w - 230, y + h - 60 + 18 * i), font, 0.45, colour, 1, cv2.LINE_AA)
  for mx, my, colour, label in marks:
    if my is None:
      cv2.line(canvas, (sx(mx), y), (sx(mx), y + h), colour, 1, cv2.LINE_AA)
      left = sx(mx) > x + w - 120  # keep the label inside the panel
      cv2.putText(canvas, label, (sx(mx) - 115 if left else sx(mx) + 4, y + 30), font, 0.45, colour, 1,
                  cv2.LINE_AA)
    else:
      cv2.circle(canvas, (sx(mx), sy(my)), 5, colour, 2, cv2.LINE_AA)
      cv2.putText(canvas, label, (sx(mx) + 10, sy(my) - 10), font, 0.45, colour, 1, cv2.LINE_AA)


def plot(path, curves, rho_index):
  canvas = np.full((430, 1000, 3), 255, np.uint8)
  colours = {"ReID net": (200, 80, 30), "HSV histogram": (30, 130, 230), "random net": (120, 120, 120)}
  series = [(f"{n} AUC {c['auc']:.3f}", *roc_points(c["pos"], np.concatenate(list(c["neg"].values()))),
             colours[n]) for n, c in curves.items()]
  net = curves["ReID net"]
  t = THRESHOLDS[rho_index]
  lowest = min(net["pos"].min(), min(v.min() for v in net["neg"].values()))
  t_range = (max(np.floor(lowest * 10) / 10, -1.0), 1.0)
  shown = THRESHOLDS >= t_range[0] - 1e-6
  draw_panel(canvas, (60, 40, 400, 330), series, "ROC, held-out (template vs candidates)", "FPR", "TPR",
             (0.0, 1.0), [(net["fpr"][rho_index], net["tpr"][rho_index], (0, 0, 200), f"rho_reid={t:.2f}")])
  draw_panel(canvas, (560, 40, 400, 330),
             [("TPR", THRESHOLDS[shown], net["tpr"][shown], (40, 160, 40)),
              ("FPR", THRESHOLDS[shown], net["fpr"][shown], (40, 40, 200))],
             "ReID net: TPR and FPR vs threshold", "cosine threshold", "rate", t_range,
             [(t, None, (0, 0, 0), f"rho_reid={t:.2f}")])
  cv2.putText(canvas, "positives: same object as the frame-0 template; negatives: background, partial "
              "and other objects' boxes", (60, 415), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (60, 60, 60), 1, cv2.LINE_AA)
  cv2.imwrite(path, canvas)


def time_embed(embedder, image, rng, reps):
  embedder = Embedder(embedder.config, embedder.variables, embedder.config_name)  # fresh: compile timed
  h, w = image.shape[:2]
  out = {}
  for m in (16, 32):
    boxes = np.stack([data_lib.background_box(np.array([0, 0, w / 4, h / 3], np.float32), rng, 1.0, w, h)
                      for _ in range(m)])[None]
    t0 = time.perf_counter()
    embedder.embed(image[None], boxes)
    first = time.perf_counter() - t0
    times = []
    for _ in range(reps):
      t0 = time.perf_counter()
      embedder.embed(image[None], boxes)
      times.append(time.perf_counter() - t0)
    out[m] = (first * 1e3, float(np.median(times)) * 1e3)
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--weights", default=DEFAULT_REID_WEIGHTS)
  p.add_argument("--data-dir", default=str(splits.shared_data_dir()))
  p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "reid_roc"))
  p.add_argument("--background", type=int, default=4)
  p.add_argument("--partial", type=int, default=4)
  p.add_argument("--max-fpr", type=float, default=0.05)
  p.add_argument("--frame-step", type=int, default=1, help="evaluate every n-th frame (faster)")
  p.add_argument("--timing-reps", type=int, default=10)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--split", default="all", choices=["all", "val", "test"],
                 help="the held-out sequences scored: all (val and test, the default), or one split "
                 "(a net trained before the val split existed saw val: compare such nets on test)")
  args = p.parse_args(argv)

  embedder = Embedder.from_weights(args.weights)
  c = embedder.config
  held = list(splits.never_trained(args.split))
  bank = ObjectBank([(os.path.join(args.data_dir, n), r) for n, r in splits.DATA_ROOTS], "train", sequences=held)
  rng = np.random.default_rng(args.seed)
  seqs = collect_frames(bank, args, rng)
  seqs = {s: items[::args.frame_step] for s, items in seqs.items()}
  n_frames = sum(len(v) for v in seqs.values())
  print(f"held-out: {len(seqs)} sequences, {n_frames} frames ({', '.join(seqs)})")

  crop = jax.jit(lambda im, b: model_lib.crop_boxes(im, b, c.crop_size, c.crop_margin))
  random_vars = numpy_init(embedder.model, model_lib.dummy_crops(c.crop_size), seed=args.seed, train=False)
  methods = {
      "ReID net": lambda im, b: embedder.embed(im[None], b[None])[0],
      "HSV histogram": lambda im, b: hsv_histogram(np.asarray(crop(im, b))),
      "random net": lambda im, b, e=Embedder(c, random_vars): e.embed(im[None], b[None])[0],
  }
  curves, hits = {}, {}
  for name, fn in methods.items():
    t0 = time.perf_counter()
    pos, neg, hit = scores(embed_all(seqs, fn), args)
    all_neg = np.concatenate(list(neg.values()))
    tpr, fpr, auc = roc(pos, all_neg)
    curves[name] = dict(tpr=tpr, fpr=fpr, auc=auc, pos=pos, neg=neg)
    hits[name] = hit
    print(f"{name}: rank-1 {hit['all'].mean():.3f} (vs background {hit['background'].mean():.3f}, partial "
          f"{hit['partial'].mean():.3f}, other objects {hit['other'].mean():.3f}), AUC {auc:.3f}, "
          f"{len(pos)} positives / {len(all_neg)} negatives [{time.perf_counter() - t0:.0f} s]")

  net = curves["ReID net"]
  i_fpr, i_bal = choose(net["tpr"], net["fpr"], args.max_fpr)
  for label, i in ((f"FPR <= {args.max_fpr:.0%} (chosen)", i_fpr), ("max balanced accuracy", i_bal)):
    t = THRESHOLDS[i]
    per_kind = ", ".join(f"{k} {(v > t).mean():.3f}" for k, v in net["neg"].items())
    print(f"rho_reid at {label}: {t:.2f}: TPR {net['tpr'][i]:.3f}, FPR {net['fpr'][i]:.3f} ({per_kind})")
  for name in ("HSV histogram", "random net"):
    j, _ = choose(curves[name]["tpr"], curves[name]["fpr"], args.max_fpr)
    print(f"{name} at FPR <= {args.max_fpr:.0%}: threshold {THRESHOLDS[j]:.2f}, TPR {curves[name]['tpr'][j]:.3f}")
  print(f"config rho_reid now {c.rho_reid:.2f}; chosen {THRESHOLDS[i_fpr]:.2f}")

  header = "threshold," + ",".join(f"{k}_tpr,{k}_fpr" for k in ("net", "hist", "random"))
  rows = np.stack([THRESHOLDS] + [curves[n][k] for n in methods for k in ("tpr", "fpr")], 1)
  np.savetxt(args.out + ".csv", rows, delimiter=",", header=header, comments="", fmt="%.4f")
  plot(args.out + ".png", curves, i_fpr)
  print(f"wrote {args.out}.csv and {args.out}.png")

  image = next(iter(seqs.values()))[0][2]
  if image.shape[0] != 480:
    image = bank.frame(*bank.sequences[0], 0)[0]
  for m, (first, steady) in time_embed(embedder, image, rng, args.timing_reps).items():
    print(f"embed {image.shape[1]}x{image.shape[0]} frame, M={m}: {steady:.1f} ms steady state "
          f"(first call with compile {first:.0f} ms)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
