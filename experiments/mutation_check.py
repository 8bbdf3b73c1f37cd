"""Mutation check: plants known bugs one at a time in a copy of the checkout and expects the
targeted tests to fail.

Each mutation is a text substitution in one file of a temporary copy of the repository (package
and tests); the targeted tests then run against that copy, in a fresh process, with the copy
first on the path (pytest's `pythonpath` option, not the environment: a subprocess test that does
not put the checkout on its own path then runs the installed package and misses the bug). A row
reads `caught` when the tests fail, `MISSED` when they pass, and `n/a` when the planted line is
no longer in the source (rewrite the mutation after a refactor). A control run of every targeted
test on the unmutated copy must pass first, so that a failure means the bug was noticed.

  python experiments/mutation_check.py              # all rows (14 min on 2 shared, loaded cores)
  python experiments/mutation_check.py --only lost  # rows whose name contains "lost"
"""
import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class Mutation:
  name: str
  path: str  # relative to the repository root
  old: str  # must occur exactly once
  new: str
  tests: Tuple[str, ...]  # pytest node ids or files, relative to the repository root


MUTATIONS = (
    Mutation("lost rule ignores lost_ratio (lost only at area 0)", "vsreid_jax/propagation/algorithm1.py",
             "still = alive & (area >= lost_ratio * first_area) & (area > 0)", "still = alive & (area > 0)",
             ("tests/test_propagation_algorithm1.py::test_object_is_lost_below_lost_ratio_of_its_first_area_even_when_not_empty",
              "tests/test_propagation_algorithm1.py::test_finish_stage_lost_rule_at_the_boundary")),
    Mutation("lost rule inverted (dedicated lost-object test)", "vsreid_jax/propagation/algorithm1.py",
             "still = alive & (area >= lost_ratio * first_area) & (area > 0)",
             "still = alive & (area < lost_ratio * first_area) & (area > 0)",
             ("tests/test_propagation_algorithm1.py::test_lost_object_stops_and_stays_empty",)),
    Mutation("Algorithm 2 occlusion filter reads rho_reid", "vsreid_jax/reid/algorithm2.py",
             "free = valid & (overlap <= rho_occ)", "free = valid & (overlap <= rho_reid)",
             ("tests/test_reid_algorithm2.py",)),
    Mutation("solver: no backward re-propagation", "vsreid_jax/solver/algorithm3.py",
             "for step in (1, -1):", "for step in (1,):",
             ("tests/test_solver_algorithm3.py::test_recovery_propagates_backward_to_the_frames_before_the_retrieved_one",)),
    Mutation("F tolerance 0.01 of the diagonal (480p radius 10)", "vsreid_jax/eval/metrics.py",
             "bound_th: float = 0.008) -> np.ndarray:", "bound_th: float = 0.01) -> np.ndarray:",
             ("tests/test_eval_metrics.py",)),
    Mutation("resumed run saves its data position off by its start step", "vsreid_jax/train/fit.py",
             "position=position + (step - start) * trainer.batch_size", "position=position + step * trainer.batch_size",
             ("tests/test_train_loop.py::test_resume_continues_exactly",)),
    Mutation("N_mp ignores bgr", "vsreid_jax/models/propagation.py",
             "      if self.bgr:\n", "      if False:  # planted\n",
             ("tests/test_models_propagation.py::test_bgr_switch_reverses_the_channels_the_rgb_stream_sees",)),
    Mutation("N_mp ignores flow_scale", "vsreid_jax/models/propagation.py",
             "flow.astype(jnp.float32) * self.flow_scale", "flow.astype(jnp.float32)",
             ("tests/test_models_propagation.py::test_flow_scale_multiplies_the_flow_the_flow_stream_sees",)),
    Mutation("train step drops the updated BN statistics", "vsreid_jax/train/step.py",
             "state.apply_gradients(grads=grads, batch_stats=batch_stats)", "state.apply_gradients(grads=grads)",
             ("tests/test_train_step.py::test_single_device_step_learns",)),
    Mutation("CLI writes the given mask for every frame", "vsreid_jax/api.py",
             "writer.write(frames.names[i], ids,", "writer.write(frames.names[i], job.first_mask(),",
             ("tests/test_cli.py::test_segment_frame_folder_with_mask",)),
    Mutation("detector rejects bad input with a ValueError (not InputError)", "vsreid_jax/detection/detector.py",
             'raise InputError(f"images must be [B, H, W, 3] RGB', 'raise ValueError(f"images must be [B, H, W, 3] RGB',
             ("tests/test_detection_detector.py::test_rejects_bad_input",)),
    Mutation("console script's error text changed (seen only by a subprocess)", "vsreid_jax/data/davis.py",
             'DAVIS root not found")', 'DAVIS root is missing")',
             ("tests/test_cli.py::test_console_script_reports_errors_without_traceback",)),
    Mutation("train/fit: a checkpoint saved without the NaN guard", "vsreid_jax/train/fit.py",
             "      guard()\n      ckpt.save(", "      ckpt.save(",
             ("tests/test_train_fit.py::test_nan_guard_stops_and_keeps_the_last_good_checkpoint",)),
    Mutation("train/fit: nothing saved on Ctrl-C", "vsreid_jax/train/fit.py",
             "if step > start and ckpt.latest_step() != step:", "if False:",
             ("tests/test_train_fit.py::test_sigint_saves_a_checkpoint_of_the_last_whole_step",)),
    Mutation("train/fit: max_seconds ignored", "vsreid_jax/train/fit.py",
             'if (t.get("max_seconds", 0) and', "if (False and",
             ("tests/test_train_fit.py::test_max_seconds_stops_with_a_checkpoint_and_resume_finishes_the_run",)),
    Mutation("train/fit: resumed position off by its start step (tiny trainer)", "vsreid_jax/train/fit.py",
             "position=position + (step - start) * trainer.batch_size", "position=position + step * trainer.batch_size",
             ("tests/test_train_fit.py::test_resume_across_two_restarts_is_exact",)),
)


