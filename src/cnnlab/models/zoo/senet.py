"""SE-ResNets: Hu, Shen & Sun, "Squeeze-and-Excitation Networks", CVPR 2018 (journal version TPAMI
2019, with Albanie and Wu).

An SE block (``cnnlab.models.blocks.se``) with reduction ratio r = 16 gates each residual block's
branch F(x) before the addition with the shortcut (Fig. 3, "SE-ResNet module"). Everything else is
the ResNet of ``cnnlab.models.zoo.resnet``, so ``se_resnet50`` and ``resnet50`` differ only by the
SE gates and an experiment comparing them isolates their effect.

SE-ResNet-50 has 28.1M parameters (Hu et al., TPAMI version, Table 10, r = 16; ResNet-50: 25.6M):
"~2.5 million additional parameters beyond the ~25 million parameters required by ResNet-50" (§4).
"""

from __future__ import annotations

from typing import Any

from cnnlab.models.registry import register_model
from cnnlab.models.zoo.resnet import CIFAR_TABLE6, CIFAR_WIDTHS, IMAGENET_TABLE1, ResNet, build_resnet

__all__ = ["SE_REDUCTION", "se_resnet50", "se_resnet20"]

SE_REDUCTION = 16  # Hu et al. §6.1: "we set r = 16 for all experiments (except where stated)"


@register_model(
    family="senet",
    paper="Hu et al., 2018",
    input_size=(3, 224, 224),
    num_classes=1000,
    recipe="resnet_imagenet",
    departures=(
        "stride on the bottleneck's 3x3 as torchvision's resnet50; the authors' released SE-ResNet-50 "
        "strides the first 1x1 (stride_in_1x1=True)"
    ),
)
def se_resnet50(*, num_classes: int = 1000, in_chans: int = 3, **config: Any) -> ResNet:
    """SE-ResNet-50: ResNet-50 with an SE gate (r = 16) on every bottleneck; 28.1M parameters."""
    block, layers = IMAGENET_TABLE1[50]
    return build_resnet(
        "se_resnet50", config, num_classes=num_classes, in_chans=in_chans,
        block=block, layers=layers, se_reduction=SE_REDUCTION,
    )  # fmt: skip


@register_model(
    family="senet",
    paper="Hu et al., 2018",
    input_size=(3, 32, 32),
    num_classes=10,
    recipe="resnet_cifar",
    departures=(
        "the SE paper's CIFAR nets are ResNet-110/164; this is SE on He et al.'s ResNet-20 (option A), "
        "with max(1, C // 16) hidden units (1 in the 16-channel stage)"
    ),
)
def se_resnet20(*, num_classes: int = 10, in_chans: int = 3, **config: Any) -> ResNet:
    """SE-ResNet-20: the CIFAR ResNet-20 (He et al. §4.2) with an SE gate (r = 16) on every basic block."""
    n = CIFAR_TABLE6[20][0]
    return build_resnet(
        "se_resnet20", config, num_classes=num_classes, in_chans=in_chans,
        block="basic", layers=(n, n, n), widths=CIFAR_WIDTHS, stem="cifar", shortcut="A",
        se_reduction=SE_REDUCTION,
    )  # fmt: skip
