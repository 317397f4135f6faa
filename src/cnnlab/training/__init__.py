"""Training: recipes as data, schedules as functions of the step, the engine (``fit``/``evaluate``),
checkpoints, and runs from a specification (what ``cnnlab train`` calls). One :class:`TrainSpec`
describes a run for all of them.

    from cnnlab.training import TrainSpec, fit, train
    result = fit(model, bundle, TrainSpec(recipe="resnet_cifar", epochs=10))
    result = train(TrainSpec(model="resnet20", data="fashion-mnist", epochs=10))  # into runs/
"""

from cnnlab.training.batchnorm import recalibrate_batchnorm
from cnnlab.training.engine import FitResult, evaluate, evaluate_mc_dropout, fit
from cnnlab.training.recipes import Recipe, get_recipe, list_recipes
from cnnlab.training.run import spec_from_config, train
from cnnlab.training.spec import TrainSpec
from cnnlab.training import generative  # noqa: E402,F401  (registers the "reconstruction" and "vae" tasks)
from cnnlab.training import segmentation  # noqa: F401,E402  (registers the "segmentation" task)
from cnnlab.training import gan  # noqa: F401,E402  (registers the "gan" task)
from cnnlab.training import detection  # noqa: F401,E402  (the "detection" task; pycocotools loads when it scores)
from cnnlab.training import captioning  # noqa: F401,E402  (the "captioning" task; nltk loads when it scores)

__all__ = [
    "FitResult",
    "Recipe",
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
