"""Training N_mp on named datasets (issue 15, item 0): `--dataset davis:ROOT[:RES[:SET]]` /
`youtube-vos:ROOT` and `--val-dataset`, read by the inference readers; multi-object masks give one
example item per object; a couple of training steps read a generated root of each layout."""
import os

import numpy as np
import pytest

from vsreid_jax import cli
from vsreid_jax.configs import train_propagation
from vsreid_jax.train import propagation_examples as pe
from vsreid_jax.data import splits, synthetic, training_sets
from vsreid_jax.errors import InputError
from vsreid_jax.train import loop
from test_train_loop import TinyNet

S = 17
N_FRAMES = 4


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
  """A DAVIS-2017-layout root (3-object train sequences "t1", "t2" in train.txt, "v1" in val.txt)
  and a YouTube-VOS train-layout split folder (a mask at every frame; 2 objects)."""
  base = tmp_path_factory.mktemp("datasets")
  davis = str(base / "DAVIS")
  clip = lambda seed, n: synthetic.moving_shapes(n_frames=N_FRAMES, height=48, width=64, n_objects=n, seed=seed)
  synthetic.write_davis_root(davis, {"t1": clip(0, 3), "t2": clip(1, 3)}, subset="train")
  synthetic.write_davis_root(davis, {"v1": clip(2, 2)}, subset="val")
  ytvos = synthetic.write_youtube_vos_root(str(base / "ytvos" / "train"), {"y1": clip(3, 2), "y2": clip(4, 1)},
                                           every_frame=True)
  return dict(davis=davis, ytvos=ytvos, cache=str(base / "cache"))


def _config(roots, datasets, val_datasets):
  c = train_propagation.get_config("paper_r101")
  d = c.data
  d.source = "python"
  d.datasets, d.val_datasets = tuple(datasets), tuple(val_datasets)
  d.crop_size, d.batch_size, d.batch_per_device, d.num_val_examples = S, 2, 0, 2
  d.cache_dir = roots["cache"]
  c.optimizer.name, c.optimizer.schedule, c.optimizer.lr, c.optimizer.warmup_steps = "adamw", "cosine", 1e-3, 0
  c.train.update(steps=2, log_every=1, checkpoint_every=2, eval_every=2, plot_every=100)
  return c


def test_dataset_strings_parse_with_defaults_and_bad_ones_are_refused(tmp_path):
  spec = training_sets.parse("davis:rel/DAVIS", "train")
  assert (spec.layout, spec.root, spec.resolution, spec.subset) == ("davis", os.path.abspath("rel/DAVIS"), "480p",
                                                                     "train")
  assert training_sets.parse("davis:/d:240p", "val").subset == "val"
  assert str(training_sets.parse("davis:/d:Full-Resolution:test-dev", "train")) == "davis:/d:Full-Resolution:test-dev"
  assert str(training_sets.parse("youtube-vos:/y/train", "train")) == "youtube-vos:/y/train"
  for bad in ("/d", "kitti:/d", "davis:", "davis:/d::train", "davis:/d:480p:train:x"):
    with pytest.raises(InputError, match="--dataset"):
      training_sets.parse(bad, "train")


def test_multi_object_davis2017_frames_give_one_item_per_object(roots):
  c = _config(roots, [f"davis:{roots['davis']}"], [f"davis:{roots['davis']}:480p:val"])
  train, val = pe.specs_from_config(c.data, S, 0.1)
  assert train["roots"] == [[roots["davis"], "480p"]]  # the DAVIS entry form the default split uses
  assert train["sequences"] == [[0, "t1"], [0, "t2"]] and val["sequences"] == [[0, "v1"]]
  examples = pe.PropagationExamples(train, roots["cache"])
  for s, (_, seq) in enumerate(examples.sequences):
    for i in range(1, N_FRAMES):
      present = examples.ids[s][i - 1]
      assert present == {1, 2, 3}  # three objects on every frame of the generated clip
      assert sorted(k for s2, i2, k in examples.items if (s2, i2) == (s, i)) == sorted(present)
  # Each object's example is cut around that object alone: its target is that id of the GT.
  record = examples.example(0)
  assert record["target"].max() == 255 and record["target"].min() == 0


def test_validation_sequences_may_not_be_training_ones(roots):
  c = _config(roots, [f"davis:{roots['davis']}"], [f"davis:{roots['davis']}:480p:train"])
  with pytest.raises(InputError, match="also training sequences"):
    pe.specs_from_config(c.data, S, 0.1)
  c = _config(roots, [f"davis:{roots['davis']}"], [])
  with pytest.raises(InputError, match="name both"):
    pe.specs_from_config(c.data, S, 0.1)


def test_youtube_vos_valid_layout_without_masks_at_every_frame_is_refused(roots, tmp_path):
  sparse = synthetic.write_youtube_vos_root(str(tmp_path / "valid"), {"y": synthetic.moving_shapes(n_frames=3)})
  c = _config(roots, [f"youtube-vos:{sparse}"], [f"davis:{roots['davis']}:480p:val"])
  train, _ = pe.specs_from_config(c.data, S, 0.1)
  with pytest.raises(InputError, match="mask at every"):
    pe.PropagationExamples(train, roots["cache"])


