"""ResNeXt: Xie, Girshick, Dollár, Tu & He, "Aggregated Residual Transformations for Deep Neural
Networks", CVPR 2017.

A ResNet bottleneck whose 3x3 convolution is split into C parallel paths of width d (cardinality C):
Fig. 3 shows three equivalent forms; the zoo builds form (c), one grouped 3x3 convolution with C
groups, as torchvision does. Table 1 (ResNeXt-50, 32x4d)::

    conv2: [1x1, 128; 3x3, 128, C=32; 1x1, 256] x 3     conv3: [1x1, 256; 3x3, 256, C=32; 1x1, 512] x 4
    conv4: [1x1, 512; 3x3, 512, C=32; 1x1, 1024] x 6    conv5: [1x1, 1024; 3x3, 1024, C=32; 1x1, 2048] x 3
    25.0 x 10^6 parameters, 4.2 x 10^9 FLOPs (multiply-adds)

The stages, stem and head are ResNet-50's (``cnnlab.models.zoo.resnet``); the inner width of a
stage's blocks is ``planes * d / 64 * C`` (128 for the first stage).
"""

from __future__ import annotations

from typing import Any

from cnnlab.models.registry import register_model
from cnnlab.models.zoo.resnet import IMAGENET_TABLE1, ResNet, build_resnet

__all__ = ["RESNEXT_TABLE1", "resnext50_32x4d"]

# Xie et al. 2017, Table 1: (depth of the ResNet it widens, cardinality C, bottleneck width d).
RESNEXT_TABLE1: dict[str, tuple[int, int, int]] = {
    "resnext50_32x4d": (50, 32, 4),
}


@register_model(
    family="resnext",
    paper="Xie et al., 2017",
    input_size=(3, 224, 224),
    num_classes=1000,
    recipe="resnet_imagenet",
    torchvision="resnext50_32x4d",
    departures="none: the grouped-convolution form (Fig. 3c), stride on the 3x3 as in the paper",
)
def resnext50_32x4d(*, num_classes: int = 1000, in_chans: int = 3, **config: Any) -> ResNet:
    """ResNeXt-50 (32x4d), torchvision-compatible: 25.0M parameters, 4.2 GMACs at 224x224."""
    depth, cardinality, width = RESNEXT_TABLE1["resnext50_32x4d"]
    block, layers = IMAGENET_TABLE1[depth]
    return build_resnet(
        "resnext50_32x4d", config, num_classes=num_classes, in_chans=in_chans,
        block=block, layers=layers, groups=cardinality, width_per_group=width,
    )  # fmt: skip
