"""End-to-end DAVIS 2017 evaluation on generated DAVIS roots and, if present, on real DAVIS data."""
import csv
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from vsreid_jax.data.davis import DavisDataset
from vsreid_jax.data.palette import write_mask
from vsreid_jax.errors import InputError
from vsreid_jax.eval import evaluate, evaluate_sequences, format_tables, write_csv

HEIGHT, WIDTH, FRAMES = 24, 32, 6
REAL_DAVIS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "davis2016-train"


def _moving_objects(num_objects: int) -> np.ndarray:
  """[FRAMES, H, W] id masks: object k is a 4x5 box that moves one pixel right per frame."""
  masks = np.zeros((FRAMES, HEIGHT, WIDTH), np.uint8)
  for t in range(FRAMES):
    for k in range(1, num_objects + 1):
      top = 2 + 7 * (k - 1)
      masks[t, top:top + 4, 3 + t + 4 * (k - 1):8 + t + 4 * (k - 1)] = k
  return masks


GROUND_TRUTH = {"seqA": _moving_objects(2), "seqB": _moving_objects(3)}


def _write_frames(folder: Path, masks: np.ndarray) -> None:
  folder.mkdir(parents=True, exist_ok=True)
  for t, mask in enumerate(masks):
    write_mask(folder / f"{t:05d}.png", mask)


def _make_root(tmp_path: Path, ground_truth: dict = GROUND_TRUTH) -> Path:
  root = tmp_path / "davis"
  for seq, masks in ground_truth.items():
    image_dir = root / "JPEGImages" / "480p" / seq
    image_dir.mkdir(parents=True)
    for t in range(len(masks)):
      cv2.imwrite(str(image_dir / f"{t:05d}.jpg"), np.zeros((HEIGHT, WIDTH, 3), np.uint8))
    _write_frames(root / "Annotations" / "480p" / seq, masks)
  (root / "ImageSets" / "2017").mkdir(parents=True)
  (root / "ImageSets" / "2017" / "val.txt").write_text("".join(f"{seq}\n" for seq in ground_truth))
  return root


def _make_results(tmp_path: Path, results: dict) -> Path:
  results_dir = tmp_path / "results"
  for seq, masks in results.items():
    _write_frames(results_dir / seq, masks)
  return results_dir


def _perfect_global() -> dict:
  return {"J&F-Mean": 1.0, "J-Mean": 1.0, "J-Recall": 1.0, "J-Decay": 0.0,
          "F-Mean": 1.0, "F-Recall": 1.0, "F-Decay": 0.0}


def test_ground_truth_as_results_scores_one(tmp_path):
  root = _make_root(tmp_path)
  results_dir = _make_results(tmp_path, GROUND_TRUTH)
  result = evaluate(str(root), "val", str(results_dir), progress=False)
  assert result.global_ == pytest.approx(_perfect_global())
  assert [name for name, _, _ in result.per_object] == ["seqA_1", "seqA_2", "seqB_1", "seqB_2", "seqB_3"]
  assert all(len(scores["J"]) == FRAMES - 2 and len(scores["F"]) == FRAMES - 2
             for scores in result.per_frame.values())


def test_missing_object_scores_zero(tmp_path):
  root = _make_root(tmp_path)
  results = {seq: masks.copy() for seq, masks in GROUND_TRUTH.items()}
  results["seqB"][results["seqB"] == 3] = 0  # The highest id: the official tool would abort.
  result = evaluate(str(root), "val", str(_make_results(tmp_path, results)), progress=False)
  per_object = {name: (j, f) for name, j, f in result.per_object}
  assert per_object["seqB_3"] == (0.0, 0.0)
  assert per_object["seqB_2"] == (1.0, 1.0)
  # 4 of 5 objects perfect, one at 0 in every frame (decay 0 - 0).
  assert result.global_ == pytest.approx({"J&F-Mean": 0.8, "J-Mean": 0.8, "J-Recall": 0.8, "J-Decay": 0.0,
                                          "F-Mean": 0.8, "F-Recall": 0.8, "F-Decay": 0.0})


def test_first_and_last_frames_are_not_scored(tmp_path):
  root = _make_root(tmp_path)
  rng = np.random.default_rng(0)
  results = {}
  for seq, masks in GROUND_TRUTH.items():
    garbage = masks.copy()
    num_objects = int(masks[0].max())
    garbage[0] = rng.integers(0, num_objects + 1, (HEIGHT, WIDTH))
    garbage[-1] = 0
    results[seq] = garbage
  result = evaluate(str(root), "val", str(_make_results(tmp_path, results)), progress=False)
  assert result.global_ == pytest.approx(_perfect_global())


def test_ids_in_unscored_frames_are_ignored_like_the_official_tool(tmp_path):
  root = _make_root(tmp_path)
  results = {seq: masks.copy() for seq, masks in GROUND_TRUTH.items()}
  results["seqA"][0, 0, 0] = 9
  result = evaluate(str(root), "val", str(_make_results(tmp_path, results)), progress=False)
  assert result.global_["J&F-Mean"] == pytest.approx(1.0)


