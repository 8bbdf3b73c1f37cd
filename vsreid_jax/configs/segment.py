"""Inference config for `vsreid segment` (propagation path)."""
import ml_collections

from vsreid_jax.errors import InputError


def get_config():
  c = ml_collections.ConfigDict()
  # N_mp: "identity" (warp-only baseline), "default" (the shipped weights), or a checkpoint dir.
  c.net = "identity"
  c.flip = None  # flip test-time averaging (flow x negated); None: as the net's config says
  c.flow = ml_collections.ConfigDict()
  c.flow.backend = "dis"
  c.flow.preset = "medium"
  c.propagation = ml_collections.ConfigDict()
  # (box margin, crop size) per scale, averaged; None: the net's own (margin, crop size), or the
  # paper's (0.15, 449) for the identity net.
  c.propagation.scales = None
  c.propagation.use_box = True
  c.propagation.threshold = 0.5
  c.propagation.lost_ratio = 0.1
  return c


def parse_scales(text: str):
  """"0.15:449,0.3:449" -> ((0.15, 449), (0.3, 449)): (box margin, crop size) pairs."""
  try:
    return tuple((float(m), int(s)) for m, s in (x.split(":") for x in text.split(",")))
  except ValueError:
    raise InputError(f"--scales {text}: expected margin:crop pairs like 0.15:449,0.3:449") from None
