"""The paper's training stages through `vsreid train --stage ... --init-from ...`, on the lite
config shrunk to tiny crops: rgb_static -> rgb -> flow -> joint, each starting from the previous
stage's weights, and a stage resumed after a kill ending where an uninterrupted one ends.
Slow on a loaded 2-core machine (three models compiled for train, eval and init)."""
import functools
import json

import jax
import numpy as np
import pytest

from vsreid_jax import cli
from vsreid_jax import configs
from vsreid_jax.configs import train_propagation
from vsreid_jax.errors import InputError
from vsreid_jax.models import propagation
from vsreid_jax.models.propagation import build_model
from vsreid_jax.train import stages

from conftest import write_two_clips  # pylint: disable=g-bad-import-order

# The lite model at its smallest (compiles dominate): one block per stage, width 8, one ASPP branch,
# no skip decoder, crops of 33 (output stride 16).
SHRINK = ["model.backbone.stage_sizes=(1,1,1,1)", "model.backbone.width=8", "model.aspp.branch_channels=8",
          "model.aspp.out_channels=8", "model.aspp.rates=(1,)", "model.skip.channels=0",
          "data.crop_size=33", "data.source='python'", "data.roots=(('davis','480p'),)", "data.held_out=('b',)",
          "data.batch_size=2", "data.num_val_examples=2", "data.prefetch=0", "optimizer.warmup_steps=1",
          "train.steps=4", "train.log_every=1", "train.checkpoint_every=2", "train.eval_every=100",
          "train.plot_every=100"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("clips")
  write_two_clips(root / "davis", n_frames=(5, 4), height=48, width=64)
  return root


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory):
  """A persistent XLA cache for this module: the stages share programs (rgb_static and rgb are one
  model; a resumed run is the same program), each run of the CLI would otherwise compile anew."""
  keys = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
          "jax_persistent_cache_min_entry_size_bytes")
  old = {k: getattr(jax.config, k) for k in keys}
  for k, v in zip(keys, (str(tmp_path_factory.mktemp("xla")), 0.0, 0)):
    jax.config.update(k, v)
  yield
  for k, v in old.items():
    jax.config.update(k, v)


def _train(data_dir, workdir, stage, init_from=None, steps=None, resume=False):
  argv = ["train", "--config", "lite_cpu", "--stage", stage, "--workdir", str(workdir), "--data-dir", str(data_dir),
          "--no-progress"]
  argv += [x for a in SHRINK + [f"data.cache_dir='{data_dir / 'cache'}'"] for x in ("--set", a)]
  argv += ["--init-from", str(init_from)] if init_from else []
  argv += ["--steps", str(steps)] if steps else []
  argv += ["--resume"] if resume else []
  return cli.main(argv)


@pytest.fixture(scope="module")
def chain(data_dir, tmp_path_factory, compile_cache):
  """The four stages run end to end, each from the previous one's workdir: {stage: workdir}."""
  del compile_cache
  root = tmp_path_factory.mktemp("stages")
  w = {s: root / s for s in stages.STAGES}
  assert _train(data_dir, w["rgb_static"], "rgb_static") == 0
  assert _train(data_dir, w["rgb"], "rgb", init_from=w["rgb_static"]) == 0
  assert _train(data_dir, w["flow"], "flow", init_from=w["rgb"]) == 0
  assert _train(data_dir, w["joint"], "joint", init_from=w["flow"]) == 0
  return w


def _stream(variables, stream):
  return {c: variables[c][f"{stream}_stream"] for c in ("params", "batch_stats")}


def _assert_tree_equal(a, b):
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(la) == len(lb) > 0
  for x, y in zip(la, lb):
    np.testing.assert_array_equal(x, y)


def _start(stage, init_from):
  """The variables a stage starts from: what `loop.init_state` fills in (shapes for the rest)."""
  config = train_propagation.get_config("lite_cpu", stage=stage)
  for a in SHRINK:
    configs.override(config, a)
  config.init.from_stage_workdir = str(init_from)
  model = build_model(config.model)
  shapes = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0),
                          *propagation.dummy_inputs(config.data.crop_size))
  return stages.init_from_stage(config, shapes)


