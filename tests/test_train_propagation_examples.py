import pathlib

import numpy as np
import pytest

from vsreid_jax.train import propagation_examples as pe
from vsreid_jax.data import synthetic

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"
S = 33


@pytest.fixture(scope="module")
def square_root(tmp_path_factory):
  """One textured square translating 3 px/frame over 6 frames of 128x192 (DIS tracks it)."""
  root = tmp_path_factory.mktemp("square")
  frames, masks = synthetic.moving_shapes(n_frames=6, height=128, width=192, n_objects=1, seed=0, grow=1.0,
                                          speed=3.0)
  synthetic.write_davis_root(str(root), {"square": (frames, masks)}, subset="train")
  return str(root), masks


def _spec(root, **kw):
  kw.setdefault("prior_probs", (1.0, 0.0, 0.0))
  return pe.make_spec([(root, "480p")], [(0, "square")], crop_size=S, margin=0.15, **kw)


def _iou(a, b):
  return (a & b).sum() / max((a | b).sum(), 1)


def test_real_warp_prior_lands_on_target(square_root, tmp_path):
  root, masks = square_root
  ex = pe.PropagationExamples(_spec(root), str(tmp_path))
  crop_ious, frame_ious, nowarp_ious = [], [], []
  for i in range(1, 6):
    prior, _ = ex.warped_prior(0, i - 1, i, 1)
    frame_ious.append(_iou(np.asarray(prior) > 0.5, masks[i] == 1))
    nowarp_ious.append(_iou(masks[i - 1] == 1, masks[i] == 1))
  for j in range(8):
    r = ex.example(j)
    assert r["kind"] == pe.PRIOR_KINDS.index("warp")
    crop_ious.append(_iou(r["prior"][..., 0] > 127, r["target"][..., 0] > 127))
  assert np.mean(frame_ious) > 0.9, frame_ious
  assert np.mean(frame_ious) > np.mean(nowarp_ious) + 0.05  # the flow carries the mask, not luck
  assert np.mean(crop_ious) > 0.85, crop_ious


def test_record_shapes_and_batch(square_root, tmp_path):
  root, _ = square_root
  ex = pe.PropagationExamples(_spec(root, prior_probs=(1, 1, 1), margin_jitter=0.05), str(tmp_path))
  records = [ex.example(i) for i in range(6)]
  r = records[0]
  assert r["image"].shape == (S, S, 3) and r["image"].dtype == np.uint8
  assert r["flow"].shape == (S, S, 2) and r["flow"].dtype == np.float16
  assert r["prior"].shape == r["target"].shape == (S, S, 1)
  assert {int(r["kind"]) for r in records} > {0}  # the mix draws other kinds too
  b = pe.to_batch(records)
  assert b["image"].shape == (6, S, S, 3) and b["flow"].shape == (6, S, S, 2)
  assert b["prior"].shape == b["target"].shape == (6, S, S, 1)
  assert all(v.dtype == np.float32 for v in b.values())
  assert 0 <= b["prior"].min() and b["prior"].max() <= 1
  # The square moves right/down by <= 3 px a frame: flow i -> i-1 points back, a few crop pixels.
  assert np.abs(b["flow"]).max() < S


def test_examples_deterministic_given_seed(square_root, tmp_path):
  root, _ = square_root
  spec = _spec(root, prior_probs=(1, 1, 1), margin_jitter=0.05, seed=5)
  a = pe.PropagationExamples(spec, str(tmp_path / "a"))
  b = pe.PropagationExamples(spec, str(tmp_path / "b"))
  for i in (0, 3, 7):
    ra, rb = a.example(i), b.example(i)
    for k in ra:
      np.testing.assert_array_equal(ra[k], rb[k])
  other = pe.PropagationExamples(_spec(root, prior_probs=(1, 1, 1), margin_jitter=0.05, seed=6), str(tmp_path / "a"))
  assert any(not np.array_equal(a.example(i)["prior"], other.example(i)["prior"]) for i in range(4))


def test_batch_iterator_resumes_at_position(square_root, tmp_path):
  root, _ = square_root
  ex = pe.PropagationExamples(_spec(root, prior_probs=(1, 1, 1)), str(tmp_path))
  full = pe.BatchIterator(ex.example, 2, seed=1, prefetch=2)
  batches = [next(full) for _ in range(3)]
  full.close()
  resumed = pe.BatchIterator(ex.example, 2, seed=1, position=4, prefetch=0)
  for k, v in next(resumed).items():
    np.testing.assert_array_equal(v, batches[2][k])
  assert resumed.state() == {"position": 6}


def test_tfds_records_are_the_python_examples(square_root, tmp_path, monkeypatch):
  pytest.importorskip("tensorflow_datasets")
  from vsreid_jax.train import tfds_propagation  # pylint: disable=g-import-not-at-top
  # Shards of 2 examples: 5 train examples span 3 splits, read back as one sequence in order.
  monkeypatch.setattr(tfds_propagation, "SHARD_EXAMPLES", 2)
  assert [c for _, _, c in tfds_propagation.shard_splits("train", 5)] == [2, 2, 1]
  root, _ = square_root
  train, val = _spec(root, prior_probs=(1, 1, 1)), _spec(root, seed=1)
  sources = tfds_propagation.data_sources(train, val, 5, 2, str(tmp_path / "tfds"), str(tmp_path))
  assert len(sources["train"]) == 5 and len(sources["validation"]) == 2
  ex = pe.PropagationExamples(train, str(tmp_path))
  for i in (0, 2, 3, 4):
    rec, want = sources["train"][i], ex.example(i)
    for k in want:
      np.testing.assert_array_equal(rec[k], want[k])


def test_real_davis_examples(tmp_path):
  root = SHARED_DATA / "davis2016-train-240p"
  if not root.is_dir():
    pytest.skip(f"real DAVIS data not found at {root} (only present beside the repo checkout)")
  spec = pe.make_spec([(str(root), "240p")], [(0, "bus"), (0, "hike")], crop_size=65, margin=0.15,
                      prior_probs=(1, 1, 1), margin_jitter=0.05)
  ex = pe.PropagationExamples(spec, str(tmp_path))
  records = [ex.example(i) for i in range(4)]
  b = pe.to_batch(records)
  assert b["image"].shape == (4, 65, 65, 3)
  ious = [_iou(r["prior"][..., 0] > 127, r["target"][..., 0] > 127) for r in records]
  assert np.mean(ious) > 0.5, ious  # priors are near the object
  assert all((r["target"] > 127).mean() > 0.05 for r in records)  # the object fills part of the crop
