"""Convolutional networks from scratch: NumPy reference layers (forward and backward), the
hand-crafted filters, pyramids, convolution as a Toeplitz matrix, separable filters, translation
equivariance, and a finite-difference gradient check for PyTorch modules.

Everything here is float64 NumPy (NCHW) checked against PyTorch autograd; it imports nothing of
cnnlab but ``cnnlab.errors``. Read ``conv2d_forward_loop`` next to ``conv2d_forward`` (im2col).
"""

from cnnlab.foundations.conv import (
    col2im,
    conv2d_backward,
    conv2d_backward_loop,
    conv2d_forward,
    conv2d_forward_loop,
    conv_output_size,
    conv_transpose2d_backward,
    conv_transpose2d_forward,
    im2col,
)
from cnnlab.foundations.equivariance import circular_conv2d, equivariance_error, shift
from cnnlab.foundations.filters import (
    BANKS,
    CLASSIC_FILTERS,
    LECTURE_FILTERS,
    filter2d,
    filter_bank,
    filter_responses,
    gabor_bank,
    gabor_kernel,
    gaussian_kernel,
    gaussian_pyramid,
    laplacian_pyramid,
    log_kernel,
    reconstruct_laplacian,
)
from cnnlab.foundations.images import PHOTOS, SKIMAGE_PREFIX, apply_kernel, image_stem, load_image, parse_kernel
from cnnlab.foundations.gradcheck import GradcheckResult, gradcheck
from cnnlab.foundations.layers import (
    linear_backward,
    linear_forward,
    numerical_gradient,
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_forward,
    softmax,
    softmax_cross_entropy,
    tanh_backward,
    tanh_forward,
)
from cnnlab.foundations.net import SGDConfig, TinyCNN, TrainReport, load_digits_splits, train_digits
from cnnlab.foundations.pool import avgpool2d_backward, avgpool2d_forward, maxpool2d_backward, maxpool2d_forward
from cnnlab.foundations.separable import (
    SeparableApprox,
    best_separable,
    compose_kernels,
    kernel_rank,
    separable_multiplications,
)
from cnnlab.foundations.toeplitz import LayerParams, LocallyConnected2d, connection_params, conv_matrix

__all__ = [
    "BANKS",
    "CLASSIC_FILTERS",
    "GradcheckResult",
    "LECTURE_FILTERS",
    "LayerParams",
    "LocallyConnected2d",
    "PHOTOS",
    "SGDConfig",
    "SKIMAGE_PREFIX",
    "SeparableApprox",
    "TinyCNN",
    "TrainReport",
    "apply_kernel",
    "avgpool2d_backward",
    "avgpool2d_forward",
    "best_separable",
    "circular_conv2d",
    "col2im",
    "compose_kernels",
    "connection_params",
    "conv2d_backward",
    "conv2d_backward_loop",
    "conv2d_forward",
    "conv2d_forward_loop",
    "conv_matrix",
    "conv_output_size",
    "conv_transpose2d_backward",
    "conv_transpose2d_forward",
    "equivariance_error",
    "filter2d",
    "filter_bank",
    "filter_responses",
    "gabor_bank",
    "gabor_kernel",
    "gaussian_kernel",
    "gaussian_pyramid",
    "gradcheck",
    "im2col",
    "image_stem",
    "kernel_rank",
    "laplacian_pyramid",
    "linear_backward",
    "linear_forward",
    "load_digits_splits",
    "load_image",
    "log_kernel",
    "maxpool2d_backward",
    "maxpool2d_forward",
    "numerical_gradient",
    "parse_kernel",
    "reconstruct_laplacian",
    "relu_backward",
    "relu_forward",
    "separable_multiplications",
    "shift",
    "sigmoid_backward",
    "sigmoid_forward",
    "softmax",
    "softmax_cross_entropy",
    "tanh_backward",
    "tanh_forward",
    "train_digits",
]
