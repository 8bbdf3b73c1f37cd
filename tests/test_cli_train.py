"""`vsreid train --net propagation|detector|reid` (issue 14, item 7): the three trainers from the
installed command, on a generated data folder with the nets shrunk by --set, and the default
--data-dir beside the repository checkout wherever the command runs."""
import os
import pathlib
import subprocess
import sys

import vsreid_jax
from vsreid_jax import cli
from vsreid_jax.data import splits, synthetic
from vsreid_jax.models import weights

TINY_DETECTOR = ["input.height=64", "input.width=96", "model.backbone.width=8", "model.fpn_channels=16",
                 "model.representation_size=32", "rpn.pre_nms_top_n_train=40", "rpn.pre_nms_top_n_test=40",
                 "rpn.post_nms_top_n_train=30", "rpn.post_nms_top_n_test=30", "rpn.batch_size_per_image=32",
                 "roi.batch_size_per_image=16", "roi.detections_per_img=8", "data.batch_size=2", "data.max_boxes=4",
                 "data.prefetch=1", "optimizer.warmup_steps=0", "train.steps=2", "train.log_every=1",
                 "train.checkpoint_every=2", "train.max_seconds=0.0", "init="]
TINY_REID = ["crop_size=32", "model.backbone.stage_sizes=(1,1,1,1)", "model.backbone.width=8", "model.embed_dim=16",
             "data.frame_height=64", "data.identities_per_batch=4", "data.crops_per_identity=2",
             "data.instance_pairs_per_batch=2", "data.background_per_batch=2", "data.partial_per_batch=2",
             "optimizer.warmup_steps=0", "train.steps=2", "train.log_every=1", "train.checkpoint_every=2",
             "train.plot_every=100", "train.max_seconds=0.0"]


def _data_dir(tmp_path):
  """Both DATA_ROOTS, generated: two sequences of two moving objects each in set `train`."""
  data = tmp_path / "data"
  for k, (name, resolution) in enumerate(splits.DATA_ROOTS):
    seqs = {f"seq{k}{i}": synthetic.moving_shapes(n_frames=4, n_objects=2, seed=10 * k + i) for i in range(2)}
    synthetic.write_davis_root(str(data / name), seqs, resolution=resolution, subset="train")
  return str(data)


def _sets(fields):
  return [a for f in fields for a in ("--set", f)]


def test_train_reid_from_the_command_and_export(tmp_path, capsys):
  data = _data_dir(tmp_path)
  workdir, export = tmp_path / "reid", tmp_path / "reid.msgpack"
  assert cli.main(["train", "--net", "reid", "--workdir", str(workdir), "--data-dir", data, "--export", str(export),
                   "--no-progress"] + _sets(TINY_REID)) == 0, capsys.readouterr().err
  assert f"exported step 2 to {export}" in capsys.readouterr().out
  name, meta, variables = weights.load_weights(str(export))
  assert name == "reid_lite_cpu" and meta["step"] == 2 and variables


def test_experiment_scripts_are_thin_wrappers_of_the_command(tmp_path):
  # The detector's trainer is tests/test_detection_train.py's (its train step takes minutes to
  # compile here); this checks that the scripts reach `vsreid train --net ...` without sys.path edits.
  repo = pathlib.Path(vsreid_jax.__file__).resolve().parents[1]
  for script, net in (("train_detector.py", "detector"), ("train_reid.py", "ReID"),
                      ("train_propagation.py", "propagation")):
    text = (repo / "experiments" / script).read_text()
    assert "sys.path" not in text
    out = subprocess.run([sys.executable, str(repo / "experiments" / script), "--config", "nope", "--workdir",
                          str(tmp_path / "w"), "--data-dir", str(tmp_path)], capture_output=True, text=True,
                         check=False, env={**os.environ, "PYTHONPATH": str(repo)})
    assert out.returncode == 2 and out.stderr.startswith(f"vsreid: error: --config nope: not a {net} config")


def test_unknown_config_of_a_net_is_one_line(tmp_path, capsys):
  data = _data_dir(tmp_path)
  for net, bad in (("detector", "reid_lite_cpu"), ("reid", "lite_cpu"), ("propagation", "r50_fpn")):
    assert cli.main(["train", "--net", net, "--config", bad, "--workdir", str(tmp_path / "w"), "--data-dir",
                     data]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"vsreid: error: --config {bad}: not a") and "\n" not in err


def test_default_data_dir_is_beside_the_checkout_wherever_the_command_runs(tmp_path, monkeypatch, capsys):
  repo = pathlib.Path(vsreid_jax.__file__).resolve().parents[1]
  assert splits.shared_data_dir() == repo.parent / "shared" / "data"
  assert cli.build_parser().parse_args(["train", "--workdir", "w"]).data_dir is None
  missing = tmp_path / "no-data-here"
  monkeypatch.setattr(splits, "shared_data_dir", lambda: missing)
  monkeypatch.chdir(tmp_path)
  assert cli.main(["train", "--net", "reid", "--workdir", str(tmp_path / "w")]) == 2
  assert f"vsreid: error: {missing}: data folder not found" in capsys.readouterr().err
