"""RAFT large as torchvision's `raft_large` (5.26 M parameters): residual encoders (instance norm
for features, batch norm for context), 4-level pyramid of radius 4, separable 1x5/5x1 ConvGRU,
convex upsampling. Inference only here; at 854x480 it is about an order of magnitude slower
than raft_small on CPU.
"""
import ml_collections


def model_config():
  return ml_collections.ConfigDict(dict(
      feature_layers=(64, 64, 96, 128, 256),
      feature_block="residual",
      feature_norm="instance",
      context_layers=(64, 64, 96, 128, 256),  # first hidden_size channels: GRU state, rest: context
      context_block="residual",
      context_norm="batch",
      corr_levels=4,
      corr_radius=4,
      motion_corr_layers=(256, 192),
      motion_flow_layers=(128, 64),
      motion_out=128,
      hidden_size=128,
      gru_kernels=((1, 5), (5, 1)),
      flow_head_hidden=256,
      mask_hidden=256,
      mask_multiplier=0.25,
      unroll_iterations=True,  # XLA:CPU runs a rolled scan's while loop slower (see raft.RAFT)
  ))


def get_config():
  config = ml_collections.ConfigDict()
  config.variant = "large"
  config.num_iters = 12  # torchvision's default num_flow_updates
  config.model = model_config()
  # Initialisation from a torchvision state_dict (flow/import_torch_raft.py); empty: random.
  config.torch_checkpoint = ""
  return config
