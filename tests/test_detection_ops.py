"""Anchors, box coder, NMS and RoIAlign of vsreid_jax.detection against torchvision / numpy."""
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vsreid_jax.detection import boxes as box_ops
from vsreid_jax.detection import roi_align

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tv():
  from vsreid_jax.models.import_torch import import_torchvision  # pylint: disable=g-import-not-at-top
  return import_torchvision()


def random_boxes(rng, n, size=100.0):
  xy = rng.uniform(0, size, (n, 2))
  wh = rng.uniform(2, size / 2, (n, 2))
  return np.concatenate([xy, xy + wh], 1).astype(np.float32)


def test_anchors_match_torchvision(tv):
  from torchvision.models.detection.anchor_utils import AnchorGenerator  # pylint: disable=g-import-not-at-top
  from torchvision.models.detection.image_list import ImageList  # pylint: disable=g-import-not-at-top
  sizes = ((32,), (64,), (128,))
  ratios = (0.5, 1.0, 2.0)
  hws = [(16, 24), (8, 12), (4, 6)]
  gen = AnchorGenerator(sizes, (ratios,) * 3)
  images = ImageList(torch.zeros(1, 3, 64, 96), [(60, 90)])
  ref = gen(images, [torch.zeros(1, 8, h, w) for h, w in hws])[0].numpy()
  ours, levels = box_ops.anchors_for((64, 96), hws, sizes, (ratios,) * 3)
  np.testing.assert_array_equal(ours, ref)
  assert np.array_equal(np.bincount(levels), [16 * 24 * 3, 8 * 12 * 3, 4 * 6 * 3])
  np.testing.assert_array_equal(box_ops.base_anchors((32,), ratios), [[-23, -11, 23, 11], [-16, -16, 16, 16],
                                                                      [-11, -23, 11, 23]])


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_box_coder_matches_torchvision(tv, weights):
  from torchvision.models.detection._utils import BoxCoder  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  ref_boxes, gt = random_boxes(rng, 50), random_boxes(rng, 50)
  coder = BoxCoder(weights)
  enc = coder.encode_single(torch.from_numpy(gt), torch.from_numpy(ref_boxes)).numpy()
  np.testing.assert_allclose(box_ops.encode(gt, ref_boxes, weights), enc, rtol=1e-5, atol=1e-5)
  deltas = rng.normal(0, 2, (50, 4)).astype(np.float32)  # large enough to hit the exp clip
  deltas[0, 2] = 50.0
  dec = coder.decode_single(torch.from_numpy(deltas), torch.from_numpy(ref_boxes)).numpy()
  np.testing.assert_allclose(box_ops.decode(deltas, ref_boxes, weights), dec, rtol=1e-5, atol=1e-3)
  np.testing.assert_allclose(box_ops.decode(box_ops.encode(gt, ref_boxes, weights), ref_boxes, weights), gt,
                             atol=1e-3)


def numpy_greedy_nms(boxes, scores, groups, thresh):
  order = np.argsort(-scores, kind="stable")
  keep = []
  for i in order:
    ok = True
    for j in keep:
      if groups[i] != groups[j]:
        continue
      lt = np.maximum(boxes[i, :2], boxes[j, :2])
      rb = np.minimum(boxes[i, 2:], boxes[j, 2:])
      inter = np.prod(np.clip(rb - lt, 0, None))
      a = np.prod(boxes[i, 2:] - boxes[i, :2]) + np.prod(boxes[j, 2:] - boxes[j, :2])
      if inter / (a - inter) > thresh:
        ok = False
        break
    if ok:
      keep.append(i)
  return np.array(keep)


@pytest.mark.parametrize("seed", [0, 1])
def test_nms_matches_numpy_greedy(seed):
  rng = np.random.default_rng(seed)
  n = 120
  b = random_boxes(rng, n, size=60.0)  # crowded: many overlaps
  s = rng.permutation(n).astype(np.float32) / n  # distinct scores
  g = rng.integers(0, 3, n)
  valid = rng.random(n) > 0.2
  ref = numpy_greedy_nms(b[valid], s[valid], g[valid], 0.5)
  ref = np.flatnonzero(valid)[ref]
  order, keep = jax.jit(box_ops.nms, static_argnums=3)(b, s, valid, 0.5, g)
  idx, ok = box_ops.select_top(order, keep, 200)
  got = np.asarray(idx)[np.asarray(ok)]
  assert 10 < len(ref) < n
  np.testing.assert_array_equal(got, ref)
  assert not np.asarray(ok)[len(ref):].any()  # padding after the kept boxes
  idx5, ok5 = box_ops.select_top(order, keep, 5)
  np.testing.assert_array_equal(np.asarray(idx5), ref[:5])
  assert np.asarray(ok5).all()


def test_roi_align_matches_torchvision_python(tv):
  raw = sys.modules["torchvision.ops.roi_align"]._roi_align.__wrapped__  # eager, not torch.compile'd
  rng = np.random.default_rng(0)
  feats = [rng.normal(size=(h, w, 5)).astype(np.float32) for h, w in [(32, 40), (16, 20), (8, 10), (4, 5)]]
  scales = roi_align.infer_scales([f.shape[:2] for f in feats], (128, 160))
  assert scales == [0.25, 0.125, 0.0625, 0.03125]
  # Inside the image, as clipped proposals are: torchvision's python _roi_align (unlike its C++
  # kernel, which we follow) does not zero samples beyond the map; that case is tested below.
  rois = np.concatenate([np.minimum(random_boxes(rng, 40, 110.0), [160, 128, 160, 128]),
                         [[0, 0, 160, 128], [3, 3, 3.5, 3.2], [150, 100, 160, 128]]])
  rois = rois.astype(np.float32)
  ours = np.asarray(roi_align.multiscale_roi_align([jnp.asarray(f) for f in feats], jnp.asarray(rois),
                                                   scales, 7, 2))
  lvl = np.asarray(roi_align.level_mapper(jnp.asarray(rois), 2, 5))
  assert len(set(lvl.tolist())) >= 2  # several levels exercised
  for i, roi in enumerate(rois):
    f = torch.from_numpy(feats[lvl[i]]).permute(2, 0, 1)[None]
    r = torch.from_numpy(np.concatenate([[0], roi]).astype(np.float32))[None]
    ref = raw(f, r, scales[lvl[i]], 7, 7, 2, False)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(ours[i], ref, atol=1e-5, err_msg=f"roi {i} {roi} level {lvl[i]}")


def test_roi_align_zero_outside_the_map():
  # The C++/CUDA kernel: a sample with y < -1 or y > H (x likewise) contributes 0.
  feat = jnp.ones((8, 8, 2))
  out = roi_align.multiscale_roi_align([feat], jnp.array([[40.0, 40.0, 60.0, 60.0], [0, 0, 30, 30]]),
                                       [0.25], 7, 2)
  np.testing.assert_array_equal(np.asarray(out[0]), 0.0)
  np.testing.assert_allclose(np.asarray(out[1]), 1.0)


def test_level_mapper_matches_torchvision(tv):
  from torchvision.ops.poolers import LevelMapper  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(1)
  rois = random_boxes(rng, 200, 600.0)
  ref = LevelMapper(2, 5)([torch.from_numpy(rois)]).numpy()
  np.testing.assert_array_equal(np.asarray(roi_align.level_mapper(jnp.asarray(rois), 2, 5)), ref)
