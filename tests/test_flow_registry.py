"""Flow backends by name (vsreid_jax/flow `get`): one registry for inference and training."""
import numpy as np
import pytest

from vsreid_jax import configs
from vsreid_jax import flow as flow_lib
from vsreid_jax.train import propagation_examples as pe
from vsreid_jax.data import synthetic
from vsreid_jax.errors import InputError
from vsreid_jax.flow import dis, raft


def test_dis_names_build_the_preset_they_name():
  assert flow_lib.DIS_PRESETS == tuple(dis.PRESETS)
  rng = np.random.default_rng(0)
  a = rng.integers(0, 255, (48, 64, 3), np.uint8)
  b = np.roll(a, 2, axis=1)
  for preset in dis.PRESETS:
    backend = flow_lib.get(f"dis-{preset}")
    assert backend.name == f"dis-{preset}"
    np.testing.assert_array_equal(backend.flow(a, b), dis.DISFlow(preset).flow(a, b))


def test_unknown_name_is_one_line_listing_every_backend():
  with pytest.raises(InputError) as e:
    flow_lib.get("dis-slow")
  msg = str(e.value)
  assert "\n" not in msg and "'dis-slow'" in msg
  for name in flow_lib.NAMES:
    assert name in msg


def test_inference_and_training_configs_name_the_same_backend_under_one_key():
  seg = configs.get("segment")
  train = configs.get("train", "lite_cpu")
  assert seg.flow == train.data.flow == flow_lib.DEFAULT
  assert seg.flow_weights == train.data.flow_weights == ""


def test_dis_takes_no_weights_and_raft_needs_them(tmp_path):
  with pytest.raises(InputError, match="takes no weights"):
    flow_lib.get("dis-fast", str(tmp_path / "w.pth"))
  with pytest.raises(InputError, match="raft-small needs weights"):
    flow_lib.get("raft-small")
  with pytest.raises(InputError, match="flow weights not found"):
    flow_lib.get("raft-small", str(tmp_path / "missing.pth"))
  bad = tmp_path / "bad.pth"
  bad.write_text("not a state_dict")
  with pytest.raises(InputError, match="not a torchvision raft_small state_dict"):
    flow_lib.get("raft-small", str(bad))


def test_raft_by_name_loads_the_state_dict_and_names_its_weights(tmp_path):
  torch = pytest.importorskip("torch")
  from vsreid_jax.flow import import_torch_raft  # pylint: disable=g-import-not-at-top
  config = configs.get("raft", "small")
  names = []
  for seed in (0, 1):
    variables = raft.init_variables(raft.model_from_config(config.model), seed=seed)
    path = tmp_path / f"raft{seed}.pth"
    torch.save({k: torch.from_numpy(np.array(v))
                for k, v in import_torch_raft.state_dict_from_variables(variables).items()}, path)
    backend = flow_lib.get("raft-small", str(path))
    assert isinstance(backend, raft.RAFTFlow) and backend.name.startswith("raft-small-12it-")
    for got, want in zip(*(jax_leaves(v) for v in (backend.variables, variables))):
      np.testing.assert_array_equal(got, want)
    names.append(backend.name)
  assert names[0] != names[1]  # flow caches never mix the flows of two weights files


def jax_leaves(tree):
  import jax  # pylint: disable=g-import-not-at-top
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_training_examples_use_the_backend_their_config_names(tmp_path):
  frames, masks = synthetic.moving_shapes(n_frames=3, height=48, width=64, n_objects=1, seed=0)
  synthetic.write_davis_root(str(tmp_path / "root"), {"clip": (frames, masks)}, subset="train")
  spec = pe.make_spec([(str(tmp_path / "root"), "480p")], [(0, "clip")], crop_size=17, margin=0.15,
                      flow="dis-ultrafast")
  assert pe.PropagationExamples(spec, str(tmp_path / "cache")).backend.name == "dis-ultrafast"
  with pytest.raises(InputError, match="config.data.flow 'dis-slow'"):
    pe.make_spec([(str(tmp_path / "root"), "480p")], [(0, "clip")], crop_size=17, margin=0.15, flow="dis-slow")


def test_segment_rejects_raft_without_weights_in_one_line(tmp_path, capsys):
  from vsreid_jax import cli  # pylint: disable=g-import-not-at-top
  assert cli.main(["segment", "--demo", "--out", str(tmp_path / "o"), "--no-progress", "--flow", "raft-small"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("vsreid: error: flow raft-small needs weights")
  assert not (tmp_path / "o").exists()
