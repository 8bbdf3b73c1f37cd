"""The optical-flow interface every backend implements (DIS and RAFT; `flow.get` builds one by name)."""
from typing import Protocol

import numpy as np


class FlowBackend(Protocol):
  """Dense flow from frame a to frame b in pixels: a(x) ~ b(x + flow(x)), shape (H, W, 2), float32.

  `name` identifies the backend and its settings; caches key on it so that flows from different
  settings never mix.
  """

  name: str

  def flow(self, frame_a: np.ndarray, frame_b: np.ndarray) -> np.ndarray:
    ...
