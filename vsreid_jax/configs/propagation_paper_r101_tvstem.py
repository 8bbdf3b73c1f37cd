"""`paper_r101` with torchvision's ResNet-101 stem, so that torchvision's ImageNet weights fit.

The paper's N_mp (`propagation_paper_r101`: two ResNet-101 streams, output stride 8, ASPP 6/12/18/24/1)
with the 7x7 stride-2 stem of torchvision's `resnet101` in place of the original's three-conv deep
stem (64-64-128). What is whose:
- the paper's / the original's: everything but the stem; the original's deep stem and Caffe-style
  BGR input are in `paper_r101` (importable from the PSPNet-style deep-stem ImageNet checkpoint).
- ours: this stem, and the input normalisation torchvision's weights were trained with (RGB, ImageNet
  mean and std). Set `init.torch_checkpoint` to a torchvision `resnet101` state_dict (.pth):
  `models/import_torch.py` maps it into both streams' backbones.
"""

from vsreid_jax.configs import propagation_paper_r101


def get_config():
  config = propagation_paper_r101.get_config()
  m = config.model
  m.backbone.deep_stem = False  # torchvision: one 7x7 stride-2 conv of 64 channels
  m.bgr = False
  m.rgb_mean = (123.675, 116.28, 103.53)  # ImageNet mean and std in 0..255 units (torchvision)
  m.rgb_std = (58.395, 57.12, 57.375)
  return config
