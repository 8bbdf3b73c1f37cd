"""A class-agnostic Faster R-CNN FPN sized for a 2-core CPU.

- ResNet-18 at width 32 (channels 32-64-128-256), initialised from the RGB stream of the shipped
  N_mp (`propagation_lite_cpu`), whose BatchNorm statistics it keeps frozen: width 32 cannot take
  ImageNet weights, and a from-scratch trunk without batch statistics trains poorly;
- one input bucket 240x427 (DAVIS 854x480 halves to it, 427x240 fits exactly), padded to 256x448;
- FPN of 64 channels, box head of 256, 500 proposals per level before NMS, 300 after, M=32
  detections (DAVIS frames hold a handful of objects).
"""
from vsreid_jax.configs import detector_r50_fpn


def get_config():
  config = detector_r50_fpn.get_config()
  config.name = "detector_lite_cpu"
  config.input.height, config.input.width = 240, 427
  m = config.model
  m.backbone.stage_sizes, m.backbone.block, m.backbone.width = (2, 2, 2, 2), "basic", 32
  m.fpn_channels = 64
  m.representation_size = 256
  r = config.rpn
  # Training proposals only feed the RoI sampler: fewer keep the quadratic NMS cheap.
  r.pre_nms_top_n_train, r.pre_nms_top_n_test = 250, 500
  r.post_nms_top_n_train, r.post_nms_top_n_test = 300, 300
  c = config.roi
  c.detections_per_img = 32
  c.batch_size_per_image = 128  # sampled RoIs per image in training
  # Adam and a short cosine schedule: 900 steps of 4 images, ~35 min on 2 shared cores (~2.3 s a step).
  o = config.optimizer
  o.name, o.schedule = "adamw", "cosine"
  o.lr, o.warmup_steps, o.end_lr_factor, o.weight_decay, o.grad_clip_norm = 6e-4, 50, 0.02, 1e-4, 10.0
  config.data.batch_size = 4
  config.train.steps = 900
  config.train.checkpoint_every = 100
  config.train.max_seconds = 2100.0
  config.init = "vsreid_jax/assets/weights/propagation_lite_cpu.msgpack"  # rgb_stream/backbone
  return config
