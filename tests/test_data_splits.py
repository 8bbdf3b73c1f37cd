"""The fixed splits of data/splits.py."""
import pytest

from vsreid_jax.data import splits


def test_held_out_of_one_split_is_that_split_and_all_is_both():
  val, test, both = splits.held_out("val"), splits.held_out("test"), splits.held_out()
  for root, _ in splits.DATA_ROOTS:
    assert val[root] == splits.sequences("val", root) and test[root] == splits.sequences("test", root)
    assert both[root] == val[root] + test[root]
    assert set(val[root]).isdisjoint(test[root])
  assert tuple(s for seqs in both.values() for s in seqs) == splits.never_trained()
  assert splits.never_trained("val") == tuple(s for seqs in val.values() for s in seqs)
  assert splits.never_trained("test") == tuple(s for seqs in test.values() for s in seqs)
  with pytest.raises(ValueError, match="split"):
    splits.held_out("train")
