"""The lectures' numbers that cnnlab computes differently, and why: printed by ``cnnlab summary``.

Data only; every figure in a note is checked by tests/test_memory.py against the analyzer or the zoo
(params counted on the meta device), so a note cannot drift from the code it explains.
"""

from __future__ import annotations

__all__ = ["MODEL_NOTES", "notes_for"]

MODEL_NOTES: dict[str, tuple[str, ...]] = {
    "alexnet_2012": (
        "Lecture 000's 'AlexNet 8 layers, 62M parameters' counts the net without the paper's two GPU towers: "
        "`--config two_towers=false` has 62,378,344 parameters (62.4M); the paper's grouped net (this one) has "
        "60,965,224 (61.0M), which the paper and lecture 004 round to '60M' / '60 million'.",
        "The paper's '650,000 neurons' (lectures 000 and 004) is a round figure: the outputs of the 5 conv and 3 FC "
        "layers at 227x227 number 659,272.",
        "Lecture 000's Zeiler & Fergus ablations: without FC7 the net loses 16,781,312 parameters (4096 x 4096 = "
        "2^24 weights + biases, 16.8M; the slide's 'Drop 16 million' truncates it); without FC6 and FC7 (FC8 then "
        "reads the 9,216 pooled values) 49,414,144 ('~50 million').",
    ),
    "resnet152": (
        "Lecture 000 says both 'ResNet 152 layers, 60M parameters' and 'About 64M parameters'. The paper's net "
        "has 60,192,808 parameters (60,040,384 weights; 60,344,387 values with batch-norm running statistics; "
        "the same with `stride_in_1x1=true`); option-C projection shortcuts everywhere give 107M. No variant of "
        "ResNet-152 gives 64M: cnnlab takes 60.2M, the lecture's other slide and torchvision's count.",
    ),
    "googlenet_2014": (
        "Lecture 004's '27 layers (dropout, softmax not count)' is the paper's count: 22 weight layers on the "
        "longest path (the depth column here) + 5 pooling layers of the trunk (maxpool1-4 and avgpool); the "
        "paper counts an Inception module as 2 layers deep, like the depth column.",
        "Lecture 000's '5M weights' is the paper's 'uses 12 times fewer parameters than Krizhevsky et al.' "
        "(60M / 12 = 5M), not a count: the trunk without the auxiliary classifiers has 6,990,272 weights "
        "(6,998,552 parameters; lecture 000's other slide says '7M'); Table 1's own params column sums to "
        "6,798K. With the two auxiliary classifiers the net has 13,378,280 parameters.",
        "Table 1's 73M ops for inception (4a) is its params column times 14x14: 364K x 1024 x 196 = 73.06M. "
        "The module's widths give 375,552 weights (366.75K), so 73,608,192 MACs (73.6M), which rounds to 74M; "
        "the other rows round the widths' figure to the nearest million (4b 87.9M -> 88M, 4d 118.5M -> 119M).",
    ),
}
MODEL_NOTES["vgg16"] = MODEL_NOTES["vgg_d"] = (
    "He et al.'s 'VGG-16/19 nets (15.3/19.6 billion FLOPs)' (lecture 000) count differently: VGG-16's 15.3 is its "
    "convolutional layers alone (15.35G multiply-adds; the whole net 15.47G), VGG-19's 19.6 the whole net (19.63G; "
    "its convolutional layers 19.51G).",
    "Lecture 002's 'TOTAL memory: 24M * 4 bytes ~ 96MB / image' is not the sum of its own rows: they add up to "
    "15,237,608 values (61.0 MB); the total here adds the 25,088 values of the 7x7 adaptive average pool.",
    "Lecture 001's 'VGG 16 conv. layers' counts weight layers: 13 convolutional + 3 fully connected.",
)
MODEL_NOTES["vgg19"] = MODEL_NOTES["vgg_e"] = (MODEL_NOTES["vgg16"][0],)
MODEL_NOTES["lenet5"] = (
    "Lecture 002's '[CONV-POOL-CONV-POOL-FC-FC]' names C5 (a 5x5 convolution on 5x5 maps, so a 1x1 output: fully "
    "connected in effect) and F6 as its two FC layers and leaves out the output layer (RBF units in the paper, "
    "linear here).",
)
MODEL_NOTES["googlenet"] = (
    "torchvision's GoogLeNet (this model) is the paper's architecture with batch norm and 3x3 '5x5' branches; "
    "for the paper's layer and parameter counts ('22 layers', '27 layers', '5M weights') see "
    "`cnnlab summary googlenet_2014`.",
)


def notes_for(model: str) -> tuple[str, ...]:
    """The notes printed under ``cnnlab summary model`` (none for most models)."""
    return MODEL_NOTES.get(model, ())
