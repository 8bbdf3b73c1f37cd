"""Shared fixtures: generated clips, and the real data at ../shared/data when present."""
import os
import pathlib

import pytest

from vsreid_jax.data import synthetic

# Tests never write to the user's persistent compilation cache (tests/test_utils.py turns it on in
# a temporary folder where it is under test).
os.environ.setdefault("VSREID_COMPILE_CACHE", "0")

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory):
  """A DAVIS-layout root with two generated sequences of moving, growing objects."""
  root = tmp_path_factory.mktemp("shapes")
  seqs = {
      "two-objects": synthetic.moving_shapes(n_frames=10, n_objects=2, seed=0),
      "one-object": synthetic.moving_shapes(n_frames=8, n_objects=1, seed=1),
  }
  return synthetic.write_davis_root(str(root), seqs)


@pytest.fixture(scope="session")
def davis_train():
  """The real DAVIS 2016 train sequences (480p) or a skip when ../shared/data is absent."""
  root = SHARED_DATA / "davis2016-train"
  if not root.is_dir():
    pytest.skip(f"real DAVIS data not found at {root} (only present beside the repo checkout)")
  return str(root)
