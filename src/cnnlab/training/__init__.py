"""Training: recipes as data, schedules as functions of the step, the engine (``fit``/``evaluate``),
checkpoints, and runs from a specification (what ``cnnlab train`` calls).

    from cnnlab.training import fit, evaluate, get_recipe
    result = fit(model, bundle, "resnet_cifar", epochs=10)
    # or, the options grouped:
    result = fit(model, bundle, RunSpec(get_recipe("resnet_cifar"), RunOptions(epochs=10)))
"""

from cnnlab.training.batchnorm import recalibrate_batchnorm
from cnnlab.training.engine import FitResult, RunSpec, evaluate, evaluate_mc_dropout, fit
from cnnlab.training.recipes import Recipe, get_recipe, list_recipes
from cnnlab.training.run import TrainSpec, spec_from_config, train
from cnnlab.training.trainer import RunOptions
from cnnlab.training import generative  # noqa: E402,F401  (registers the "reconstruction" and "vae" tasks)
from cnnlab.training import segmentation  # noqa: F401,E402  (registers the "segmentation" task)

__all__ = [
    "FitResult",
    "Recipe",
    "RunOptions",
    "RunSpec",
    "TrainSpec",
    "evaluate",
    "evaluate_mc_dropout",
    "fit",
    "get_recipe",
    "list_recipes",
    "recalibrate_batchnorm",
    "spec_from_config",
    "train",
]