def test_result_id_above_ground_truth_count_is_an_input_error(tmp_path):
  root = _make_root(tmp_path)
  results = {seq: masks.copy() for seq, masks in GROUND_TRUTH.items()}
  results["seqB"][2, 0, 0] = 4
  results_dir = _make_results(tmp_path, results)
  with pytest.raises(InputError) as error:
    evaluate(str(root), "val", str(results_dir), progress=False)
  message = str(error.value)
  assert "result has object id 4 but the ground truth of frame 0 has only 3 objects" in message
  assert str(results_dir / "seqB" / "00002.png") in message


def test_missing_result_frame_is_an_input_error_naming_it(tmp_path):
  root = _make_root(tmp_path)
  results_dir = _make_results(tmp_path, GROUND_TRUTH)
  missing = results_dir / "seqB" / "00000.png"  # The unscored first frame is still required.
  missing.unlink()
  with pytest.raises(InputError, match="one PNG per ground-truth frame") as error:
    evaluate(str(root), "val", str(results_dir), progress=False)
  assert str(missing) in str(error.value)


def test_result_of_another_size_is_an_input_error_naming_it(tmp_path):
  root = _make_root(tmp_path)
  results_dir = _make_results(tmp_path, GROUND_TRUTH)
  wrong = results_dir / "seqA" / "00003.png"
  write_mask(wrong, np.zeros((HEIGHT // 2, WIDTH // 2), np.uint8))
  with pytest.raises(InputError, match="annotation resolution") as error:
    evaluate(str(root), "val", str(results_dir), progress=False)
  assert str(wrong) in str(error.value)


def test_void_counts_as_background_unless_excluded(tmp_path):
  ground_truth = np.zeros((FRAMES, HEIGHT, WIDTH), np.uint8)
  ground_truth[:, 4:8, 4:8] = 1  # 16 object pixels.
  ground_truth[:, 4:8, 8] = 255  # 4 void pixels next to the object.
  root = _make_root(tmp_path, {"seqV": ground_truth})
  result_masks = np.where(ground_truth > 0, 1, 0).astype(np.uint8)  # Object and void labelled 1.
  results_dir = _make_results(tmp_path, {"seqV": result_masks})
  dataset = DavisDataset(root)
  official = evaluate_sequences(dataset, ["seqV"], str(results_dir), progress=False)
  # As the official tool: void is zeroed in the ground truth and scored as background.
  np.testing.assert_allclose(official.per_frame["seqV_1"]["J"], np.full(FRAMES - 2, 16 / 20))
  excluded = evaluate_sequences(dataset, ["seqV"], str(results_dir), progress=False, exclude_void=True)
  np.testing.assert_allclose(excluded.per_frame["seqV_1"]["J"], np.ones(FRAMES - 2))
  np.testing.assert_allclose(excluded.per_frame["seqV_1"]["F"], np.ones(FRAMES - 2))


def test_csv_files_and_tables(tmp_path):
  root = _make_root(tmp_path)
  results = {seq: masks.copy() for seq, masks in GROUND_TRUTH.items()}
  results["seqA"][results["seqA"] == 1] = 0
  results_dir = _make_results(tmp_path, results)
  result = evaluate(str(root), "val", str(results_dir), progress=False)
  global_path, sequence_path = write_csv(result, str(results_dir), "val")
  assert global_path == str(results_dir / "global_results-val.csv")
  assert sequence_path == str(results_dir / "per-sequence_results-val.csv")
  with open(global_path, newline="") as f:
    rows = list(csv.reader(f))
  assert rows == [["J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"],
                  ["0.800", "0.800", "0.800", "0.000", "0.800", "0.800", "0.000"]]
  with open(sequence_path, newline="") as f:
    rows = list(csv.reader(f))
  assert rows == [["Sequence", "J-Mean", "F-Mean"], ["seqA_1", "0.000", "0.000"], ["seqA_2", "1.000", "1.000"],
                  ["seqB_1", "1.000", "1.000"], ["seqB_2", "1.000", "1.000"], ["seqB_3", "1.000", "1.000"]]
  lines = format_tables(result, "val").splitlines()
  assert lines[0] == "--------------------------- Global results for val ---------------------------"
  assert lines[1].split() == ["J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"]
  assert lines[2].split() == ["0.800", "0.800", "0.800", "0.000", "0.800", "0.800", "0.000"]
  assert lines[4] == "---------- Per sequence results for val ----------"
  assert lines[5].split() == ["Sequence", "J-Mean", "F-Mean"]
  assert lines[6].split() == ["seqA_1", "0.000", "0.000"]
  assert [line.split()[0] for line in lines[7:10]] == ["seqA_2", "seqB_1", "seqB_2"]


@pytest.mark.skipif(not (REAL_DAVIS / "Annotations" / "480p").is_dir(),
                    reason=f"real DAVIS data not found at {REAL_DAVIS}")
def test_real_davis_ground_truth_as_results_scores_one(tmp_path):
  dataset = DavisDataset(REAL_DAVIS)
  sequences = sorted(dataset.sequences("train"), key=lambda seq: len(dataset.frames(seq)))[:2]
  results_dir = tmp_path / "results"
  results_dir.mkdir()
  for seq in sequences:
    os.symlink(os.path.join(dataset.anno_dir, seq), results_dir / seq)
  result = evaluate_sequences(dataset, sequences, str(results_dir), progress=False)
  assert result.global_ == pytest.approx(_perfect_global())
  assert len(result.per_object) >= 2
