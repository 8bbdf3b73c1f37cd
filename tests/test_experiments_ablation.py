"""experiments/ablation.py: cumulative rows, evaluation, and the written table/plot."""
import csv
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments import ablation  # pylint: disable=wrong-import-position


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
