"""`--preset paper` and the test-time switches of `vsreid segment` and experiments/ablation.py; the
net's own crop as the default scale; single-stream weights files."""
import argparse
import os
import sys

import pytest

from vsreid_jax import api
from vsreid_jax import cli
from vsreid_jax.configs import propagation_lite_cpu
from vsreid_jax.configs import segment as segment_config
from vsreid_jax.errors import InputError
from vsreid_jax.models import propagation, weights
from vsreid_jax.solver.algorithm3 import SolverConfig

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from experiments import ablation  # pylint: disable=wrong-import-position


def _config(*switches):
  args = cli.build_parser().parse_args(["segment", "--demo", "--out", "unused", *switches])
  return cli._segment_config(args)  # pylint: disable=protected-access


def test_paper_preset_sets_the_papers_test_time_behaviour():
  default, paper = _config(), _config("--preset", "paper")
  assert (default.flip, default.solver.recover_passes, default.solver.retrieval_rule) == (None, 5, "original")
  assert (default.propagation.lost_ratio, default.solver.max_retrievals) == (0.1, 20)
  assert paper.flip is False and paper.solver.recover_passes == 1
  assert paper.solver.retrieval_rule == "paper" and paper.propagation.lost_ratio == 0.0
  assert paper.solver.max_retrievals == segment_config.NO_CAP and paper.propagation.scales is None
  assert (default.solver.rho_relative, default.solver.stop_outside) == (0.5, True)
  assert paper.solver.rho_relative is None and paper.solver.stop_outside is False
  assert (default.solver.motion_weight, default.propagation.exclusive) == (1.0, True)
  assert paper.solver.motion_weight == 0.0 and paper.propagation.exclusive is False
  assert default.solver.confirm_share is None and paper.solver.confirm_share is None


def test_switches_turn_each_extension_off_and_refine_the_preset():
  c = _config("--no-flip", "--recover-passes", "1", "--lost-ratio", "0", "--retrieval-rule", "paper",
              "--max-retrievals", "0")
  assert (c.flip, c.solver.recover_passes, c.propagation.lost_ratio) == (False, 1, 0.0)
  assert (c.solver.retrieval_rule, c.solver.max_retrievals) == ("paper", 0)
  c = _config("--preset", "paper", "--flip", "--recover-passes", "5", "--scales", "0.15:129,0.15:161")
  assert c.flip is True and c.solver.recover_passes == 5 and c.solver.retrieval_rule == "paper"
  assert c.propagation.scales == ((0.15, 129), (0.15, 161))


@pytest.mark.parametrize("switches,message", [
    (["--flip", "--no-flip"], "choose one"),
    (["--recover-passes", "0"], "--recover-passes 0: must be >= 1"),
    (["--lost-ratio", "1.5"], "--lost-ratio 1.5: must be in [0, 1)"),
])
def test_bad_switches_end_with_one_line(switches, message, capsys, tmp_path):
  assert cli.main(["segment", "--demo", "--out", str(tmp_path / "o"), *switches]) == 2
  err = capsys.readouterr().err
  assert err.startswith("vsreid: error: ") and message in err and err.count("\n") == 1
  assert not os.path.exists(tmp_path / "o")


def test_paper_rule_reaches_the_solver_and_an_unknown_rule_is_refused():
  config = _config("--retrieval-rule", "paper")
  assert config.solver.retrieval_rule == "paper"
  assert SolverConfig(retrieval_rule=config.solver.retrieval_rule).retrieval_rule == "paper"
  assert _config().solver.retrieval_rule == "original"
  with pytest.raises(ValueError, match="retrieval_rule 'nearest': choose one of"):
    SolverConfig(retrieval_rule="nearest")


def test_default_scale_is_the_nets_own_crop():
  net = propagation_lite_cpu.get_config()
  assert api.propagation_config(segment_config.get_config(), net).scales == ((0.15, 161),)
  net.crop_size, net.crop_margin = 193, 0.2
  assert api.propagation_config(segment_config.get_config(), net).scales == ((0.2, 193),)
  assert api.propagation_config(segment_config.get_config(), None).scales == ((0.15, 449),)  # identity: the paper's
  c = segment_config.get_config()
  c.propagation.scales = ((0.3, 97),)  # --scales wins
  assert api.propagation_config(c, net).scales == ((0.3, 97),)


def test_single_stream_weights_run_as_their_own_streams(tmp_path):
  cfg = propagation_lite_cpu.get_config()
  cfg.model.streams = ("rgb",)
  variables = propagation.numpy_init(propagation.build_model(cfg.model), *propagation.dummy_inputs(33))
  path = str(tmp_path / "rgb.msgpack")
  weights.save_weights(path, variables, "lite_cpu")
  net, model_cfg = api.build_net(path, flip=False)
  assert model_cfg.model.streams == ("rgb",)
  with pytest.raises(InputError, match="has no flow stream"):
    api.build_net(path, flip=False, streams=("rgb", "flow"))


def test_ablation_rows_share_the_preset_and_use_the_rgb_net():
  parser = argparse.ArgumentParser()
  cli.add_test_time_switches(parser)
  args = parser.parse_args(["--preset", "paper"])
  args.net, args.rgb_net, args.multi_scales, args.max_retrievals = "two.msgpack", "rgb.msgpack", "0.15:129", None
  rows = dict(ablation.row_configs(args))
  assert [rows[r].net for r in rows] == ["rgb.msgpack", "rgb.msgpack", "two.msgpack", "two.msgpack", "two.msgpack"]
  assert rows["baseline"].streams is None  # the RGB net's own (single) stream
  for c in rows.values():  # the other test-time settings fixed across rows
    assert (c.flip, c.solver.recover_passes, c.solver.retrieval_rule, c.propagation.lost_ratio) == (
        False, 1, "paper", 0.0)
  args.rgb_net = None
  rows = dict(ablation.row_configs(args))
  assert rows["baseline"].net == "two.msgpack" and rows["baseline"].streams == ("rgb",)


def test_switches_join_a_parser_that_already_has_retrieval_rule():
  parser = argparse.ArgumentParser()
  parser.add_argument("--retrieval-rule", choices=["original", "paper"])  # as segment may define it itself
  cli.add_test_time_switches(parser)
  config = segment_config.get_config()
  cli.apply_test_time_switches(config, parser.parse_args(["--retrieval-rule", "paper", "--no-flip"]))
  assert config.solver.retrieval_rule == "paper" and config.flip is False