def test_stage_chain_each_stage_starts_from_the_previous(chain):
  w = chain
  cfg = {s: json.load(open(w[s] / "config.json")) for s in stages.STAGES}
  assert cfg["rgb_static"]["data"]["prior_probs"] == [0.0, 1.0, 0.0]  # deformed GT masks only
  assert cfg["rgb"]["data"]["prior_probs"] != [0.0, 1.0, 0.0]  # DAVIS pairs: real-warp priors too
  trained = {}
  for s in stages.STAGES:
    assert cfg[s]["stage"] == s
    trained[s], step = stages.load_workdir_variables(str(w[s]))
    assert step == 4
    assert sorted(trained[s]["params"]) == sorted(f"{x}_stream" for x in stages.STREAMS[s])

  starts = {s: _start(s, w[prev]) for s, prev in (("rgb", "rgb_static"), ("flow", "rgb"), ("joint", "flow"))}
  _assert_tree_equal(_stream(starts["rgb"], "rgb"), _stream(trained["rgb_static"], "rgb"))
  _assert_tree_equal(_stream(starts["joint"], "rgb"), _stream(trained["rgb"], "rgb"))  # up the chain
  _assert_tree_equal(_stream(starts["joint"], "flow"), _stream(trained["flow"], "flow"))
  # Flow from RGB: every layer copied except the first conv, whose flow x / flow y filters are
  # the mean of the colour filters and whose probability filter is copied.
  rgb_p, flow_p = trained["rgb"]["params"]["rgb_stream"], starts["flow"]["params"]["flow_stream"]
  rgb_k, flow_k = rgb_p["backbone"]["conv1"]["kernel"], flow_p["backbone"]["conv1"]["kernel"]
  assert rgb_k.shape[2] == 4 and flow_k.shape[2] == 3
  for c in (0, 1):
    np.testing.assert_allclose(flow_k[:, :, c], rgb_k[:, :, :3].mean(axis=2), rtol=1e-6)
  np.testing.assert_array_equal(flow_k[:, :, 2], rgb_k[:, :, 3])
  _assert_tree_equal(flow_p["aspp"], rgb_p["aspp"])
  _assert_tree_equal(_stream(starts["flow"], "flow")["batch_stats"], _stream(trained["rgb"], "rgb")["batch_stats"])
  # Each stage trained away from where it started.
  for s in ("rgb", "flow", "joint"):
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(trained[s]["params"]),
                                                        jax.tree.leaves(starts[s]["params"])))


def test_a_stage_trains_from_the_previous_stage_and_resumes_exactly(chain, data_dir, tmp_path):
  killed = tmp_path / "joint"
  assert _train(data_dir, killed, "joint", init_from=chain["flow"], steps=1) == 0
  # Step 1 runs at learning rate 0 (warmup from 0): the saved parameters are the starting ones.
  first, step = stages.load_workdir_variables(str(killed))
  assert step == 1
  _assert_tree_equal(first["params"], _start("joint", chain["flow"])["params"])
  # Resumed from its own checkpoint, it ends where the uninterrupted stage ended, bit for bit.
  assert _train(data_dir, killed, "joint", init_from=chain["flow"], resume=True) == 0
  _assert_tree_equal(stages.load_workdir_variables(str(killed))[0],
                     stages.load_workdir_variables(str(chain["joint"]))[0])


def test_a_stage_refuses_a_workdir_that_is_not_its_predecessor(chain, data_dir, tmp_path, capsys):
  assert _train(data_dir, tmp_path / "flow", "flow", init_from=chain["rgb_static"]) == 2
  err = capsys.readouterr().err
  assert "a rgb_static stage workdir, but stage flow starts from rgb stage" in err and err.count("\n") == 1
  assert _train(data_dir, tmp_path / "rgb", "rgb", init_from=tmp_path / "nowhere") == 2
  assert "no config.json" in capsys.readouterr().err
  config = train_propagation.get_config("lite_cpu")
  config.stage = "flow"  # as `--set stage=flow` through the API, the streams left as they were
  with pytest.raises(InputError, match="pass --stage flow"):
    stages.check_stage(config)
