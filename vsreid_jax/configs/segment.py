"""Inference config for `vsreid segment`: propagation (Algorithm 1) and the VS-ReID solver (Algorithm 3)."""
import ml_collections

from vsreid_jax.errors import InputError


def get_config():
  c = ml_collections.ConfigDict()
  # "vsreid": propagation + re-identification (Algorithm 3); "propagate": Algorithm 1 only;
  # "auto": vsreid when the detector and ReID weights exist, else propagate.
  c.method = "auto"
  c.detector = "default"  # detector weights: "default" (shipped) or a weights file
  c.reid = "default"  # ReID weights: "default" (shipped) or a weights file
  c.solver = ml_collections.ConfigDict()
  c.solver.rho_reid = ml_collections.FieldReference(None, field_type=float)  # None: the ReID net's config
  c.solver.rho_occ = ml_collections.FieldReference(None, field_type=float)  # None: the ReID net's config
  c.solver.max_retrievals = 20  # recover-and-propagate rounds per video at most
  c.solver.recover_passes = 5  # N_mp passes at a retrieved frame (the guided one + 4 fed back)
  c.solver.guide_size = 129  # resolution of the frame-0 patch moved into the retrieved box
  c.solver.candidate_batch = 4  # frames per detector / ReID call
  # Which (frame, object) pairs Algorithm 2 considers (DESIGN.md "Retrieval, two readings"):
  # "original": lost objects only (the original test code); "paper": every pair, accepted when the
  # most similar candidate is > rho_reid and its IoU with the object's current mask box < rho_occ.
  c.solver.retrieval_rule = "original"
  # Levers of issue 20 (solver/algorithm3.py), off here; chosen by the ablation on val.
  c.solver.motion_weight = 0.0  # paper rule: rank by similarity + w x motion continuity (0: off)
  c.solver.motion_sigma = 0.5  # its spread in box diagonals per sqrt(frame of gap)
  c.solver.template_refresh = 0  # extra templates per object from confirmed frames
  c.solver.recovery_guard = False  # never replace a mask a similar candidate confirms
  c.solver.merge = "argmax"  # "argmax" (the paper's) or "occlusion" (checkpoint age, then evidence)
  # N_mp: "identity" (warp-only baseline), "default" (the shipped weights), or a checkpoint dir.
  c.net = "default"
  c.streams = ml_collections.FieldReference(None, field_type=tuple)  # None: all the net's streams; ("rgb",): RGB only
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
  # Warp the thresholded previous mask (see algorithm1.py); None: as the net's config says.
  c.propagation.binarize_prior = None
  # Online adaptation (train/online.py): fine-tune a copy of a learned net on synthetic pairs from
  # each video's first frame before propagating it. 0 steps: off. The step counts that fit a
  # device are in configs/online.py (lite_cpu: 50 steps, 20-60 s a video on 2 cores).
  c.online_steps = 0
  c.online_config = ""  # configs/online.py arg; "": the net's config name if it has one, else lite_cpu
  c.online_seed = 0
  return c


def parse_scales(text: str):
  """"0.15:449,0.3:449" -> ((0.15, 449), (0.3, 449)): (box margin, crop size) pairs."""
  try:
    return tuple((float(m), int(s)) for m, s in (x.split(":") for x in text.split(",")))
  except ValueError:
    raise InputError(f"--scales {text}: expected margin:crop pairs like 0.15:449,0.3:449") from None
