"""RAFT small as torchvision's `raft_small` (0.99 M parameters): bottleneck encoders (instance
norm for features, none for context), 4-level pyramid of radius 3, one 3x3 ConvGRU, bilinear x8
upsampling (no mask predictor).

The `optimizer` and `train` sections train it from scratch on the synthetic flow set
(flow/synthetic_flow.py) with experiments/train_raft.py.
"""
import ml_collections


def model_config():
  return ml_collections.ConfigDict(dict(
      feature_layers=(32, 32, 64, 96, 128),
      feature_block="bottleneck",
      feature_norm="instance",
      context_layers=(32, 32, 64, 96, 160),  # first hidden_size channels: GRU state, rest: context
      context_block="bottleneck",
      context_norm="none",
      corr_levels=4,
      corr_radius=3,
      motion_corr_layers=(96,),
      motion_flow_layers=(64, 32),
      motion_out=82,
      hidden_size=96,
      gru_kernels=(3,),
      flow_head_hidden=128,
      mask_hidden=0,  # 0: bilinear upsampling
      unroll_iterations=True,  # XLA:CPU runs a rolled scan's while loop slower (see raft.RAFT)
  ))


def get_config():
  config = ml_collections.ConfigDict()
  config.variant = "small"
  config.num_iters = 12  # torchvision's default num_flow_updates
  config.model = model_config()
  # Initialisation from a torchvision state_dict (flow/import_torch_raft.py); empty: random.
  config.torch_checkpoint = ""
  config.optimizer, config.train = train_config()
  return config


def train_config():
  """From-scratch training on the synthetic flow set (experiments/train_raft.py).

  torchvision's recipe (references/optical_flow): AdamW lr 4e-4, weight decay 1e-4, one-cycle
  (linear warm-up then linear decay), gradient clipping at norm 1, sequence loss with gamma 0.8.
  Crops of 128x192 (a 4-level pyramid needs >= 128 px a side) from frames downscaled at most 2x,
  so that motions keep roughly their full-resolution size; DAVIS frames when found at
  `davis_root` (default ../shared/data/davis2016-train), generated textures otherwise.
  """
  o = ml_collections.ConfigDict(dict(
      name="adamw", schedule="poly", lr=4e-4, poly_power=1.0, warmup_steps=50, end_lr_factor=0.0,
      weight_decay=1e-4, grad_clip_norm=1.0))
  t = ml_collections.ConfigDict(dict(
      workdir="",
      seed=0,  # parameter init
      steps=1000,
      batch_size=4,
      height=128,
      width=192,
      num_iters=8,  # updates unrolled in training (torchvision trains with 12)
      gamma=0.8,  # iteration i of N weighted gamma^(N - 1 - i)
      loss="epe",  # or "l1" (torchvision's reference: mean |flow - gt| over components)
      max_gt_flow=400.0,  # pixels with a larger ground truth are left out of the loss (torchvision)
      data_seed=0,
      davis_root="",  # empty: ../shared/data/davis2016-train if present, else textures
      crop_scale=(0.25, 0.5),  # crop side / (frame side fitted to the crop's aspect ratio)
      max_flow=12.0,  # px, largest translation in a sample
      eval_samples=16,
      eval_every=250,
      log_every=10,
      checkpoint_every=250,
      keep_checkpoints=3,
      plot_every=50,
  ))
  return o, t

