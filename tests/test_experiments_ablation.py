"""experiments/ablation.py: cumulative rows, evaluation, and the written table/plot."""
import csv
import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments import ablation  # pylint: disable=wrong-import-position
from vsreid_jax.geometry import mask_box_np# pylint: disable=wrong-import-position


def test_rows_accumulate_the_papers_changes():
  args = ablation.argparse.Namespace(net="identity", multi_scales="0.15:65,0.15:97", max_retrievals=3)
  rows = dict(ablation.row_configs(args))
  assert list(rows) == ["baseline", "+bbox crop", "+flow stream", "+re-id", "+multi-scale"]
  assert rows["baseline"].streams == ("rgb",) and not rows["baseline"].propagation.use_box
  assert rows["baseline"].method == "propagate"
  assert rows["+bbox crop"].streams == ("rgb",) and rows["+bbox crop"].propagation.use_box
  assert rows["+flow stream"].streams is None and rows["+flow stream"].method == "propagate"
  assert rows["+re-id"].method == "vsreid" and rows["+re-id"].propagation.scales is None
  assert rows["+multi-scale"].method == "vsreid" and rows["+multi-scale"].propagation.scales == ((0.15, 65), (0.15, 97))
  assert all(c.solver.max_retrievals == 3 for c in rows.values())


def test_propagation_rows_run_and_write_the_table(shapes_root, tmp_path):
  out = tmp_path / "abl"
  rc = ablation.main(["--davis", f"{shapes_root}:480p", "--set", "val", "--out", str(out), "--net", "identity",
                      "--rows", "baseline", "+bbox crop", "--no-progress"])
  assert rc == 0
  with open(out / "ablation.csv") as f:
    rows = list(csv.DictReader(f))
  assert [r["row"] for r in rows] == ["baseline", "+bbox crop"]
  for r in rows:
    assert 0.3 < float(r["J&F"]) <= 1.0 and int(r["N_mp calls"]) > 0
  assert (out / "ablation.png").stat().st_size > 1000
  assert os.path.isfile(out / "row0" / os.path.basename(shapes_root) / "two-objects" / "00009.png")


def test_lever_rows_build_on_reid_one_change_at_a_time():
  args = ablation.argparse.Namespace(net="identity", multi_scales="0.15:65", max_retrievals=None, levers=True,
                                     solver=["rho_reid=0.8"])
  rows = dict(ablation.row_configs(args))
  assert list(rows)[5:] == ["+paper rule", "+strict drift", "+recovery guard", "+motion rank", "+occlusion merge"]
  assert rows["+re-id"].solver.retrieval_rule == "original"
  assert rows["+paper rule"].solver.retrieval_rule == "paper" and not rows["+paper rule"].solver.recovery_guard
  assert rows["+paper rule"].solver.drift_iou is None and rows["+re-id"].solver.drift_iou is None
  assert rows["+strict drift"].solver.drift_iou == 0.1 and rows["+strict drift"].solver.drift_exclusive
  assert rows["+strict drift"].solver.retrieval_rule == "paper" and not rows["+strict drift"].solver.recovery_guard
  assert rows["+recovery guard"].solver.drift_iou == 0.1  # cumulative
  assert rows["+recovery guard"].solver.recovery_guard and rows["+recovery guard"].solver.motion_weight == 0
  assert rows["+motion rank"].solver.motion_weight > 0 and rows["+motion rank"].solver.merge == "argmax"
  assert rows["+occlusion merge"].solver.merge == "occlusion" and rows["+occlusion merge"].solver.recovery_guard
  for name in ("+paper rule", "+occlusion merge"):  # on +re-id, not on +multi-scale
    assert rows[name].method == "vsreid" and rows[name].propagation.scales is None
  assert all(c.solver.rho_reid == 0.8 for c in rows.values())
  with pytest.raises(ablation.InputError, match="--solver"):
    ablation.row_configs(ablation.argparse.Namespace(net="identity", multi_scales="0.15:65", max_retrievals=None,
                                                     solver=["no_such_key=1"]))


