"""Look inside a network: run a model and return arrays (no plotting; :mod:`cnnlab.viz` draws them).

    filters(model)                               kernels of the first (or a named) convolution
    activation_stats(model, x)                   per layer: mean/std, zeros, dead units, weight/grad norms
    feature_maps(model, image)                   maps of one image at each stage
    contrast_norm_maps(model, image)             maps of one image before and after local contrast
                                                 normalisation
    top_patches(model, images, layer=...)        the k patches that excite each unit, cut with the
                                                 analyzer's receptive field
    attribute(model, x, target, method=...)      captum's attributions, and CAM (see METHODS)
    penultimate_features / embed_2d              the classifier's features, in 2-D by PCA or t-SNE

Layers are named as in ``model.feature_info`` or ``named_modules()``.
"""

from cnnlab.inspect.attribution import ALL_METHODS, CAM_FAMILY, METHODS, attribute, attribute_all, cam, cam_head, non_inplace_copy
from cnnlab.inspect.features import (
    TopPatches,
    contrast_norm_maps,
    embed_2d,
    feature_maps,
    layer_field,
    penultimate_features,
    top_patches,
)
from cnnlab.inspect.layers import capture, resolve_layer, stage_names
from cnnlab.inspect.stats import LayerStats, activation_stats, filters

__all__ = [
    "METHODS",
    "ALL_METHODS",
    "CAM_FAMILY",
    "attribute",
    "attribute_all",
    "cam",
    "cam_head",
    "non_inplace_copy",
    "TopPatches",
    "contrast_norm_maps",
    "embed_2d",
    "feature_maps",
    "layer_field",
    "penultimate_features",
    "top_patches",
    "capture",
    "resolve_layer",
    "stage_names",
    "LayerStats",
    "activation_stats",
    "filters",
]
