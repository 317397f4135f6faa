"""airbench's network (Jordan 2024) and the pieces of its recipe that cnnlab's engine carries: the
whitening layer fitted from the training images, and test-time flips on val and test."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import cnnlab
from cnnlab.data import DataBundle, TensorPair
from cnnlab.training import get_recipe
from cnnlab.training.tasks import ClassificationTask

# airbench94.py (KellerJordan/cifar10-airbench, legacy/airbench94.py): make_net() built on the CPU
# has 1,972,792 parameters; 288 of them are its frozen 24x3x2x2 whitening filters, which cnnlab
# keeps as a buffer, not a parameter.
AIRBENCH94_PARAMS = 1_972_792 - 24 * 3 * 2 * 2


def test_airbench94_has_the_papers_parameter_count() -> None:
    model = cnnlab.create_model("airbench94")
    assert sum(p.numel() for p in model.parameters()) == AIRBENCH94_PARAMS
    assert model.whiten.weight.shape == (24, 3, 2, 2)  # 2 x C x k x k channels
    assert [m["num_chs"] for m in model.feature_info] == [64, 256, 256]


def test_whitening_makes_the_patches_second_moment_the_identity() -> None:
    g = torch.Generator().manual_seed(0)
    # correlated pixels: a smoothed noise image, so whitening has something to undo
    x = F.avg_pool2d(torch.randn(200, 1, 31, 31, generator=g), 4, stride=1)
    model = cnnlab.create_model("airbench_mini")
    assert not bool(model.whiten.fitted)
    model.init_from_data(x)
    assert bool(model.whiten.fitted)
    w = model.whiten.weight
    y = F.conv2d(x, w[: len(w) // 2])  # the positive half: one channel per eigenvector
    moment = torch.einsum("nchw,ndhw->cd", y, y) / (y.shape[0] * y.shape[2] * y.shape[3])
    eps = model.cfg.whiten_eps
    # eigenvalue lambda scaled by 1/sqrt(lambda + eps): the diagonal is lambda/(lambda + eps), just
    # below 1 and falling with lambda (largest first), the off-diagonal 0
    assert torch.allclose(moment, torch.diag(moment.diag()), atol=1e-4)
    d = moment.diag()
    assert torch.all(d > 0.8) and torch.all(d <= 1.0 + 1e-4) and torch.all(d[:-1] >= d[1:] - 1e-4)
    assert torch.equal(w[len(w) // 2 :], -w[: len(w) // 2])
    assert eps == 5e-4


def test_a_fitted_net_keeps_its_whitening() -> None:
    model = cnnlab.create_model("airbench_mini")
    model.init_from_data(torch.randn(50, 1, 28, 28))
    before = model.whiten.weight.clone()
    model.init_from_data(torch.randn(50, 1, 28, 28) * 3)
    assert torch.equal(model.whiten.weight, before)
    copy = cnnlab.create_model("airbench_mini")
    copy.load_state_dict(model.state_dict())
    copy.init_from_data(torch.randn(50, 1, 28, 28))
    assert torch.equal(copy.whiten.weight, before)


def _bundle(n: int = 64) -> DataBundle:
    g = torch.Generator().manual_seed(1)
    pair = lambda: TensorPair(torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g))  # noqa: E731
    return DataBundle(name="synthetic", train=pair(), val=pair(), test=pair(), num_classes=10,
                      input_size=(1, 28, 28), mean=(0.0,), std=(1.0,),
                      class_names=tuple(str(i) for i in range(10)), notes=())


def test_training_fits_the_whitening_from_the_training_images(tmp_path) -> None:
    data = _bundle()
    model = cnnlab.create_model("airbench_mini")
    reference = cnnlab.create_model("airbench_mini")
    reference.init_from_data(data.train.x)
    cnnlab.training.fit(model, data, cnnlab.training.TrainSpec(recipe=get_recipe("airbench_fashion").replace(epochs=1, batch_size=32), max_steps=1), progress=False)
    assert bool(model.whiten.fitted)
    assert torch.allclose(model.whiten.weight, reference.whiten.weight)


def test_flip_tta_scores_the_mean_of_the_two_views_logits() -> None:
    model = cnnlab.create_model("airbench_mini").eval()
    x, y = torch.randn(8, 1, 28, 28), torch.arange(8) % 10
    task = ClassificationTask()
    task.configure(get_recipe("airbench_fashion"))
    assert task.tta == "flip"
    with torch.no_grad():
        logits = (model(x) + model(x.flip(-1))) / 2
        sums = task.eval_sums(model, x, y)
    assert torch.isclose(sums[0], F.cross_entropy(logits, y, reduction="sum").double(), rtol=1e-5)
    assert sums[1] == (logits.argmax(1) == y).sum()
    plain = ClassificationTask()
    plain.configure(get_recipe("lenet"))
    assert plain.tta == "none"
