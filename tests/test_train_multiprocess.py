"""Multi-process training on this machine: 2 local processes (127.0.0.1, gloo CPU collectives), each
with 2 simulated devices, against 1 process with 4 devices, on the same global batch.

The worker (tests/multiprocess_train_worker.py) trains a tiny N_mp stand-in with BatchNorm and
dropout. Across processes the gradient and BatchNorm all-reduces sum in another order than inside
one process, so the figures agree to float rounding (not bit for bit); a wrong data share, a
per-process BatchNorm or a resume from the wrong position would be off by orders of magnitude more.
"""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "multiprocess_train_worker.py")
TIMEOUT = 240  # seconds per run, all processes together


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _launch(tmp_path, name, num_processes, devices_each, *args):
  """Runs the worker as `num_processes` local processes of one job; returns their return codes."""
  repo = os.path.dirname(os.path.dirname(WORKER))
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices_each}",
             PYTHONPATH=os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])))
  job = []
  if num_processes > 1:
    job = ["--coordinator", f"127.0.0.1:{_free_port()}", "--num-processes", str(num_processes)]
  procs = []
  try:
    for i in range(num_processes):
      log = open(tmp_path / f"{name}-{i}.log", "w")
      procs.append(subprocess.Popen(
          [sys.executable, WORKER, "--out", str(tmp_path / name), *job, *(["--process-id", str(i)] if job else []),
           *args], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path))
      log.close()
    return [p.wait(timeout=TIMEOUT) for p in procs]
  finally:
    for p in procs:  # a hung or failed peer: nothing outlives the test
      if p.poll() is None:
        p.kill()
        p.wait()


def _leaves(path):
  with np.load(path) as f:
    return [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]


def _assert_close(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def _logs(tmp_path, name, n):
  return "\n".join((tmp_path / f"{name}-{i}.log").read_text()[-2000:] for i in range(n))


def test_two_processes_train_as_one_and_a_killed_run_resumes_exactly(tmp_path):
  # The reference: 1 process x 4 devices, 6 steps uninterrupted.
  assert _launch(tmp_path, "one", 1, 4, "--workdir", "one", "--dump-at", "1") == [0], _logs(tmp_path, "one", 1)
  # 2 processes x 2 devices, SIGKILLed (both) right after step 5; checkpoints every 2 steps.
  codes = _launch(tmp_path, "two", 2, 2, "--workdir", "two", "--dump-at", "1", "--kill-at", "5")
  # Each kills itself after step 5; one that the coordination service sees lose its peer first aborts.
  assert -9 in codes and set(codes) <= {-9, -6}, _logs(tmp_path, "two", 2)
  # One step on the same global batch: the same state (params, BatchNorm statistics, optimiser).
  _assert_close(_leaves(tmp_path / "two-step1.npz"), _leaves(tmp_path / "one-step1.npz"))
  assert not (tmp_path / "two-rows.json").exists()  # the killed run never finished

  # The same command with --resume, on the same 2 processes, continues to step 6.
  codes = _launch(tmp_path, "resumed", 2, 2, "--workdir", "two", "--resume")
  assert codes == [0, 0], _logs(tmp_path, "resumed", 2)
  _assert_close(_leaves(tmp_path / "resumed-step6.npz"), _leaves(tmp_path / "one-step6.npz"))
  one = json.loads((tmp_path / "one-rows.json").read_text())
  resumed = json.loads((tmp_path / "resumed-rows.json").read_text())
  assert [r["step"] for r in resumed] == [1, 2, 3, 4, 5, 6]  # the killed tail rewritten, nothing twice
  for a, b in zip(one, resumed):
    for key in ("loss", "bce", "iou", "grad_norm", "lr"):
      assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), (a, b)
  # Process 0 alone wrote the logs: one metrics.csv, one row per step.
  lines = (tmp_path / "two" / "metrics.csv").read_text().splitlines()
  assert [line.split(",")[0] for line in lines[1:]] == ["1", "2", "3", "4", "5", "6"]
  assert (tmp_path / "two" / "metrics.png").is_file() and (tmp_path / "two" / "config.json").is_file()


def test_reid_trainer_steps_the_same_on_two_processes_as_on_one(tmp_path):
  """The SupCon loss and its gradient over the global batch of 16, split 2 x 2 or 1 x 4."""
  assert _launch(tmp_path, "one", 1, 4, "--trainer", "reid", "--workdir", "one", "--stop-at", "1") == [0], (
      _logs(tmp_path, "one", 1))
  codes = _launch(tmp_path, "two", 2, 2, "--trainer", "reid", "--workdir", "two", "--stop-at", "1")
  assert codes == [0, 0], _logs(tmp_path, "two", 2)
  one = json.loads((tmp_path / "one-rows.json").read_text())
  two = json.loads((tmp_path / "two-rows.json").read_text())
  assert [r["step"] for r in two] == [1]
  for key in ("loss", "grad_norm", "rank1", "pos_sim", "neg_sim"):
    assert two[0][key] == pytest.approx(one[0][key], rel=1e-5, abs=1e-6), key
  _assert_close(_leaves(tmp_path / "two-step1.npz"), _leaves(tmp_path / "one-step1.npz"))


def test_job_flags_are_checked_before_joining(monkeypatch):
  from vsreid_jax import distributed  # pylint: disable=g-import-not-at-top
  from vsreid_jax.errors import InputError  # pylint: disable=g-import-not-at-top
  for args, expected in ((("h:1", None, 0), "go together"), (("h", 2, 0), "expected HOST:PORT"),
                         (("h:1", 2, 2), "need 0 <= I < N"), (("h:1", 0, 0), "need 0 <= I < N")):
    with pytest.raises(InputError, match=expected):
      distributed.initialize(*args)
  # One process: nothing to join (a batch script's shell has SLURM_NTASKS of the whole allocation).
  monkeypatch.setenv("SLURM_NTASKS", "4")
  monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "1")
  assert distributed.initialize() is False and distributed.initialize("h:1", 1, 0) is False
  assert distributed.process() == (0, 1) and distributed.is_main()


@pytest.mark.skipif(not os.environ.get("VSREID_LONG_TESTS"),
                    reason="compiling the detector in 3 processes takes ~5 min on 2 shared CPU cores; "
                           "VSREID_LONG_TESTS=1 runs it")
def test_detector_trainer_steps_the_same_on_two_processes_as_on_one(shapes_root, tmp_path):
  """RPN and ROI-head losses and their gradients over the global batch of 4 images, 2 x 2 or 1 x 4."""
  args = ("--trainer", "detector", "--davis", shapes_root, "--stop-at", "1")
  assert _launch(tmp_path, "one", 1, 4, "--workdir", "one", *args) == [0], _logs(tmp_path, "one", 1)
  assert _launch(tmp_path, "two", 2, 2, "--workdir", "two", *args) == [0, 0], _logs(tmp_path, "two", 2)
  one = json.loads((tmp_path / "one-rows.json").read_text())
  two = json.loads((tmp_path / "two-rows.json").read_text())
  assert [r["step"] for r in two] == [1]
  for key in ("loss", "rpn_cls", "rpn_box", "roi_cls", "roi_box", "grad_norm"):
    assert two[0][key] == pytest.approx(one[0][key], rel=1e-5, abs=1e-6), key
  _assert_close(_leaves(tmp_path / "two-step1.npz"), _leaves(tmp_path / "one-step1.npz"))
