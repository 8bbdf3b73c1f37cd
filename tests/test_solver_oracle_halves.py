"""solver/oracle.py's two halves: the detector's boxes with a perfect ReID, and ground-truth boxes
with the ReID net (which of the two loses a retrieval)."""
import numpy as np

from vsreid_jax.solver.caches import Candidates
from vsreid_jax.solver.oracle import oracle_boxes, oracle_identities

H, W = 40, 60


def _masks():
  """Two frames: objects 1 and 2 in both; in frame 1 object 2 shows 4 pixels only (hidden)."""
  a = np.zeros((H, W), np.uint8)
  a[5:15, 5:15] = 1
  a[20:30, 30:50] = 2
  b = np.zeros((H, W), np.uint8)
  b[5:15, 10:20] = 1
  b[20:22, 30:32] = 2
  return [a, b]


def test_detector_boxes_take_the_identity_of_the_gt_box_they_overlap():
  boxes = np.array([[[5, 5, 15, 15], [30, 20, 50, 30], [0, 30, 8, 38]],  # obj 1, obj 2, background
                    [[30, 20, 50, 30], [9, 4, 21, 16], [0, 0, 0, 0]]], np.float32)  # where 2 was, obj 1, pad
  valid = np.array([[True, True, True], [True, True, False]])
  cands = Candidates(boxes, valid.astype(np.float32), valid, np.zeros((2, 3, 8), np.float32))
  out, tmpl = oracle_identities(cands, _masks(), [1, 2], min_area=[10.0, 10.0])
  np.testing.assert_array_equal(tmpl, np.eye(2, 3))
  np.testing.assert_array_equal(out.boxes, boxes)  # the detector's own boxes, kept
  np.testing.assert_array_equal(out.embeddings[0], np.eye(3))  # 1, 2, other
  # Frame 1: object 2 is hidden (4 px < 10), so the box where it was is "other"; the shifted box
  # of object 1 (IoU 0.69) is object 1's; the padding embeds nothing.
  np.testing.assert_array_equal(out.embeddings[1], [[0, 0, 1], [1, 0, 0], [0, 0, 0]])


class _CentreEmbedder:
  """Embeds a box as its normalised centre, to check which boxes were embedded."""

  def embed(self, images, boxes):
    del images
    c = np.stack([(boxes[..., 0] + boxes[..., 2]) / 2 / W, (boxes[..., 1] + boxes[..., 3]) / 2 / H], -1)
    return c.astype(np.float32)


def test_gt_boxes_are_embedded_by_the_reid_net():
  frames = np.zeros((2, H, W, 3), np.uint8)
  cands = oracle_boxes(frames, _masks(), [1, 2], [10.0, 10.0], _CentreEmbedder())
  assert cands.valid.tolist() == [[True, True], [True, False]]  # the hidden object makes no candidate
  np.testing.assert_allclose(cands.embeddings[0], [[10 / W, 10 / H], [40 / W, 25 / H]])
  np.testing.assert_allclose(cands.embeddings[1], [[15 / W, 10 / H], [0, 0]])
