"""Sharded inference: `vsreid segment --num-shards N --shard I` and evaluating the shards' union."""
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from vsreid_jax import cli
from vsreid_jax.data import results, shards, synthetic
from vsreid_jax.data.palette import read_mask
from vsreid_jax.errors import InputError

SEGMENT = ["--net", "identity", "--method", "propagate", "--no-progress"]


def test_shares_are_balanced_by_frames_deterministic_and_cover_the_set():
  counts = [("a", 10), ("b", 40), ("c", 30), ("d", 30), ("e", 20), ("f", 5)]
  split = shards.assign(counts, 3)
  assert split == [["b", "f"], ["c", "e"], ["a", "d"]]  # greedy longest-first: b c d e a f, ties by name
  assert [set(share) for share in shards.assign(list(reversed(counts)), 3)] == [set(share) for share in split]
  assert sorted(sum(split, [])) == sorted(n for n, _ in counts)
  loads = [sum(dict(counts)[n] for n in share) for share in split]
  assert max(loads) - min(loads) <= max(c for _, c in counts)
  assert shards.assign(counts, 1) == [[n for n, _ in counts]]
  assert shards.assign([("x", 3)], 3) == [["x"], [], []]
  # Shares keep set order, whatever order the balancing visits them in.
  assert shards.assign([("z", 1), ("y", 1), ("x", 9)], 2) == [["x"], ["z", "y"]]


def test_shard_comes_from_flags_or_from_the_multi_process_job():
  assert shards.resolve(None, None, (0, 1)) is None
  assert shards.resolve(4, 3, (0, 1)) == (3, 4)
  assert shards.resolve(None, None, (1, 2)) == (1, 2)  # launched as process 1 of a 2-process job
  assert shards.resolve(2, None, (1, 2)) == (1, 2)
  for num_shards, shard, expected in ((None, 1, "needs --num-shards"), (2, 2, "must be 0..1"), (0, None, ">= 1"),
                                      (2, None, "pass --shard I")):
    with pytest.raises(InputError, match=expected):
      shards.resolve(num_shards, shard, (0, 1))


def test_clean_stale_leaves_another_shards_temporary_folders_alone(tmp_path):
  """A shard starting in a shared folder must not delete what another live shard is writing."""
  def leave(kind, pid, seq, host):
    path = tmp_path / f".vsreid-{kind}-{pid}-{seq}-0000"
    path.mkdir()
    results._write_manifest(str(path), {"program": results.PROGRAM, "sequence": seq, "pid": pid, "host": host})
    return path
  dead = 2 ** 22 + 12345  # beyond pid_max here: no such process on this host
  live_here = leave("partial", os.getpid(), "a", socket.gethostname())
  other_host = leave("partial", dead, "b", "another-machine")
  other_host_old = leave("old", dead, "c", "another-machine")
  ours_dead = leave("partial", dead, "d", socket.gethostname())
  done = results.clean_stale(tmp_path)
  assert live_here.is_dir() and other_host.is_dir() and other_host_old.is_dir()
  assert not ours_dead.exists() and len(done) == 1


def _masks(folder):
  out = {}
  for seq in sorted(os.listdir(folder)):
    if os.path.isdir(folder / seq) and not seq.startswith("."):
      out[seq] = {f: read_mask(str(folder / seq / f)) for f in sorted(os.listdir(folder / seq)) if f.endswith(".png")}
  return out


@pytest.fixture(scope="module")
def three_clips(tmp_path_factory):
  """(DAVIS root, results of one process) for 3 sequences of 7, 5 and 4 frames."""
  tmp = tmp_path_factory.mktemp("sharding")
  root = synthetic.write_davis_root(str(tmp / "root"), {
      "long": synthetic.moving_shapes(n_frames=7, seed=0),
      "mid": synthetic.moving_shapes(n_frames=5, n_objects=1, seed=1),
      "short": synthetic.moving_shapes(n_frames=4, seed=2)})
  assert cli.main(["segment", "--davis", root, "--out", str(tmp / "single"), *SEGMENT]) == 0
  return root, tmp / "single"


