"""Models: dilated ResNet backbones, ASPP head, two-stream propagation N_mp.

`import_torch` (torchvision weights) is not imported here: it is optional.
"""

from vsreid_jax.models.aspp import ASPP
from vsreid_jax.models.propagation import build_model
from vsreid_jax.models.propagation import make_propagation_fn
from vsreid_jax.models.propagation import PropagationStream
from vsreid_jax.models.propagation import TwoStreamPropagation
from vsreid_jax.models.resnet import BasicBlock
from vsreid_jax.models.resnet import Bottleneck
from vsreid_jax.models.resnet import ResNet
from vsreid_jax.models.resnet import ResNet101
from vsreid_jax.models.resnet import ResNet18
from vsreid_jax.models.resnet import ResNet34
from vsreid_jax.models.resnet import ResNet50

__all__ = [
    "ASPP", "BasicBlock", "Bottleneck", "PropagationStream", "ResNet",
    "ResNet101", "ResNet18", "ResNet34", "ResNet50", "TwoStreamPropagation",
    "build_model", "make_propagation_fn",
]
