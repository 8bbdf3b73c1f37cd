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


def write_two_clips(root, n_frames=(6, 6), height: int = 64, width: int = 96) -> str:
  """A DAVIS-layout root (set `train`) of two generated clips, "a" with two moving objects and "b"
  with one (the held-out sequence of the training tests); returns the root."""
  seqs = {"a": synthetic.moving_shapes(n_frames=n_frames[0], height=height, width=width, n_objects=2, seed=0),
          "b": synthetic.moving_shapes(n_frames=n_frames[1], height=height, width=width, n_objects=1, seed=1)}
  synthetic.write_davis_root(str(root), seqs, subset="train")
  return str(root)


@pytest.fixture(scope="session")
def two_clip_dir(tmp_path_factory):
  """A data_dir holding the root "davis" of `write_two_clips` (6 frames of 96x64 each), what the
  N_mp training tests train on."""
  data_dir = tmp_path_factory.mktemp("clips")
  write_two_clips(data_dir / "davis")
  return data_dir


@pytest.fixture(scope="session")
def davis_train():
  """The real DAVIS 2016 train sequences (480p) or a skip when ../shared/data is absent."""
  root = SHARED_DATA / "davis2016-train"
  if not root.is_dir():
    pytest.skip(f"real DAVIS data not found at {root} (only present beside the repo checkout)")
  return str(root)


def _snapshot(root, skip=()):
  """{relative path: (size, mtime_ns, sha1)} of every file and link under root, folders as None;
  paths inside any of `skip` (folders) are left out."""
  import hashlib  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  root = str(root)
  skip = [os.path.realpath(str(s)) for s in skip]
  out = {}
  for dirpath, dirnames, filenames in os.walk(root):
    for name in dirnames + filenames:
      path = os.path.join(dirpath, name)
      if any(os.path.realpath(path) == s or os.path.realpath(path).startswith(s + os.sep) for s in skip):
        continue
      rel = os.path.relpath(path, root)
      if os.path.islink(path):
        out[rel] = ("link", os.readlink(path))
      elif os.path.isdir(path):
        out[rel] = None
      else:
        st = os.stat(path)
        with open(path, "rb") as f:
          out[rel] = (st.st_size, st.st_mtime_ns, hashlib.sha1(f.read()).hexdigest())
  return out


@pytest.fixture
def snapshot():
  """`snapshot(root, skip=())`: the files under root (size, mtime, hash), to assert none changed."""
  return _snapshot
