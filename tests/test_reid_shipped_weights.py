"""The shipped ReID weights: they load, fit in the package, and on held-out sequences (never
trained on) the same object in a later frame is closer to its frame-0 template than other objects."""
import os

import numpy as np

from vsreid_jax.data import splits
from vsreid_jax.data.davis import DavisDataset
from vsreid_jax.geometry import mask_box_np
from vsreid_jax.models import weights
from vsreid_jax.reid.embedder import DEFAULT_REID_WEIGHTS, Embedder

LATER = 20  # frame index compared with frame 0


def test_shipped_reid_weights_load():
  assert os.path.getsize(DEFAULT_REID_WEIGHTS) < 10e6
  name, meta, _ = weights.load_weights(DEFAULT_REID_WEIGHTS)
  assert name == "reid_lite_cpu" and meta["step"] > 0
  emb = Embedder.from_weights()
  assert emb.config_name == "reid_lite_cpu" and emb.rho_occ == 0.3


def test_same_held_out_object_is_more_similar_than_another_sequence_object(davis_train):
  emb = Embedder.from_weights()
  ds = DavisDataset(davis_train, "480p")
  templates, later = [], []
  for seq in splits.held_out()["davis2016-train"]:
    frames = ds.frames(seq)
    for t, out in ((0, templates), (LATER, later)):
      box = mask_box_np(ds.annotation(seq, frames.names[t]) == 1)
      out.append(emb.embed(frames[t][None], box[None, None])[0, 0])
  sim = np.stack(templates) @ np.stack(later).T  # [template sequence, later sequence]
  np.testing.assert_allclose(np.linalg.norm(templates, axis=1), 1.0, atol=1e-4)
  for i in range(len(sim)):
    others = np.delete(sim[i], i)
    assert sim[i, i] > others.max(), sim