@pytest.mark.parametrize("layout", ["davis", "youtube-vos"])
def test_a_short_training_run_reads_each_layout(roots, tmp_path, layout):
  train_set = f"davis:{roots['davis']}:480p:train" if layout == "davis" else f"youtube-vos:{roots['ytvos']}"
  c = _config(roots, [train_set], [f"davis:{roots['davis']}:480p:val"])
  train_spec, _ = pe.specs_from_config(c.data, S, 0.1)
  out = loop.train(c, str(tmp_path / "w"), model=TinyNet(), progress=False)
  assert [int(r["step"]) for r in out["train_rows"]] == [1, 2]
  assert all(np.isfinite(r["loss"]) for r in out["train_rows"])
  assert [int(r["step"]) for r in out["eval_rows"]] == [2]
  # The flows of every training sequence were computed from that root's frames.
  examples = pe.PropagationExamples(train_spec, roots["cache"])
  for s, (r, seq) in enumerate(examples.sequences):
    key = training_sets.flow_key(examples.datasets[r], seq)
    assert os.path.isdir(os.path.join(roots["cache"], "flow", key)), key
  if layout == "youtube-vos":
    assert train_spec["roots"] == [[roots["ytvos"], "", "youtube-vos"], [roots["davis"], "480p"]]
    assert [s for _, s in train_spec["sequences"]] == ["y1", "y2"]


def test_cli_refuses_half_named_datasets_in_one_line(roots, tmp_path, capsys):
  w = str(tmp_path / "w")
  assert cli.main(["train", "--workdir", w, "--dataset", f"davis:{roots['davis']}"]) == 2
  assert cli.main(["train", "--workdir", w, "--dataset", "nope:/x", "--val-dataset", "davis:/x"]) == 2
  assert cli.main(["train", "--net", "reid", "--workdir", w, "--dataset", f"davis:{roots['davis']}",
                   "--val-dataset", f"davis:{roots['davis']}:480p:train"]) == 2
  missing = str(tmp_path / "no-such-root")
  assert cli.main(["train", "--workdir", w, "--dataset", f"davis:{roots['davis']}",
                   "--val-dataset", f"youtube-vos:{missing}"]) == 2
  assert cli.main(["train", "--workdir", w, "--dataset", f"davis:{roots['davis']}:480p:test-dev",
                   "--val-dataset", f"davis:{roots['davis']}"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 5 and all(line.startswith("vsreid: error: ") for line in err), err
  assert "--val-dataset" in err[0] and "nope:/x" in err[1] and "also training sequences" in err[2]
  assert missing in err[3] and "test-dev.txt: set file not found; available sets: train, val" in err[4]


def test_cli_puts_the_named_datasets_in_the_config_with_absolute_roots(roots, tmp_path, monkeypatch):
  seen = {}

  def fake_train(config, workdir, **kw):
    del workdir, kw
    seen["data"] = config.data
    return {"train_rows": []}

  monkeypatch.setattr(loop, "train", fake_train)
  monkeypatch.chdir(os.path.dirname(roots["davis"]))
  assert cli.main(["train", "--workdir", str(tmp_path / "w"), "--dataset", "davis:DAVIS",
                   "--dataset", f"youtube-vos:{roots['ytvos']}", "--val-dataset", "davis:DAVIS"]) == 0
  d = seen["data"]
  assert d.datasets == (f"davis:{roots['davis']}:480p:train", f"youtube-vos:{roots['ytvos']}")
  assert d.val_datasets == (f"davis:{roots['davis']}:480p:val",)
  train, val = pe.specs_from_config(d, S, 0.1)
  assert [s for _, s in train["sequences"]] == ["t1", "t2", "y1", "y2"] and val["sequences"] == [[0, "v1"]]


def test_default_split_validates_on_the_listed_held_out_sequences_only(tmp_path):
  """Held-out sequences never train; the in-training validation scores those in `validate_on`
  (by default the `val` split, so test sequences are seen once, at the end), or all of them when
  none is listed."""
  clip = lambda seed: synthetic.moving_shapes(n_frames=N_FRAMES, height=48, width=64, n_objects=1, seed=seed)
  synthetic.write_davis_root(str(tmp_path / "R"), {"a": clip(0), "b": clip(1), "c": clip(2)}, subset="train")
  d = train_propagation.get_config("lite_cpu").data
  assert tuple(d.validate_on) == tuple(splits.never_trained("val"))
  d.data_dir, d.roots, d.held_out = str(tmp_path), (("R", "480p"),), ("b", "c")
  d.validate_on = ("c", "elsewhere")
  _, train, val = pe._default_split(d)  # pylint: disable=protected-access
  assert train == [(0, "a")] and val == [(0, "c")]  # b is held out: neither trained nor validated on
  d.validate_on = ("elsewhere",)
  assert pe._default_split(d)[1:] == ([(0, "a")], [(0, "b"), (0, "c")])  # pylint: disable=protected-access
