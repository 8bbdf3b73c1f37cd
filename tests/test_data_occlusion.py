"""The multi-object occlusion benchmark (data/occlusion.py): its clips really hide the target and
really take an object out of the frame and back, deterministically, and read back as DAVIS."""
import json
import os

import numpy as np
import pytest

from vsreid_jax.data import occlusion, synthetic
from vsreid_jax.data.davis import DavisDataset
from vsreid_jax.data.objects import ObjectBank

SIZE = (96, 160)
T = 20


@pytest.fixture(scope="module")
def sources_dir(tmp_path_factory):
  """A data folder with one root "shapes" (240p) of four one-object generated sequences."""
  data_dir = tmp_path_factory.mktemp("occ_sources")
  seqs = {f"s{i}": synthetic.moving_shapes(n_frames=24, height=96, width=160, n_objects=1, seed=10 + i,
                                           grow=1.0, speed=1.0) for i in range(4)}
  synthetic.write_davis_root(str(data_dir / "shapes"), seqs, "240p", "train")
  return str(data_dir)


@pytest.fixture(scope="module")
def bank(sources_dir):
  return ObjectBank([(os.path.join(sources_dir, "shapes"), "240p")])


def areas(masks, k):
  return (masks == k).reshape(len(masks), -1).sum(1)


def test_same_seed_same_bytes(bank):
  f1, m1, i1 = occlusion.make_occlusion_sequence(bank, "s0", seed=3, n_frames=T, size=SIZE)
  f2, m2, i2 = occlusion.make_occlusion_sequence(bank, "s0", seed=3, n_frames=T, size=SIZE)
  assert f1.tobytes() == f2.tobytes() and m1.tobytes() == m2.tobytes()
  assert json.dumps(i1) == json.dumps(i2)
  _, m3, _ = occlusion.make_occlusion_sequence(bank, "s0", seed=4, n_frames=T, size=SIZE)
  assert m3.tobytes() != m1.tobytes()


@pytest.mark.parametrize("n_objects", [2, 3, 4])
def test_occlusion_and_exit_happen(bank, n_objects):
  frames, masks, info = occlusion.make_occlusion_sequence(bank, "s1", seed=0, n_frames=T, size=SIZE,
                                                          n_objects=n_objects)
  assert frames.shape == (T,) + SIZE + (3,) and frames.dtype == np.uint8
  assert masks.shape == (T,) + SIZE and masks.dtype == np.uint8
  ids = set(range(1, n_objects + 1))
  # Frame 0 holds every object, each non-trivially (the semi-supervised first-frame mask).
  assert set(np.unique(masks[0])) - {0} == ids
  assert set(np.unique(masks)) - {0} == ids
  for k in ids:
    assert areas(masks, k)[0] >= 0.015 * SIZE[0] * SIZE[1]
  # The target (id 1, the background's own object) is hidden in some frame, then visible again.
  target = areas(masks, 1)
  hidden = np.flatnonzero(target < 0.1 * target[0])
  assert hidden.size >= 3
  assert (target[hidden[-1] + 1:] >= 0.5 * target[0]).any()
  assert set(info["objects"][0]["hidden"]) <= set(hidden.tolist())  # info: under 10% of frame-0 and own area
  # Some pasted object is absent from the frame (wholly outside) and comes back later.
  exiter = info["exit"]
  a = areas(masks, exiter)
  gone = np.flatnonzero(a == 0)
  assert gone.size >= 3 and (a[gone[-1] + 1:] > 0).any()
  assert info["objects"][exiter - 1]["outside"] == [int(t) for t in gone]
  # Every pasted object moves and is animated from consecutive source frames.
  for o in info["objects"][1:]:
    assert len(set(o["source_frames"])) > 1
    assert np.ptp(np.array(o["centre"]), axis=0).max() > 10
    assert not o["source"].split("/")[1] == "s1"  # cut-outs come from other sequences


def test_build_benchmark_reads_back(sources_dir, tmp_path):
  out = str(tmp_path / "occ")
  names = occlusion.build_benchmark(out, sources_dir, sequences=["s0", "s1", "s2"], seed=1, n_sequences=2,
                                    n_frames=T, roots=(("shapes", "240p"),), size=SIZE)
  assert names == ["occ00-s0", "occ01-s1"]
  ds = DavisDataset(out, "240p")
  assert ds.sequences("occlusion") == names
  with open(os.path.join(out, "info.json")) as f:
    infos = json.load(f)
  bank = ObjectBank([(os.path.join(sources_dir, "shapes"), "240p")], sequences=["s0", "s1", "s2"])
  for i, name in enumerate(names):
    frames, masks, info = occlusion.make_occlusion_sequence(
        bank, f"s{i}", seed=1000 + i, n_frames=T, size=SIZE, n_objects=occlusion.OBJECT_COUNTS[i])
    assert (infos[name].pop("split"), infos[name].pop("kind")) == ("custom", "standard")
    assert infos[name] == json.loads(json.dumps(info))
    read = ds.frames(name)
    assert len(read) == T
    for t in range(T):
      np.testing.assert_array_equal(ds.annotation(name, read.names[t]), masks[t])
      assert np.abs(read[t].astype(int) - frames[t]).mean() < 4  # JPEG
  assert os.path.getsize(os.path.join(out, "JPEGImages", "240p", names[0], "00000.jpg")) > 0


