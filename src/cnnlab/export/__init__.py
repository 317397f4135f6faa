"""Models out of the lab: ONNX and ``torch.export`` files, CPU inference backends measured side by side,
and the :class:`Predictor` behind ``cnnlab predict``.

``onnx``, ``onnxscript`` and ``onnxruntime`` are the optional extra ``cnnlab[export]``; they are imported
only when an ONNX path is used.
"""

from cnnlab.export.export import FORMATS, export_model, export_onnx, export_pt2, load_pt2, read_onnx_metadata
from cnnlab.export.predictor import Prediction, Predictor
from cnnlab.export.preprocess import Preprocessing
from cnnlab.export.source import InferenceModel, load_model

__all__ = ["FORMATS", "export_model", "export_onnx", "export_pt2", "load_pt2", "read_onnx_metadata",
           "Preprocessing", "InferenceModel", "load_model", "Predictor", "Prediction"]
