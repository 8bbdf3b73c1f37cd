"""Detector training: matching and sampling, copy-paste data, loss descent and exact resume."""
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vsreid_jax.configs import detector_lite_cpu
from vsreid_jax.data.objects import ObjectBank
from vsreid_jax.detection import data as det_data
from vsreid_jax.detection import losses
from vsreid_jax.detection import train as det_train
from vsreid_jax.errors import InputError


def tiny_config():
  """The lite config shrunk to compile and step in seconds."""
  config = detector_lite_cpu.get_config()
  config.input.height, config.input.width = 64, 96
  config.model.backbone.width = 8
  config.model.fpn_channels = 16
  config.model.representation_size = 32
  r = config.rpn
  r.pre_nms_top_n_train = r.pre_nms_top_n_test = 40
  r.post_nms_top_n_train = r.post_nms_top_n_test = 30
  r.batch_size_per_image = 32
  config.roi.batch_size_per_image = 16
  config.roi.detections_per_img = 8
  config.data.batch_size = 2
  config.data.max_boxes = 4
  config.data.prefetch = 1
  config.optimizer.warmup_steps = 0
  config.optimizer.lr = 3e-3
  config.train.steps = 4
  config.train.log_every = 1
  config.train.checkpoint_every = 2
  config.train.max_seconds = 0.0
  config.init = ""  # width 8: no weights to start from
  return config


def test_match_thresholds_and_low_quality():
  gt = jnp.array([[0.0, 0, 10, 10], [50, 50, 60, 60], [0, 0, 0, 0]])
  gt_valid = jnp.array([True, True, False])
  cand = jnp.array([[0.0, 0, 10, 10],  # IoU 1 with gt 0: fg
                    [0, 0, 10, 12],  # IoU 0.83: fg
                    [0, 0, 10, 20],  # IoU 0.5: ignored between 0.3 and 0.7
                    [30, 30, 40, 40],  # IoU 0: bg
                    [50, 50, 70, 70],  # IoU 0.25 with gt 1, its best: fg by the low-quality rule
                    [0, 0, 10, 10]])
  cand_valid = jnp.array([True, True, True, True, True, False])
  idx, label = losses.match(gt, gt_valid, cand, cand_valid, 0.7, 0.3, True)
  np.testing.assert_array_equal(label, [1, 1, -1, 0, 1, -1])
  assert int(idx[4]) == 1 and int(idx[0]) == 0
  _, label = losses.match(gt, gt_valid, cand, cand_valid, 0.7, 0.3, False)
  assert int(label[4]) == 0


def test_balanced_sample_caps_positives_and_fills_with_negatives():
  label = jnp.array([1] * 10 + [0] * 30 + [-1] * 20)
  idx, ok = losses.balanced_sample(jax.random.key(0), label, 16, 0.25)
  idx, ok = np.asarray(idx), np.asarray(ok)
  assert ok.all() and len(set(idx.tolist())) == 16
  assert (np.asarray(label)[idx] == 1).sum() == 4 and (np.asarray(label)[idx] == 0).sum() == 12
  few = jnp.array([1, 0, 0, -1, -1, -1])  # too few candidates: invalid slots
  idx, ok = losses.balanced_sample(jax.random.key(1), few, 6, 0.5)
  assert int(np.asarray(ok).sum()) == 3
  assert sorted(np.asarray(idx)[np.asarray(ok)].tolist()) == [0, 1, 2]


def test_copy_paste_batches(shapes_root):
  bank = ObjectBank([(shapes_root, "480p")], subset="val")
  data = det_data.CopyPasteData(bank, (64, 96), max_boxes=6, seed=3,
                                cfg=det_data.PasteConfig(max_paste=3, size_range=(0.3, 0.6)))
  b = data.batch(5, 4)
  assert b["images"].shape == (4, 64, 96, 3) and b["images"].dtype == np.uint8
  assert b["boxes"].shape == (4, 6, 4) and b["box_valid"].any(axis=1).all()
  boxes = b["boxes"][b["box_valid"]]
  assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])
  assert np.all(boxes >= 0) and np.all(boxes[:, 2] <= 96) and np.all(boxes[:, 3] <= 64)
  # Pasted objects add boxes: over several batches more boxes than the clips' own objects.
  counts = [data.batch(s, 4)["box_valid"].sum(1) for s in range(6)]
  assert np.concatenate(counts).max() > 2
  again = data.batch(5, 4)
  for k in b:
    np.testing.assert_array_equal(b[k], again[k])  # a function of (seed, step): exact resume


