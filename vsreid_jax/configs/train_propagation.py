"""Training N_mp on DAVIS 2016 train: `get_config("lite_cpu")` or `get_config("paper_r101")`.

The model part comes from `propagation_<arg>.py` (model, crop_size, crop_margin, ...); this adds
the data (roots, held-out split, prior mix), the optimiser, the loop and the initialisation.

  lite_cpu:   sized to train in <= 2 h on 2 CPU cores (about 0.3-0.6 s a step).
  paper_r101: the original's two-stream ResNet-101 OS8 net, 449x449 crops, 2 crops per device,
              SGD momentum 0.9, lr 1e-3 poly (DeepLab's recipe; the original's own training
              hyper-parameters were never published): meant for GPUs/TPUs.
  paper_r101_tvstem: the same with torchvision's stem (its ImageNet weights fit).
Stages (train/stages.py): `get_config(arg, stage=...)`, the paper's rgb_static -> rgb -> flow ->
joint schedule; the default "joint" trains both streams at once (ours).
"""
import dataclasses

import ml_collections

from vsreid_jax import configs

from vsreid_jax.data import splits
from vsreid_jax.data.augment import DeformConfig


# The paper's training stages (train/stages.py): the streams each trains, and rgb_static's priors.
STAGES = ("rgb_static", "rgb", "flow", "joint")
STREAMS = {"rgb_static": ("rgb",), "rgb": ("rgb",), "flow": ("flow",), "joint": ("rgb", "flow")}
STATIC_PRIOR_PROBS = (0.0, 1.0, 0.0)  # deform only: the guide is a deformed GT mask of the frame


def apply_stage(config, stage: str) -> None:
  """Sets `config.stage` and what follows from it: the streams, and for rgb_static the priors."""
  if stage not in STAGES:
    raise configs.ConfigError(f"stage {stage!r}: choose one of {', '.join(STAGES)}")
  config.stage = stage
  config.model.streams = STREAMS[stage]
  if stage == "rgb_static":
    config.data.prior_probs = STATIC_PRIOR_PROBS


def data_config(crop_size: int, margin: float) -> ml_collections.ConfigDict:
  d = ml_collections.ConfigDict()
  d.source = "tfds"  # "tfds": pre-sampled array_record examples; "python": generated on the fly
  d.data_dir = ""  # folder holding the roots; experiments/train_propagation.py fills ../shared/data
  d.roots = splits.DATA_ROOTS  # in data_dir (../shared/data beside the repo), with their resolutions
  d.subset = "train"  # ImageSets/2017/<subset>.txt of each root
  d.held_out = splits.never_trained()  # the val and test splits of data/splits.py
  # The in-training validation (eval.csv) scores the held-out sequences listed here: `val` alone, so
  # the test sequences are seen once, at the end. None of the held-out sequences listed: all of them.
  d.validate_on = splits.never_trained("val")
  # Other datasets (data/training_sets.py; `vsreid train --dataset/--val-dataset`): strings
  # "davis:ROOT[:RES[:SET]]" or "youtube-vos:ROOT". When set, they replace data_dir/roots/held_out.
  d.datasets = ()  # train on these sequences
  d.val_datasets = ()  # validate on these (never trained on)
  # Synthetic occlusion clips (data/occlusion.py: cut-outs of the training objects moved over the
  # training backgrounds, occluders, exits and returns), trained beside the default split's
  # sequences: ("kind", clips, frames, seed) each, kind "standard" or "hard". Built once from the
  # training sequences alone into <cache_dir>/synthetic and reused. () trains on real videos only.
  d.synthetic = ()
  d.crop_size = crop_size
  d.margin = margin  # box enlargement, as at test time
  d.margin_jitter = 0.05  # margin drawn from margin +- jitter
  # Prior mix (warp, deform, skip): the real DIS-warped previous GT, a simulated deformation of
  # this frame's GT, the GT of 2..max_skip frames back warped over every step.
  d.prior_probs = (0.5, 0.25, 0.25)
  d.max_skip = 4
  # Flow backend by name (vsreid_jax/flow), the same key and default as inference (configs/segment.py).
  d.flow = "dis-medium"
  d.flow_weights = ""  # RAFT only: a torchvision state_dict (.pth)
  d.deform = ml_collections.ConfigDict(dataclasses.asdict(DeformConfig()))
  d.seed = 0
  d.batch_size = 16  # global; 0: batch_per_device x device count
  d.batch_per_device = 0
  d.num_train_examples = 20000  # tfds: pre-sampled examples (reused with online colour/flip)
  d.num_val_examples = 256  # held-out crops with real-warp priors for the cheap IoU validation
  d.colour_prob = 0.8
  d.flip_prob = 0.5
  d.prefetch = 2  # batches made ahead in a thread
  d.cache_dir = ""  # flows and tfds data; "" is ~/.cache/vsreid_jax
  return d


