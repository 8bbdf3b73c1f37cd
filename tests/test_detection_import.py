"""Parity of the flax Faster R-CNN with torchvision's fasterrcnn_resnet50_fpn on random weights."""
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vsreid_jax.configs import detector_r50_fpn
from vsreid_jax.detection import import_torch
from vsreid_jax.detection import model as det_model

torch = pytest.importorskip("torch")

H, W = 256, 320  # multiples of 32 and min_size/max_size below: torchvision neither resizes nor pads
NUM_CLASSES = 3


def torch_batched_nms(boxes, scores, idxs, iou_threshold):
  """Pure-torch greedy NMS per group (the CUDA torchvision build has no CPU nms op)."""
  order = torch.argsort(scores, descending=True, stable=True)
  b, g = boxes[order], idxs[order]
  lt = torch.maximum(b[:, None, :2], b[None, :, :2])
  rb = torch.minimum(b[:, None, 2:], b[None, :, 2:])
  inter = (rb - lt).clamp(min=0).prod(-1)
  area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
  iou = inter / (area[:, None] + area[None, :] - inter)
  over = (iou > iou_threshold) & (g[:, None] == g[None, :])
  keep = torch.zeros(len(b), dtype=torch.bool)
  for i in range(len(b)):
    keep[i] = not bool((keep[:i] & over[i, :i]).any())
  return order[keep]


def eager_roi_align(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
  """torchvision's pure-python `_roi_align` without its torch.compile wrapper (a minute to compile)."""
  raw = sys.modules["torchvision.ops.roi_align"]._roi_align.__wrapped__
  return raw(input, boxes, spatial_scale, output_size[0], output_size[1], sampling_ratio, aligned)


@pytest.fixture(scope="module")
def parity(request):
  from vsreid_jax.models.import_torch import import_torchvision  # pylint: disable=g-import-not-at-top
  tv = import_torchvision()
  import torchvision.ops.boxes as tv_boxes  # pylint: disable=g-import-not-at-top
  patch = pytest.MonkeyPatch()
  patch.setattr(tv_boxes, "batched_nms", torch_batched_nms)
  patch.setattr(sys.modules["torchvision.ops.poolers"], "roi_align", eager_roi_align)
  request.addfinalizer(patch.undo)

  torch.manual_seed(0)
  net = tv.models.detection.fasterrcnn_resnet50_fpn(
      weights=None, weights_backbone=None, num_classes=NUM_CLASSES, min_size=H, max_size=W).eval()
  with torch.no_grad():
    # Random trunk weights give FPN features of ~50 and a saturated softmax (scores tied at 1.0):
    # small box-predictor weights keep the class scores apart so that NMS order is well defined.
    net.roi_heads.box_predictor.cls_score.weight.mul_(0.05)
    # Likewise smaller RPN deltas: on features of ~50 the float32 rounding of the two frameworks,
    # amplified through exp(dw) * width, reaches 1e-2 px on 300 px proposals.
    net.rpn.head.bbox_pred.weight.mul_(0.1)
    net.roi_heads.box_predictor.bbox_pred.weight.mul_(0.05)
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (H, W, 3)).astype(np.uint8)
  with torch.no_grad():
    x = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    images, _ = net.transform([x])
    assert tuple(images.tensors.shape[-2:]) == (H, W)
    feats = net.backbone(images.tensors)
    proposals, _ = net.rpn(images, feats)
    dets, _ = net.roi_heads(feats, proposals, images.image_sizes)

  config = detector_r50_fpn.get_config()
  config.model.num_classes = NUM_CLASSES
  model = det_model.build_model(config)
  template = jax.eval_shape(lambda: det_model.init_variables(model, config, jax.random.PRNGKey(0)))
  template = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), template)
  variables = import_torch.import_fasterrcnn(template, net.state_dict())
  fn = jax.jit(lambda v, im: det_model.forward(model, config, v, det_model.normalize(im, config), (H, W)))
  out = jax.device_get(fn(variables, jnp.asarray(image[None])))
  return dict(torch_proposals=proposals[0].numpy(), torch_boxes=dets[0]["boxes"].numpy(),
              torch_scores=dets[0]["scores"].numpy(), torch_labels=dets[0]["labels"].numpy(), out=out,
              variables=variables, state_dict=net.state_dict())


def test_rpn_proposals_match(parity):
  ref = parity["torch_proposals"]
  out = parity["out"]
  n = int(out["proposal_valid"][0].sum())
  assert len(ref) > 100 and n == len(ref)
  np.testing.assert_allclose(out["proposals"][0, :n], ref, atol=1e-3, rtol=1e-4)


def test_detections_match(parity):
  out = parity["out"]
  n = int(out["valid"][0].sum())
  ref_boxes, ref_scores = parity["torch_boxes"], parity["torch_scores"]
  assert n == len(ref_boxes) and n > 5
  assert np.all(np.diff(out["scores"][0, :n]) <= 0)
  np.testing.assert_allclose(out["boxes"][0, :n], ref_boxes, atol=1e-3, rtol=1e-4)
  np.testing.assert_allclose(out["scores"][0, :n], ref_scores, atol=1e-4)
  np.testing.assert_array_equal(out["labels"][0, :n], parity["torch_labels"])


def test_import_covers_every_tensor(parity):
  variables, sd = parity["variables"], parity["state_dict"]
  n_flax = sum(np.size(x) for x in jax.tree.leaves(variables))
  n_torch = sum(v.numel() for k, v in sd.items() if not k.endswith("num_batches_tracked"))
  assert n_flax == n_torch


def test_import_rejects_wrong_num_classes(parity):
  config = detector_r50_fpn.get_config()  # 2 classes vs the checkpoint's 3
  model = det_model.build_model(config)
  template = jax.eval_shape(lambda: det_model.init_variables(model, config, jax.random.PRNGKey(0)))
  template = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), template)
  with pytest.raises(ValueError, match="num_classes"):
    import_torch.import_fasterrcnn(template, parity["state_dict"])
