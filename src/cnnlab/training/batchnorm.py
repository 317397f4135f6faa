"""Re-estimating batch-norm running statistics for the network that is evaluated.

A network whose training forward differs from its evaluation forward in what reaches a batch-norm
layer collects running statistics that do not describe what the layer reads at test time. FractalNet
with drop-path (Larsson et al. 2017) is the case in the zoo: a join outputs the mean of its surviving
inputs, and the variance of a mean of k partly independent columns falls with k, so the statistics
gathered while half of the batches run one column alone (global drop-path) and the others drop 15% of
the join inputs (local) over-estimate the variance of the all-column joins seen at test time (by 1.3-1.8x at
every layer reading a join in a 4-block net trained 3 epochs on mnist-5k); the evaluation-mode
network then shrinks its activations at every such layer and the error compounds with depth. The
authors' Caffe code has the same mismatch (its joins and global drop-path are per mini-batch too) but
averages over ~1,000 iterations (Caffe's ``moving_average_fraction`` 0.999), where PyTorch's default
momentum 0.1 keeps ~10 batches, so the statistics also depend on the last few random drop patterns.

The standard remedy (as for stochastic weight averaging, ``torch.optim.swa_utils.update_bn``; Li et
al., "Understanding the disharmony between dropout and batch normalization", CVPR 2019) is one pass
over training images with the *evaluation* forward and batch norm averaging the batch statistics
cumulatively. Unlike ``update_bn``, which runs the model in training mode (drop-path would stay on),
here every module is in eval mode except the batch-norm layers.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from cnnlab.errors import ConfigError

__all__ = ["recalibrate_batchnorm"]

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module,
    x: Tensor,
    *,
    forward: Callable[[Tensor], Tensor] | None = None,
    batch_size: int = 256,
) -> nn.Module:
    """Replace the running mean/variance of every batch-norm layer of ``model`` by their exact average
    over ``x`` (training images; never the test split), computed with the evaluation forward.

    ``forward`` (default ``model``) is what is evaluated afterwards, e.g. one FractalNet column
    (``lambda x: model.forward_column(x, c)``): its statistics are what it will read. Layers the
    forward does not reach keep their statistics. Weights are untouched; ``model`` is left in eval
    mode and returned. Batches run on the model's device.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"recalibrate_batchnorm: batch_size must be a positive integer, got {batch_size!r}")
    if len(x) == 0:
        raise ConfigError("recalibrate_batchnorm: no images to estimate the statistics from")
    layers = [m for m in model.modules() if isinstance(m, _BN) and m.track_running_stats]
    if not layers:
        return model.eval()
    device = next(iter(model.parameters()), torch.empty(0)).device
    model.eval()  # drop-path, dropout: off, as at test time
    saved = {}
    for m in layers:
        saved[m] = (m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone(), m.momentum)
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches, not an exponential one
        m.train()  # normalise with (and accumulate) the batch statistics
    run, done = forward or model, False
    try:
        for start in range(0, len(x), batch_size):
            run(x[start : start + batch_size].to(device))
        done = True
    finally:
        for m, (mean, var, count, momentum) in saved.items():
            m.momentum = momentum
            # a layer ``forward`` does not reach keeps what it had; all do if the pass failed
            if not done or int(m.num_batches_tracked) == 0:
                m.running_mean.copy_(mean), m.running_var.copy_(var), m.num_batches_tracked.copy_(count)
        model.eval()
    return model
