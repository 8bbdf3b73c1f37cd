"""N_mp of the paper and the original test code: two ResNet-101 (deep stem, output stride 8) + ASPP.

What is whose (DESIGN.md, "Reference facts"): the paper describes two streams (RGB and flow, each
with the warped probability) on the enlarged box crop; the layout below comes from the original's
public test code: deep stem 64-64-128, strides [1,2,1,1] with dilations [1,1,2,4], ASPP rates
6/12/18/24/1 of 512 channels, crop 449 with margin 0.15, RGB as BGR minus the Caffe mean, flip
averaging at test (`test_flip`). Ours: one sigmoid logit per stream, averaged (models/propagation.py:
the same model as the original's two-class softmax, summed). ImageNet weights: the PSPNet-style
deep-stem ResNet-101 (models/import_torch.py); `paper_r101_tvstem` takes torchvision's instead.
About 2 s per stream-pair forward at 321x321 on 2 CPU cores: meant for an accelerator.
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.crop_size = 449
  config.crop_margin = 0.15  # box enlarged by 15% of its size on each side
  config.test_flip = True  # average with the flipped crop (flow x negated): the original test code's

  m = config.model = ml_collections.ConfigDict()
  m.streams = ("rgb", "flow")
  m.backbone = ml_collections.ConfigDict(dict(
      stage_sizes=(3, 4, 23, 3),
      block="bottleneck",
      width=64,
      output_stride=8,
      deep_stem=True,
      dilate_first_block=True,  # original: every block of a stage dilated
  ))
  m.aspp = ml_collections.ConfigDict(dict(
      rates=(6, 12, 18, 24, 1),
      branch_channels=512,
      out_channels=512,
      rate1_kernel_size=3,
      fuse_kernel_size=3,
      dropout_rate=0.1,
  ))
  # No stride-4 skip in the original: logits at stride 8, upsampled.
  m.skip = ml_collections.ConfigDict(dict(
      feature="layer1", channels=0, decoder_channels=0))
  m.bgr = True
  m.rgb_mean = (104.0, 117.0, 123.0)  # BGR order
  m.rgb_std = (1.0, 1.0, 1.0)
  m.flow_scale = 1.0
  m.dtype = "float32"

  # Initialisation from a torchvision-layout state_dict (import_torch.py).
  config.init = ml_collections.ConfigDict(dict(
      torch_checkpoint="",  # path to a .pth; empty: random init
      extra_channel_init="zeros",
  ))
  return config