def test_hard_kind_adds_a_twin_of_the_target_and_a_longer_occlusion(bank):
  _, masks, info = occlusion.make_occlusion_sequence(bank, "s2", seed=0, n_frames=T, size=SIZE, n_objects=4,
                                                     hidden_share=0.3, twin=True)
  twin = info["objects"][3]
  assert twin["role"] == "twin" and twin["source"] == info["background"]["source"]  # the target's own object
  assert len(info["objects"][0]["hidden"]) >= round(0.3 * T) - 1
  assert set(np.unique(masks[0])) == {0, 1, 2, 3, 4}


def test_benchmark_sources_are_one_fixed_split():
  from vsreid_jax.data import splits  # pylint: disable=g-import-not-at-top
  assert occlusion.held_out_sequences("val") == [s for r, _ in splits.DATA_ROOTS for s in splits.VAL[r]]
  assert set(occlusion.held_out_sequences("test")).isdisjoint(occlusion.held_out_sequences("val"))
  with pytest.raises(ValueError, match="split"):
    occlusion.held_out_sequences("train")


def test_real_data_clip(davis_train):
  """One short clip on the held-out DAVIS sequences (the default sources)."""
  data_dir = os.path.dirname(davis_train)
  if not os.path.isdir(os.path.join(data_dir, "davis2016-train-240p")):
    pytest.skip("davis2016-train-240p not found beside davis2016-train")
  bank = ObjectBank([(os.path.join(data_dir, name), res) for name, res in occlusion.default_roots()],
                    sequences=occlusion.held_out_sequences("test"))
  frames, masks, info = occlusion.make_occlusion_sequence(bank, "motorbike", seed=0, n_frames=20, n_objects=3)
  assert frames.shape == (20, 240, 427, 3)
  assert set(np.unique(masks[0])) == {0, 1, 2, 3}
  target = areas(masks, 1)
  assert (target < 0.1 * target[0]).any()
  assert len(info["objects"][info["exit"] - 1]["outside"]) >= 3
  held = set(occlusion.held_out_sequences("test"))
  assert all(o["source"].split("/")[1] in held for o in info["objects"])


def _synthetic_config(sources_dir, cache_dir, synthetic_clips):
  from vsreid_jax import configs  # pylint: disable=g-import-not-at-top
  d = configs.get("train", "lite_cpu").data
  d.data_dir, d.roots, d.held_out, d.cache_dir = sources_dir, (("shapes", "240p"),), ("s3",), str(cache_dir)
  d.synthetic = synthetic_clips
  return d


def test_synthetic_training_clips_come_from_training_sequences_and_are_built_once(sources_dir, tmp_path, monkeypatch):
  from vsreid_jax.train import propagation_examples as pe  # pylint: disable=g-import-not-at-top
  d = _synthetic_config(sources_dir, tmp_path / "cache", (("standard", 2, 16, 3),))
  train, val = pe.specs_from_config(d, 33, 0.1)
  assert len(train["roots"]) == 2 and train["roots"][1][1] == occlusion.RESOLUTION
  assert train["sequences"] == [[0, "s0"], [0, "s1"], [0, "s2"], [1, "occ00-s0"], [1, "occ01-s1"]]
  assert val["sequences"] == [[0, "s3"]]  # the held-out sequence validates and is never composed in
  built = train["roots"][1][0]
  with open(os.path.join(built, "info.json")) as f:
    infos = json.load(f)
  used = {o["source"] for info in infos.values() for o in info["objects"]} | {
      info["background"]["source"] for info in infos.values()}
  assert used and all(s.split("/")[1] in ("s0", "s1", "s2") for s in used), used
  # The same clips as the benchmark builder writes from those sources.
  ref = str(tmp_path / "ref")
  occlusion.build_benchmark(ref, sources_dir, ["s0", "s1", "s2"], 3, 2, 16, roots=(("shapes", "240p"),))
  for name in infos:
    for frame in sorted(os.listdir(os.path.join(ref, "Annotations", "240p", name))):
      with open(os.path.join(ref, "Annotations", "240p", name, frame), "rb") as a, \
           open(os.path.join(built, "Annotations", "240p", name, frame), "rb") as b:
        assert a.read() == b.read()
  assert os.listdir(os.path.dirname(built)) == [os.path.basename(built)]  # no temporary folder left
  # Built once: a second run reads the folder back without composing anything.
  monkeypatch.setattr(occlusion, "build_benchmark", lambda *a, **k: pytest.fail("built again"))
  assert pe.specs_from_config(d, 33, 0.1)[0] == train


def test_synthetic_clips_with_named_datasets_is_a_clear_error(sources_dir, tmp_path):
  from vsreid_jax.errors import InputError  # pylint: disable=g-import-not-at-top
  from vsreid_jax.train import propagation_examples as pe  # pylint: disable=g-import-not-at-top
  d = _synthetic_config(sources_dir, tmp_path, (("standard", 2, 16, 3),))
  d.datasets, d.val_datasets = (f"davis:{sources_dir}/shapes:240p:train",), (f"davis:{sources_dir}/shapes:240p:train",)
  with pytest.raises(InputError, match="make_occlusion_benchmark.py --sources"):
    pe.specs_from_config(d, 33, 0.1)
  d.datasets, d.val_datasets = (), ()
  d.synthetic = (("easy", 2, 8, 3),)
  with pytest.raises(InputError, match="kind 'easy'"):
    pe.specs_from_config(d, 33, 0.1)
  d.synthetic = (("standard", 2, 8, 3),)
  with pytest.raises(InputError, match=r"config.data.synthetic .*n_frames must be >= 16"):
    pe.specs_from_config(d, 33, 0.1)
  synthetic_dir = os.path.join(str(tmp_path), "synthetic")
  assert not os.path.isdir(synthetic_dir) or not os.listdir(synthetic_dir)  # nothing half-built left
