"""The runtime Detector: fixed shapes, one compilation per batch size, boxes in input pixels,
and the shipped weights."""
import os

import cv2
import numpy as np
import pytest

from test_detection_train import random_variables, tiny_config
from vsreid_jax.data.davis import DavisDataset
from vsreid_jax.data.objects import frame_boxes
from vsreid_jax.geometry import box_iou
from vsreid_jax.detection.detector import DEFAULT_DETECTOR_WEIGHTS, Detector  # pylint: disable=g-bad-import-order
from vsreid_jax.errors import InputError
from vsreid_jax.utils import jit_cache_size


@pytest.fixture(scope="module")
def tiny_detector():
  config = tiny_config()
  _, variables = random_variables(config)
  return Detector(config, variables)


def test_detect_shapes_order_and_one_compile(tiny_detector):
  det = tiny_detector
  rng = np.random.default_rng(0)
  m, p = det.config.roi.detections_per_img, det.config.rpn.post_nms_top_n_test
  for h, w in [(64, 96), (128, 192), (60, 100), (200, 150)]:  # one bucket for all
    images = rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8)
    boxes, scores, valid = det.detect(images)
    assert boxes.shape == (2, m, 4) and scores.shape == (2, m) and valid.shape == (2, m)
    assert boxes.dtype == np.float32 and scores.dtype == np.float32 and valid.dtype == bool
    assert np.all(np.diff(np.where(valid, scores, -1), axis=1) <= 0)  # sorted, valid first
    assert np.all(boxes[..., 0::2] <= w) and np.all(boxes[..., 1::2] <= h) and np.all(boxes >= 0)
    props, pscores, pvalid = det.proposals(images)
    assert props.shape == (2, p, 4) and pvalid.any()
    assert np.all(np.diff(np.where(pvalid, pscores, -1), axis=1) <= 0)
  assert jit_cache_size(det) == 1 and jit_cache_size(det.jitted) == 1


def test_boxes_map_back_to_input_pixels(tiny_detector):
  det = tiny_detector
  rng = np.random.default_rng(1)
  big = cv2.resize(rng.integers(0, 256, (16, 24, 3), dtype=np.uint8), (192, 128), interpolation=cv2.INTER_LINEAR)
  small = cv2.resize(big, (96, 64), interpolation=cv2.INTER_AREA)  # exactly what the detector feeds
  pb, _, vb = det.proposals(big[None])
  ps, _, vs = det.proposals(small[None])
  np.testing.assert_array_equal(vb, vs)
  np.testing.assert_allclose(pb[vb], 2 * ps[vs], atol=1e-3)


def test_rejects_bad_input(tiny_detector):
  with pytest.raises(InputError, match=r"images must be \[B, H, W, 3\] RGB, got shape \(64, 96, 3\)"):
    tiny_detector.detect(np.zeros((64, 96, 3), np.uint8))


@pytest.mark.skipif(not os.path.isfile(DEFAULT_DETECTOR_WEIGHTS), reason="no shipped detector weights")
def test_shipped_weights_find_the_object(davis_train):
  assert os.path.getsize(DEFAULT_DETECTOR_WEIGHTS) < 15e6
  det = Detector.from_weights()
  assert det.config_name == "detector_lite_cpu"
  ds = DavisDataset(davis_train, "480p")
  seq = "dance-jump"  # held out: never trained on
  frames = ds.frames(seq)
  hits = []
  for t in (0, 20, 40):
    gt = np.stack(list(frame_boxes(ds.annotation(seq, frames.names[t])).values()))
    boxes, scores, valid = det.detect(frames[t][None])
    assert valid[0].any()
    hits.append(box_iou(gt, boxes[0][valid[0]][:5]).max() >= 0.5)
  assert sum(hits) >= 2  # the object among the top-5 detections
