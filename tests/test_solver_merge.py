"""Merge of per-object probabilities: background = prod(1 - P_k), argmax, ids mapped back."""
import numpy as np

from vsreid_jax.solver.merge import merge_probs, merge_to_ids


def test_background_is_product_of_complements():
  # Pixel 0: P = (0.4, 0.4): bg = 0.36 < 0.4 -> object 1 (first of the tie).
  # Pixel 1: P = (0.3, 0.2): bg = 0.56 -> background, though no object is below 0.5 by much.
  # Pixel 2: P = (0.6, 0.7): bg = 0.12 -> object 2.
  prob = np.array([[[0.4, 0.3, 0.6]], [[0.4, 0.2, 0.7]]], np.float32)
  np.testing.assert_array_equal(np.asarray(merge_probs(prob)), [[1, 0, 2]])


def test_ids_are_mapped_and_padding_ignored():
  prob = np.zeros((4, 1, 3), np.float32)  # bucket of 4, two real objects with ids 3 and 7
  prob[0, 0, 1] = 0.9
  prob[1, 0, 2] = 0.8
  prob[2:] = 1.0  # padding must never win
  ids = merge_to_ids(prob, np.array([3, 7], np.uint8))
  assert ids.dtype == np.uint8
  np.testing.assert_array_equal(ids, [[0, 3, 7]])
