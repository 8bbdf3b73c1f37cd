"""StepWindow (train/metrics.py): window means, the compiling first step timed alone, pauses excluded."""
import time

import numpy as np
import pytest

from vsreid_jax.train.metrics import CsvLog, StepWindow


def test_step_window_means_and_timing():
  w = StepWindow(start=10)
  time.sleep(0.05)  # the first step (compiles) takes long
  w.add(11, {"loss": np.float32(4.0)})
  first = w.row(11, 0.1)
  assert first["step"] == 11 and first["loss"] == 4.0 and first["lr"] == 0.1
  assert first["seconds"] >= 0.05  # timed alone
  for step, loss in ((12, 1.0), (13, 3.0)):
    with w.paused():
      time.sleep(0.05)  # checkpointing: not step time
    w.add(step, {"loss": np.float32(loss)})
  row = w.row(13, 0.2)
  assert row["loss"] == 2.0 and row["step"] == 13
  assert row["seconds"] < 0.02  # the steps were instant; the pauses are excluded


def test_csv_rows_also_go_to_tensorboard_event_files(tmp_path):
  """The events decode with TensorBoard's own protocol buffers and CRC (tensorboardX's copies)."""
  import struct
  from tensorboardX.crc32c import crc32c
  from tensorboardX.proto import event_pb2

  def masked(data):
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF

  log = CsvLog(tmp_path / "metrics.csv", ["step", "loss", "lr"])
  log.append({"step": 10, "loss": 0.5, "lr": 1e-3, "ignored": 7.0})
  log.append({"step": 20, "loss": 0.25, "lr": 1e-3})
  (path,) = (tmp_path / "tensorboard").iterdir()
  data, events = path.read_bytes(), []
  while data:
    (n,) = struct.unpack("<Q", data[:8])
    assert struct.unpack("<I", data[8:12])[0] == masked(data[:8])
    payload = data[12:12 + n]
    assert struct.unpack("<I", data[12 + n:16 + n])[0] == masked(payload)
    events.append(event_pb2.Event.FromString(payload))
    data = data[16 + n:]
  assert events[0].file_version == "brain.Event:2"
  scalars = [(e.step, v.tag, v.simple_value) for e in events[1:] for v in e.summary.value]
  assert sorted(scalars) == [(10, "metrics/loss", 0.5), (10, "metrics/lr", pytest.approx(1e-3)),
                             (20, "metrics/loss", 0.25), (20, "metrics/lr", pytest.approx(1e-3))]
