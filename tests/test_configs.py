"""configs.get(kind, name): one registry, one error type, locked configs; --override in the CLI."""
import os

import pytest

from vsreid_jax import cli
from vsreid_jax import configs


def test_every_registered_config_loads_locked():
  for kind in configs.REGISTRY:
    for name in configs.names(kind):
      config = configs.get(kind, name)
      assert config.is_locked, (kind, name)
      with pytest.raises(AttributeError, match="locked"):
        config.no_such_key = 1
  assert configs.get("propagation").crop_size == configs.get("propagation", "lite_cpu").crop_size
  assert configs.get("train", "paper_r101").name == "paper_r101"
  assert not configs.get("segment", lock=False).is_locked


@pytest.mark.parametrize("kind,name", [("propagation", "lite"), ("train", "reid_lite_cpu"), ("online", "x"),
                                       ("detector", "lite_cpu"), ("reid", "r50"), ("raft", "medium"),
                                       ("nets", "lite_cpu")])
def test_unknown_names_and_kinds_raise_one_error_type(kind, name):
  with pytest.raises(configs.ConfigError, match=f"unknown .*{name if kind != 'nets' else 'kind'}"):
    configs.get(kind, name)


def test_override_sets_existing_fields_and_refuses_unknown_ones():
  config = configs.get("train", "lite_cpu")
  configs.override(config, "optimizer.lr=3e-4")
  configs.override(config, "data.roots=(('davis', '480p'),)")
  configs.override(config, "train.workdir=runs/x")  # not a literal: kept as a string
  assert config.optimizer.lr == 3e-4 and config.data.roots == (("davis", "480p"),)
  assert config.train.workdir == "runs/x"
  with pytest.raises(configs.ConfigError, match=r"optimizer has no key 'lrr'; did you mean 'lr'\?"):
    configs.override(config, "optimizer.lrr=1.0")
  with pytest.raises(configs.ConfigError, match="the config has no key 'optimiser'"):
    configs.override(config, "optimiser.lr=1.0")
  with pytest.raises(configs.ConfigError, match="expected KEY=VALUE"):
    configs.override(config, "optimizer.lr")
  with pytest.raises(configs.ConfigError, match="optimizer.lr=fast"):  # a string into a float field
    configs.override(config, "optimizer.lr=fast")
  assert config.optimizer.lr == 3e-4
  # Unlocked configs refuse unknown keys too (an override never adds one).
  with pytest.raises(configs.ConfigError, match="no key 'lost_ratoi'"):
    configs.override(configs.get("segment", lock=False), "propagation.lost_ratoi=0.2")


@pytest.mark.parametrize("flag", ["--override", "--set"])
def test_train_misspelt_key_is_a_one_line_error_before_anything_is_written(tmp_path, capsys, flag):
  workdir = tmp_path / "w"
  assert cli.main(["train", "--workdir", str(workdir), "--data-dir", str(tmp_path), flag,
                   "optimizer.lrr=3e-4"]) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("vsreid: error: --override optimizer.lrr=3e-4: optimizer has no key 'lrr'") and "\n" not in err
  assert not workdir.exists()


def test_segment_override_applies_and_a_misspelt_key_writes_nothing(shapes_root, tmp_path, capsys):
  frames = os.path.join(shapes_root, "JPEGImages", "480p", "one-object")
  mask = os.path.join(shapes_root, "Annotations", "480p", "one-object", "00000.png")
  base = ["segment", "--video", frames, "--mask", mask, "--net", "identity", "--no-progress"]
  assert cli.main(base + ["--out", str(tmp_path / "bad"), "--override", "propagation.lost_ratoi=0.05"]) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("vsreid: error: --override propagation.lost_ratoi=0.05: propagation has no key")
  assert "did you mean 'lost_ratio'?" in err and "\n" not in err
  assert not (tmp_path / "bad").exists()
  # A valid override takes effect: propagation only, so no solver log is written.
  assert cli.main(base + ["--out", str(tmp_path / "ok"), "--override", "method=propagate"]) == 0
  assert "method=propagate" in capsys.readouterr().out
  assert len([f for f in os.listdir(tmp_path / "ok" / "one-object") if f.endswith(".png")]) == 8
  assert not (tmp_path / "ok" / "one-object_retrievals.json").exists()
