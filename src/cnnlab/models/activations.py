"""The element-wise non-linearities a zoo family's ``activation`` option may name.

Lecture 000 lists them ("Tanh; Sigmoid: 1/(1+exp(-x)); Rectified linear"), lecture 004 says LeNet
used a "sigmoid or tanh nonlinearity":

- ``"sigmoid"``: the logistic function ``1 / (1 + exp(-x))`` of the back-propagation networks
  (Rumelhart, Hinton & Williams, "Learning representations by back-propagating errors", Nature 1986);
  its outputs lie in (0, 1), centred on 1/2, and its slope is at most 1/4, which is why LeCun et al.
  1998 (Appendix A) prefer a symmetric squashing function;
- ``"tanh"``: ``tanh(x)``, the symmetric one;
- ``"relu"``: ``max(0, x)`` (Nair & Hinton, ICML 2010; Krizhevsky et al. 2012 §3.1: "several times
  faster" to train than with tanh).

This module imports nothing from cnnlab but the errors, so any family can use it.
"""

from __future__ import annotations

from torch import nn

from cnnlab.errors import ConfigError

__all__ = ["ACTIVATIONS", "make_activation", "check_activation"]

# name -> module class; a fresh instance per layer, never in place (hooks see each layer's own output).
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


def check_activation(owner: str, value: object, *, extra: tuple[str, ...] = ()) -> None:
    """Raise :class:`ConfigError` naming ``owner`` (``"LeNetConfig.activation"``) unless ``value`` is
    one of ``extra`` (a family's own, such as LeNet's ``"scaled_tanh"``) or of :data:`ACTIVATIONS`."""
    valid = (*extra, *ACTIVATIONS)
    if value not in valid:
        raise ConfigError(f"{owner} must be one of {', '.join(repr(v) for v in valid)}, got {value!r}")


def make_activation(name: str) -> nn.Module:
    """A new module for the activation ``name`` (one of :data:`ACTIVATIONS`)."""
    check_activation("activation", name)
    return ACTIVATIONS[name]()
