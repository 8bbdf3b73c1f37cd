"""Faster R-CNN ResNet-50 FPN with torchvision's `fasterrcnn_resnet50_fpn` hyper-parameters.

Meant for GPU/TPU training or for torchvision weights imported with
`vsreid_jax/detection/import_torch.py` (any num_classes; 91 for the COCO checkpoint). One
difference by design: images are resized to one fixed bucket (input.height x input.width, padded
to a multiple of 32) instead of torchvision's min_size 800 / max_size 1333, so that one compiled
function serves every frame.
"""
import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.name = "detector_r50_fpn"
  i = config.input = ml_collections.ConfigDict()
  i.height, i.width = 480, 854  # frames are resized to this (aspect kept up to rounding)
  i.size_divisible = 32  # then zero-padded to a multiple (GeneralizedRCNNTransform.batch_images)

  m = config.model = ml_collections.ConfigDict()
  m.backbone = ml_collections.ConfigDict(dict(stage_sizes=(3, 4, 6, 3), block="bottleneck", width=64))
  m.fpn_channels = 256
  m.anchor_sizes = ((32,), (64,), (128,), (256,), (512,))
  m.aspect_ratios = (0.5, 1.0, 2.0)
  m.representation_size = 1024
  m.num_classes = 2  # background + "object" (class-agnostic); 91 for COCO weights
  m.rgb_mean = (123.675, 116.28, 103.53)  # torchvision's 0..1 mean/std in 0..255 units
  m.rgb_std = (58.395, 57.12, 57.375)
  m.dtype = "float32"

  r = config.rpn = ml_collections.ConfigDict()
  r.pre_nms_top_n_train, r.pre_nms_top_n_test = 2000, 1000  # per level
  r.post_nms_top_n_train, r.post_nms_top_n_test = 2000, 1000
  r.nms_thresh = 0.7
  r.min_size = 1e-3
  r.score_thresh = 0.0
  r.fg_iou_thresh, r.bg_iou_thresh = 0.7, 0.3
  r.batch_size_per_image = 256
  r.positive_fraction = 0.5

  c = config.roi = ml_collections.ConfigDict()
  c.output_size = 7
  c.sampling_ratio = 2
  c.score_thresh = 0.05
  c.nms_thresh = 0.5
  c.min_size = 1e-2
  c.detections_per_img = 100
  # Per-class boxes entering the final NMS; torchvision has no cap, which only matters with
  # thousands of boxes above score_thresh (a fixed-shape NMS is quadratic in this number).
  c.max_candidates = 4000
  c.fg_iou_thresh, c.bg_iou_thresh = 0.5, 0.5
  c.batch_size_per_image = 512
  c.positive_fraction = 0.25
  c.bbox_reg_weights = (10.0, 10.0, 5.0, 5.0)

  # Training (vsreid_jax/detection/train.py): DAVIS training frames with copy-paste.
  d = config.data = ml_collections.ConfigDict()
  d.data_dir = ""  # experiments/train_detector.py fills ../shared/data
  # Named datasets (data/training_sets.py; `vsreid train --net detector --dataset/--val-dataset`):
  # when set, their training sequences replace data_dir's DAVIS-2016 split (validation ones held out).
  d.datasets = ()
  d.val_datasets = ()
  d.batch_size = 4
  d.max_boxes = 8  # GT boxes per image (padded)
  d.max_paste = 3
  d.seed = 0
  d.prefetch = 2
  o = config.optimizer = ml_collections.ConfigDict()
  o.name, o.schedule = "sgd", "poly"  # torchvision's detection reference: SGD 0.02 for 16 images
  o.lr, o.momentum, o.poly_power, o.warmup_steps, o.end_lr_factor = 0.01, 0.9, 0.9, 500, 0.0
  o.weight_decay = 1e-4
  o.grad_clip_norm = 0.0
  t = config.train = ml_collections.ConfigDict()
  t.steps = 20000
  t.seed = 0
  # torchvision trains layer2..layer4 (trainable_backbone_layers=3); BN is frozen everywhere.
  t.frozen = ("backbone/conv1", "backbone/bn1", "backbone/layer1_", "backbone/*/bn", "backbone/*/downsample_bn")
  t.log_every = 10
  t.checkpoint_every = 500
  t.keep_checkpoints = 3
  t.plot_every = 100
  t.max_seconds = 0.0  # > 0: stop with a checkpoint after this much wall time
  # "": random init; a propagation weights file (.msgpack): its RGB stream's ResNet; a torchvision
  # Faster R-CNN state_dict (.pth, e.g. the COCO `fasterrcnn_resnet50_fpn` weights): every tensor,
  # the class predictor left at random init when its class count differs (detection/import_torch.py).
  config.init = ""
  return config
