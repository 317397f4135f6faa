"""Architecture analysis: the lectures' tables, computed.

``analyze(model)`` gives per-layer output shapes, parameters, MACs, activation memory and receptive
fields without allocating weights or activations (the ``meta`` device); ``compare`` puts several
models side by side; ``effective_receptive_field`` measures the gradient-based field of Luo et al.
(2016) with real weights.
"""

from cnnlab.analysis.compare import compare
from cnnlab.analysis.core import analyze, load_model
from cnnlab.analysis.erf import ERFResult, effective_receptive_field
from cnnlab.analysis.receptive_field import AxisField, conv_field, stack_fields
from cnnlab.analysis.result import CONVENTIONS, Analysis, LayerRow, Totals

__all__ = [
    "analyze",
    "compare",
    "effective_receptive_field",
    "load_model",
    "Analysis",
    "LayerRow",
    "Totals",
    "ERFResult",
    "AxisField",
    "conv_field",
    "stack_fields",
    "CONVENTIONS",
]