def copy_checkout(dst):
  """The package, tests and packaging files of the checkout; ../shared linked as in the checkout."""
  repo = os.path.join(dst, "repo")
  ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
  for d in ("vsreid_jax", "tests"):
    shutil.copytree(os.path.join(REPO, d), os.path.join(repo, d), ignore=ignore)
  for f in ("setup.cfg", "pyproject.toml"):
    shutil.copy(os.path.join(REPO, f), repo)
  shared = os.path.join(os.path.dirname(REPO), "shared")
  if os.path.isdir(shared):
    os.symlink(shared, os.path.join(dst, "shared"))  # tests find ../shared/data beside the checkout
  return repo


def run_tests(repo, tests, log_path):
  """pytest on `tests` of the copy, from a folder where nothing is importable; True if they pass."""
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "--rootdir", repo, "-o",
         f"pythonpath={repo}"] + [os.path.join(repo, t) for t in tests]
  with open(log_path, "w") as log:
    proc = subprocess.run(cmd, cwd=os.path.dirname(repo), env=env, stdout=log, stderr=subprocess.STDOUT)
  return proc.returncode == 0


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--only", default="", help="run the rows whose name contains this text")
  parser.add_argument("--no-control", action="store_true", help="skip the unmutated control run")
  parser.add_argument("--logs", default=None, help="keep the pytest logs in this folder")
  args = parser.parse_args()
  rows = [m for m in MUTATIONS if args.only in m.name]
  logs = args.logs or tempfile.mkdtemp(prefix="mutation-logs-")
  os.makedirs(logs, exist_ok=True)
  with tempfile.TemporaryDirectory(prefix="mutation-") as tmp:
    repo = copy_checkout(tmp)
    if not args.no_control:
      tests = sorted({t for m in rows for t in m.tests})
      start = time.perf_counter()
      if not run_tests(repo, tests, os.path.join(logs, "control.log")):
        sys.exit(f"control run failed (unmutated copy): see {logs}/control.log")
      print(f"control: {len(tests)} targets pass unmutated ({time.perf_counter() - start:.0f} s)")
    results = []
    for i, m in enumerate(rows):
      path = os.path.join(repo, m.path)
      with open(path) as f:
        source = f.read()
      if source.count(m.old) != 1:
        results.append((m, "n/a", 0.0))
        continue
      with open(path, "w") as f:
        f.write(source.replace(m.old, m.new))
      start = time.perf_counter()
      try:
        passed = run_tests(repo, m.tests, os.path.join(logs, f"mutation-{i:02d}.log"))
      finally:
        with open(path, "w") as f:
          f.write(source)
      results.append((m, "MISSED" if passed else "caught", time.perf_counter() - start))
      print(f"{results[-1][1]:7s} {m.name}", flush=True)
  width = max(len(m.name) for m, _, _ in results)
  print(f"\n| {'planted bug':{width}s} | caught | seconds | file |")
  print(f"|{'-' * (width + 2)}|--------|---------|------|")
  for m, verdict, seconds in results:
    print(f"| {m.name:{width}s} | {verdict:6s} | {seconds:7.0f} | {m.path} |")
  print(f"\nlogs: {logs}")
  if any(v != "caught" for _, v, _ in results):
    sys.exit(1)


if __name__ == "__main__":
  main()