def get_config(arg: str = "lite_cpu", stage: str = "joint") -> ml_collections.ConfigDict:
  """`stage` (train/stages.py): "joint" (both streams; from random init unless
  init.from_stage_workdir names a flow-stage workdir), or one of the paper's earlier stages
  "rgb_static", "rgb", "flow"; it sets config.stage, model.streams and, for rgb_static, the priors."""
  configs.check_name("train", arg)
  config = configs.get("propagation", arg, lock=False)  # extended below
  config.name = arg
  # References: the crops the net is trained on follow the model's test-time crop and margin.
  config.data = data_config(config.get_ref("crop_size"), config.get_ref("crop_margin"))

  config.loss = ml_collections.ConfigDict(dict(soft_iou_weight=0.0))
  o = config.optimizer = ml_collections.ConfigDict()
  t = config.train = ml_collections.ConfigDict()
  t.workdir = ""
  t.seed = 0  # parameter init and dropout
  t.log_every = 10
  t.checkpoint_every = 500
  t.keep_checkpoints = 3
  t.eval_every = 1000
  t.plot_every = 100
  t.max_seconds = 0.0  # > 0: stop (with a checkpoint) after this much wall time, data preparation included

  if arg == "lite_cpu":
    # Crop and margin follow the model config (the test-time crop). Crop 161, batch 8, 2000 steps
    # (16k crops): about 1.2 s a step on 2 cores shared with other work, so under an hour; 8000
    # pre-sampled examples (~5 min to generate once), each seen twice with new colour/flip.
    config.data.batch_size = 8
    config.data.num_train_examples = 8000
    config.data.num_val_examples = 192
    o.name, o.schedule = "adamw", "cosine"
    o.lr, o.warmup_steps, o.end_lr_factor = 1e-3, 200, 0.01
    o.weight_decay = 1e-4
    o.grad_clip_norm = 1.0
    t.steps = 2000
    t.checkpoint_every = 250
    t.eval_every = 500
    t.max_seconds = 2 * 3600.0
  else:
    # DeepLab's published recipe (SGD momentum 0.9, lr 1e-3, poly 0.9, weight decay 5e-4); the
    # original's own values are not published, so this choice is ours.
    config.data.batch_size = 0
    config.data.batch_per_device = 2
    o.name, o.schedule = "sgd", "poly"
    o.lr, o.momentum, o.poly_power, o.warmup_steps, o.end_lr_factor = 1e-3, 0.9, 0.9, 0, 0.0
    o.weight_decay = 5e-4
    o.grad_clip_norm = 0.0
    t.steps = 30000
    t.checkpoint_every = 1000
    t.eval_every = 2000

  if "init" not in config:
    config.init = ml_collections.ConfigDict(dict(torch_checkpoint=""))
  # Staged training (train/stages.py): the previous stage's workdir, and how the flow stream's
  # first conv is made from the RGB stream's ("mean" of the colour filters per flow channel, "zeros").
  config.init.from_stage_workdir = ""
  config.init.flow_channel_init = "mean"
  apply_stage(config, stage)
  return config