def test_split_refuses_a_benchmark_built_from_another_split(tmp_path, capsys):
  from vsreid_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  root = synthetic.write_davis_root(str(tmp_path / "occ"), {"occ00-x": synthetic.moving_shapes(n_frames=4)},
                                    "240p", "occlusion")
  with open(os.path.join(root, "info.json"), "w") as f:
    json.dump({"occ00-x": {"split": "val"}}, f)
  rc = ablation.main(["--davis", f"{root}:240p", "--set", "occlusion", "--split", "test", "--out",
                      str(tmp_path / "abl"), "--no-progress"])
  assert rc == 2 and "built from split val, not test" in capsys.readouterr().err
  args = ablation.argparse.Namespace(davis=[f"{root}:240p"], set="occlusion", held_out=False, split="val",
                                     sequences=None)
  assert [seqs for _, seqs in ablation.jobs_of(args)] == [["occ00-x"]]


def _two_objects(shapes_root):
  """(dataset, Segmenter with the identity net, its state of "two-objects" with the first mask)."""
  from vsreid_jax.api import Segmenter  # pylint: disable=g-import-not-at-top
  from vsreid_jax.configs import segment as segment_config  # pylint: disable=g-import-not-at-top
  config = segment_config.get_config()
  config.net = "identity"
  ds = ablation.DavisDataset(shapes_root, "480p")
  seg = Segmenter(config)
  state = seg.init_state(ds.frames("two-objects"), name="two-objects")
  seg.add_mask(state, ds.first_mask("two-objects"))
  return ds, seg, state


def test_oracle_candidates_of_a_sequence_are_its_gt_boxes(shapes_root):
  ds, _, state = _two_objects(shapes_root)
  cands, tmpl = ablation.oracle_for(ds, "two-objects", state)
  assert tmpl.shape == (2, 3) and cands.boxes.shape[:2] == (10, 2)
  ids = ds.annotation("two-objects", state.frames.names[5])
  for j, k in enumerate(state.object_ids):
    row = np.flatnonzero(cands.embeddings[5][:, j] == 1)
    assert row.size == 1
    np.testing.assert_array_equal(cands.boxes[5][row[0]], mask_box_np(ids == k))


def test_override_sets_any_config_key_in_every_row():
  args = ablation.argparse.Namespace(net="identity", multi_scales="0.15:65", max_retrievals=None,
                                     override=["propagation.min_crop_scale=0.5", "solver.rho_reid=0.7"])
  rows = dict(ablation.row_configs(args))
  assert all(c.propagation.min_crop_scale == 0.5 and c.solver.rho_reid == 0.7 for c in rows.values())
  assert not rows["baseline"].propagation.use_box  # the rows' own changes stay
  with pytest.raises(ablation.InputError, match="no_such_key"):
    ablation.row_configs(ablation.argparse.Namespace(net="identity", multi_scales="0.15:65", max_retrievals=None,
                                                     override=["propagation.no_such_key=1"]))


def test_oracle_halves_of_a_sequence(shapes_root):
  # "ids": the detector's own boxes, one-hot identities; "boxes": the GT boxes, the ReID's embeddings
  # and templates (the shipped detector and ReID nets).
  ds, seg, state = _two_objects(shapes_root)
  full, _ = ablation.oracle_for(ds, "two-objects", state)
  ids, tmpl = ablation.oracle_for(ds, "two-objects", state, "ids", seg)
  assert tmpl.shape == (2, 3) and ids.embeddings.shape[0] == 10 and ids.embeddings.shape[2] == 3
  assert set(np.unique(ids.embeddings.sum(-1)[ids.valid])) == {1.0}  # every detection gets one identity
  boxes, tmpl = ablation.oracle_for(ds, "two-objects", state, "boxes", seg)
  np.testing.assert_array_equal(boxes.boxes, full.boxes)
  assert tmpl.shape[0] == 2 and boxes.embeddings.shape[2] == tmpl.shape[1] > 3
  norms = np.linalg.norm(boxes.embeddings[boxes.valid], axis=-1)
  np.testing.assert_allclose(norms, 1.0, atol=1e-3)  # the ReID's L2-normalised embeddings
