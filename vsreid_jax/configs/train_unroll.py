"""Unrolled training of N_mp on its own outputs (issue 17, lever 1): `train/unroll.py`.

The train_propagation config (data roots, train split, crop, optimiser kinds) plus `unroll`:
clips of `length` consecutive frames, one SGD step per frame, the previous frame's prediction
(binarised, warped by the real DIS flow) as the next prior for a share of the clips that ramps up
from 0 (ground-truth priors first: a curriculum). By default it fine-tunes the shipped net.

  lite_cpu: batch 8 clips x 5 frames, crop 161: about 1-2 s a step on 2 shared cores.
"""
import ml_collections

from vsreid_jax.configs import train_propagation


def get_config(arg: str = "lite_cpu") -> ml_collections.ConfigDict:
  config = train_propagation.get_config(arg)
  u = config.unroll = ml_collections.ConfigDict()
  # T >= 4 (issue 17): long enough for the net's own errors to compound within a clip; 5 keeps
  # the 5 successive batches of one clip set from dominating the gradient for long.
  u.length = 5
  # Share of clips whose priors after the first frame are the net's own warped, binarised output
  # (the rest get the warped ground truth each frame). Ramps linearly from 0 at step 0 to `own_max`
  # at `own_ramp` x train.steps (100 steps: a fine-tuned net's outputs are usable early, and the
  # 2 shared cores manage only a few hundred steps an hour).
  u.own_max = 0.75
  u.own_ramp = 0.1
  u.threshold = 0.5  # binarisation of the previous prediction, as PropagationConfig.threshold at test
  # Clip frames drawn from the flow cache: the same flow backend as inference (data.flow).

  # Fine-tune the shipped net: from scratch the net needs hours before its own outputs are usable.
  # The shipped default is itself step 150 of such a run started from the step-2000 net; to redo it,
  # --set init.weights=<that file> (git show d751254:vsreid_jax/assets/weights/propagation_lite_cpu.msgpack).
  # "default": the shipped N_mp (models/weights.DEFAULT_WEIGHTS), as `vsreid segment --net default`.
  config.init.weights = "default" if arg == "lite_cpu" else ""
  o = config.optimizer
  if arg == "lite_cpu":
    # Fine-tuning: a third of the from-scratch peak, short warmup (the AdamW moments start at 0).
    o.lr, o.warmup_steps, o.end_lr_factor = 3e-4, 50, 0.03
    config.train.steps = 1000  # 200 clip batches: 5-40 s a step on the 2 cores shared with others
    config.train.checkpoint_every = 50  # rounded up to the end of a clip batch
    config.train.keep_checkpoints = 40  # every checkpoint is a candidate for selection on val
    config.train.max_seconds = 0.0
  return config
