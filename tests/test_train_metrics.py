"""StepWindow (train/metrics.py): window means, the compiling first step timed alone, pauses excluded."""
import time

import numpy as np

from vsreid_jax.train.metrics import StepWindow


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