def _run_shards(argvs):
  """Runs `vsreid segment` once per argv, all at once, as separate processes; returns their outputs."""
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             PYTHONPATH=os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])))
  procs = [subprocess.Popen([sys.executable, "-m", "vsreid_jax", "segment", *argv, *SEGMENT],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) for argv in argvs]
  try:
    logs = [p.communicate(timeout=240)[0] for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  assert [p.returncode for p in procs] == [0] * len(procs), logs
  assert "shard 0 of 2: 1 sequences, 7 frames: long" in logs[0]
  assert "shard 1 of 2: 2 sequences, 9 frames: mid short" in logs[1]
  return logs


def _assert_same_masks(got_dir, want_dir):
  got, want = _masks(got_dir), _masks(want_dir)
  assert sorted(got) == ["long", "mid", "short"] and got.keys() == want.keys()
  for seq in want:
    assert got[seq].keys() == want[seq].keys()
    for name in want[seq]:
      np.testing.assert_array_equal(got[seq][name], want[seq][name], err_msg=f"{seq}/{name}")


def test_two_shard_processes_give_the_masks_and_evaluation_of_one_process(three_clips, tmp_path, capsys):
  root, single = three_clips
  sharded = tmp_path / "sharded"
  _run_shards([["--davis", root, "--out", str(sharded), "--num-shards", "2", "--shard", str(i)] for i in range(2)])
  _assert_same_masks(sharded, single)
  for i in range(2):
    assert (sharded / f"timing-shard-{i}-of-2.json").is_file() and (sharded / f"timing-shard-{i}-of-2.txt").is_file()

  capsys.readouterr()
  assert cli.main(["eval", "--davis", root, "--results", str(single), "--no-progress"]) == 0
  single_out = capsys.readouterr().out
  assert cli.main(["eval", "--davis", root, "--results", str(sharded), "--no-progress"]) == 0
  sharded_out = capsys.readouterr().out
  tables = lambda out: out.split("Total time")[0]  # pylint: disable=unnecessary-lambda-assignment
  assert tables(sharded_out) == tables(single_out)
  for csv in ("global_results-val.csv", "per-sequence_results-val.csv"):
    assert (sharded / csv).read_text() == (single / csv).read_text()
  assert "timing merged over 2 of 2 shards (3 sequences, 16 frames" in sharded_out
  assert "timing merged" not in single_out

  # A shard not finished: one line naming what is missing, exit 2; --allow-missing scores the rest.
  os.rename(sharded / "mid", tmp_path / "mid-aside")  # as if shard 1 were still running
  (sharded / "timing-shard-1-of-2.json").unlink()
  assert cli.main(["eval", "--davis", root, "--results", str(sharded), "--no-progress"]) == 2
  err = capsys.readouterr().err.strip()
  assert "\n" not in err and "no results for 1 of 3 sequences of set 'val': mid;" in err, err
  assert cli.main(["eval", "--davis", root, "--results", str(sharded), "--no-progress", "--allow-missing"]) == 0
  out = capsys.readouterr().out
  assert "warning:" in out and "mid_1" not in out and "long_1" in out and "no timing file yet for shard 1 of 2" in out


def test_sharding_options_that_cannot_work_are_one_line_errors(shapes_root, tmp_path, capsys):
  for argv, expected in (
      (["--demo", "--num-shards", "2", "--shard", "0"], "use them with --davis"),
      (["--davis", shapes_root, "--num-shards", "2", "--shard", "0", "--eval"], "run `vsreid eval`"),
      (["--davis", shapes_root, "--num-shards", "2", "--shard", "5"], "must be 0..1"),
      (["--davis", shapes_root, "--coordinator", "h:1"], "go together")):
    assert cli.main(["segment", *argv, "--out", str(tmp_path / "o"), *SEGMENT]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vsreid: error: ") and "\n" not in err and expected in err, err
  foreign = tmp_path / "o2"
  foreign.mkdir()
  (foreign / "timing-shard-0-of-2.json").write_text("my notes")
  assert cli.main(["segment", "--davis", shapes_root, "--out", str(foreign), "--num-shards", "2", "--shard", "0",
                   *SEGMENT]) == 2
  assert "was not written by vsreid" in capsys.readouterr().err
  assert (foreign / "timing-shard-0-of-2.json").read_text() == "my notes"


def test_processes_of_a_multi_process_job_take_their_shares(three_clips, tmp_path):
  """Launched as a 2-process JAX job (no --shard flags), shard = process index of process count."""
  root, single = three_clips
  port = _free_port()
  out = tmp_path / "job"
  _run_shards([["--davis", root, "--out", str(out), "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                "--process-id", str(i)] for i in range(2)])
  _assert_same_masks(out, single)
  assert sorted(p.name for p in out.glob("timing-shard-*.json")) == ["timing-shard-0-of-2.json",
                                                                     "timing-shard-1-of-2.json"]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]
