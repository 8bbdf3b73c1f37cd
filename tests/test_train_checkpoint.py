"""Resuming: config.json only after a successful restore, a changed model config refused."""
import json

import jax.numpy as jnp
import ml_collections
import pytest

from vsreid_jax.errors import InputError
from vsreid_jax.train import checkpoint as ckpt_lib


def _config(width=8, steps=10):
  return ml_collections.ConfigDict(dict(name="tiny", model=dict(width=width, streams=("rgb", "flow")),
                                        train=dict(steps=steps)))


def _state(value=1.0):
  return {"w": jnp.full((3,), value), "step": jnp.int32(0)}


def _started(workdir, config):
  """A workdir as a run of `config` leaves it: config.json and a checkpoint at step 2."""
  ckpt = ckpt_lib.open_workdir(workdir, config, 2, resume=False)
  ckpt.save(2, _state(2.0), {"position": 2})
  ckpt.close()
  return json.loads((workdir / "config.json").read_text())


def test_resume_with_a_changed_model_config_is_refused_with_the_differing_keys(tmp_path):
  recorded = _started(tmp_path, _config(width=8))
  changed = _config(width=16)
  changed.model.streams = ("rgb",)
  with pytest.raises(InputError, match=r"config.json: --resume with a different model config \("
                                       r"model.streams: \['rgb', 'flow'\] -> \['rgb'\]; model.width: 8 -> 16\)"):
    ckpt_lib.open_workdir(tmp_path, changed, 2, resume=True)
  assert json.loads((tmp_path / "config.json").read_text()) == recorded


def test_config_json_is_rewritten_only_after_a_successful_restore(tmp_path):
  recorded = _started(tmp_path, _config(steps=10))
  longer = _config(steps=20)  # not a model key: resuming with a longer schedule is allowed
  ckpt = ckpt_lib.open_workdir(tmp_path, longer, 2, resume=True)
  assert json.loads((tmp_path / "config.json").read_text()) == recorded
  with pytest.raises(InputError, match="no checkpoint reads back"):
    ckpt.restore({"other": jnp.zeros((5,))})  # a state this workdir never held
  assert json.loads((tmp_path / "config.json").read_text()) == recorded
  assert sorted(ckpt.manager.all_steps()) == [2]  # nothing moved aside for a wrong template
  state, data = ckpt.restore(_state())
  assert float(state["w"][0]) == 2.0 and data == {"position": 2}
  assert json.loads((tmp_path / "config.json").read_text())["train"]["steps"] == 20
  ckpt.close()


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_unreadable_latest_checkpoint_falls_back_to_the_one_before(tmp_path, capsys, damage):
  ckpt = ckpt_lib.open_workdir(tmp_path, _config(), 3, resume=False)
  for step in (1, 2, 3):
    ckpt.save(step, {"w": jnp.full((3,), float(step)), "step": jnp.int32(step)}, {"position": step})
  ckpt.close()
  latest = tmp_path / "checkpoints" / "3"
  files = [p for p in latest.rglob("*") if p.is_file()]
  for p in files:
    if damage == "empty":
      p.unlink()
    else:
      p.write_bytes(p.read_bytes()[:len(p.read_bytes()) // 2])
  ckpt = ckpt_lib.open_workdir(tmp_path, _config(), 3, resume=True)
  state, data = ckpt.restore(_state())
  assert float(state["w"][0]) == 2.0 and data == {"position": 2}
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith(f"vsreid: warning: {latest}: checkpoint unreadable")
  assert f"moved to {tmp_path / 'corrupt_checkpoints' / '3'}, resuming from the one before" in err[0]
  assert (tmp_path / "corrupt_checkpoints" / "3").is_dir()  # kept, not deleted
  ckpt.save(3, {"w": jnp.full((3,), 30.0), "step": jnp.int32(3)}, {"position": 3})  # the step is free again
  ckpt.close()
  assert float(ckpt_lib.Checkpointer(tmp_path / "checkpoints").restore(_state())[0]["w"][0]) == 30.0
