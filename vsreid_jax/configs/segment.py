"""Inference config for `vsreid segment` (propagation path)."""
import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  # N_mp: "identity" (warp-only baseline), "default" (the shipped weights), or a checkpoint dir.
  c.net = "identity"
  c.flip = False  # test-time horizontal flip averaging (flow x negated); no-op for identity
  c.flow = ml_collections.ConfigDict()
  c.flow.backend = "dis"
  c.flow.preset = "medium"
  c.propagation = ml_collections.ConfigDict()
  # (box margin, crop size) per scale; the paper enlarges by 0.15 and crops 449x449.
  c.propagation.scales = ((0.15, 449),)
  c.propagation.use_box = True
  c.propagation.threshold = 0.5
  c.propagation.lost_ratio = 0.1
  return c