def test_losses_fall_and_resume_is_exact(shapes_root, tmp_path):
  config = tiny_config()
  bank = ObjectBank([(shapes_root, "480p")], subset="val")
  data = det_data.CopyPasteData(bank, (64, 96), config.data.max_boxes, seed=0)
  full = det_train.train(config, str(tmp_path / "full"), data, progress=False)
  rows = full["train_rows"]
  assert [r["step"] for r in rows] == list(range(1, 5))
  assert all(np.isfinite(r["loss"]) for r in rows)
  first, last = [np.mean([r["loss"] for r in rs]) for rs in (rows[:2], rows[-2:])]
  assert last < first  # the heads learn from the first steps (mostly: background is easy)
  half = det_train.train(config, str(tmp_path / "split"), data, stop_at=2, progress=False)
  assert int(half["state"].step) == 2
  with pytest.raises(InputError, match="already holds checkpoints.*--resume"):
    det_train.train(config, str(tmp_path / "split"), data, progress=False)
  resumed = det_train.train(config, str(tmp_path / "split"), data, resume=True, progress=False)
  for a, b in zip(jax.tree.leaves(full["state"].params), jax.tree.leaves(resumed["state"].params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose([r["loss"] for r in resumed["train_rows"]], [r["loss"] for r in rows], rtol=1e-5)


def random_variables(config, seed=0):
  """Variables of the right structure without compiling an init: random weights, BN identity."""
  model = det_train.det_model.build_model(config)
  shapes = jax.eval_shape(lambda: det_train.det_model.init_variables(model, config, jax.random.key(0)))
  rng = np.random.default_rng(seed)
  out = {"params": jax.tree.map(lambda s: rng.normal(0, 0.1, s.shape).astype(np.float32), shapes["params"]),
         "batch_stats": jax.tree.map(lambda s: np.zeros(s.shape, np.float32), shapes["batch_stats"])}
  for path, leaf in jax.tree_util.tree_leaves_with_path(out["batch_stats"]):
    if path[-1].key == "var":
      leaf += 1.0
  return model, out


def test_export_round_trip(tmp_path):
  from vsreid_jax.detection.detector import Detector  # pylint: disable=g-import-not-at-top
  from vsreid_jax.models.weights import load_weights  # pylint: disable=g-import-not-at-top
  config = tiny_config()
  _, variables = random_variables(config)
  state = SimpleNamespace(**variables)  # export reads .params and .batch_stats
  path = str(tmp_path / "w.msgpack")
  det_train.export(state, path, "detector_lite_cpu", meta=dict(step=0))
  name, meta, loaded = load_weights(path)
  assert name == "detector_lite_cpu" and meta["step"] == 0
  assert jax.tree.structure(loaded) == jax.tree.structure(variables)
  for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(variables)):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)  # float16 on disk
  assert Detector(config, loaded, name).config_name == "detector_lite_cpu"


def test_frozen_parameters_follow_torchvision():
  config = detector_lite_cpu.get_config()
  model = det_train.det_model.build_model(config)
  shapes = jax.eval_shape(lambda: det_train.det_model.init_variables(model, config, jax.random.key(0)))
  labels = det_train.frozen_labels(shapes["params"], tuple(config.train.frozen))
  bb = labels["backbone"]
  assert bb["conv1"]["kernel"] == "frozen" and bb["layer1_0"]["conv1"]["kernel"] == "frozen"
  assert bb["layer2_0"]["conv1"]["kernel"] == "train" and bb["layer2_0"]["bn1"]["scale"] == "frozen"
  assert bb["layer3_0"]["downsample_bn"]["bias"] == "frozen"
  assert labels["fpn"]["inner_blocks_0"]["kernel"] == "train"
  assert labels["box_head"]["fc6"]["kernel"] == "train" and labels["rpn_head"]["conv"]["bias"] == "train"
