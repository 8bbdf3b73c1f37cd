"""Online adaptation of N_mp on each video's first frame (`train/online.py`).

`get_config("lite_cpu")` or `get_config("paper_r101")`: the model's crop and margin come from the
weights file at run time; this holds the step count, optimiser and the strengths of the synthetic
pairs (Lucid Data Dreaming style: the first frame deformed into a "current frame" with an exact
flow back to it, a degraded prior, now and then the object cut and pasted over an inpainted
background).

  lite_cpu:   the train step at crop 161, batch 4, BatchNorm frozen, measured 0.8-1.1 s on 2 CPU
              cores while a training run shared them (about 1.1-1.4 s a step with the example
              synthesis in its thread; ~25 ms per example at 240p-480p); alone, expect about half.
              50 steps: roughly 20-60 s a video, plus about 30 s of one-off compilation per process
              (experiments/bench_online.py measures it against the segmentation time).
  paper_r101: 500 steps of batch 4 at 449 (the original fine-tuned its test-dev model online per
              video); meant for a GPU/TPU.
"""
import dataclasses

import ml_collections

from vsreid_jax import configs
from vsreid_jax.data.augment import DeformConfig

def synth_config() -> ml_collections.ConfigDict:
  """Strengths of the synthetic "current frame", relative to the objects' size sqrt(area)."""
  return ml_collections.ConfigDict(dict(
      translate=0.08,  # std of the global shift (camera + object motion between frames)
      scale=0.08,  # zoom in 1 +- scale
      rotate_deg=8.0,  # rotation in +- rotate_deg
      elastic=0.03,  # std of the smooth displacement grid (non-rigid motion)
      elastic_cells=(2, 4),  # grid cells across one object size (uniform in the range)
      paste_prob=0.25,  # cut and paste one object to a new place over the inpainted background
      paste_shift=(0.3, 1.0),  # how far it moves, in object sizes
      paste_scale=0.1,  # its zoom in 1 +- paste_scale
      inpaint_radius=5,  # cv2.inpaint (Telea) radius in pixels
      flow_noise=0.01,  # smooth noise added to the flow the net sees: real (DIS) flow is not exact
  ))


def get_config(arg: str = "lite_cpu") -> ml_collections.ConfigDict:
  configs.check_name("online", arg)
  c = ml_collections.ConfigDict()
  c.name = arg
  c.steps = 50
  c.batch_size = 4  # crops of one video per step, objects taken in turn
  c.seed = 0  # synthetic pairs and their order; same seed, same adapted variables
  c.margin_jitter = 0.05  # crop margin drawn from the net's margin +- jitter, as in training
  c.colour_prob = 0.8  # augment.jitter_colour on the crops
  c.flip_prob = 0.5
  c.prefetch = 2  # batches made ahead in a thread while the step runs
  c.synth = synth_config()
  # The prior: the flow-warped first-frame mask degraded like a propagated mask (augment.deform_mask).
  c.deform = ml_collections.ConfigDict(dataclasses.asdict(DeformConfig()))
  c.loss = ml_collections.ConfigDict(dict(soft_iou_weight=0.0))  # as the base training
  o = c.optimizer = ml_collections.ConfigDict()
  # AdamW at a tenth of the base training's peak lr: a few dozen steps on one frame should nudge
  # the net towards this video's appearance, not overwrite what it learnt from many videos.
  o.name, o.schedule = "adamw", "cosine"
  o.lr, o.warmup_steps, o.end_lr_factor = 1e-4, 5, 0.1
  o.weight_decay = 1e-4
  o.grad_clip_norm = 1.0
  if arg == "paper_r101":
    c.steps = 500
    # Still AdamW (not the base SGD recipe: its momentum needs more than a few hundred steps to
    # build up), smaller for the ResNet-101 streams.
    o.lr, o.warmup_steps, o.end_lr_factor = 2e-5, 20, 0.1
  return c
