"""Every architecture family of the lectures; importing this package registers them all."""

from cnnlab.models.zoo import lenet  # noqa: F401
