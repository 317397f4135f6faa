"""The Task contract: classification loss and metrics against hand-computed values, the registry."""

from __future__ import annotations

import math

import pytest
import torch

from cnnlab.errors import CnnlabError
from cnnlab.models.base import ModelOutput
from cnnlab.models.registry import model_info
from cnnlab.training.tasks import ClassificationTask, Task, get_task, list_tasks, register_task


def _ce(logits: list[float], label: int, smoothing: float = 0.0) -> float:
    """Cross-entropy by the formula: -(1-e) log p_y - e/K sum_k log p_k."""
    z = max(logits)
    log_norm = z + math.log(sum(math.exp(v - z) for v in logits))
    logp = [v - log_norm for v in logits]
    k = len(logits)
    return -(1 - smoothing) * logp[label] - smoothing / k * sum(logp)


def test_classification_loss_with_aux_and_smoothing_matches_the_formula():
    task = get_task("classification", label_smoothing=0.1)
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
    aux = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    y = torch.tensor([0, 1])
    loss, sums = task.loss(ModelOutput(logits, (aux,), (0.3,)), torch.zeros(2, 1), y)
    expect = sum(_ce(logits[i].tolist(), int(y[i]), 0.1) + 0.3 * _ce(aux[i].tolist(), int(y[i]), 0.1)
                 for i in range(2)) / 2
    assert float(loss) == pytest.approx(expect, rel=1e-6)
    # sums: loss * n, top-1 hits (sample 0 only), top-5 hits (3 classes: all), count
    assert sums.dtype == torch.float64
    assert sums.tolist() == pytest.approx([2 * expect, 1.0, 2.0, 2.0], rel=1e-6)


def test_eval_sums_and_summarize_top1_top5():
    task = ClassificationTask()
    logits = torch.zeros(4, 10)
    for i, order in enumerate([[3], [5, 3], [9, 8, 7, 6, 5, 3], [2]]):
        for rank, c in enumerate(order):
            logits[i, c] = 10.0 - rank  # class order[0] first, order[1] second, ...
    y = torch.tensor([3, 3, 3, 3])
    sums = task.eval_sums(lambda x: logits, torch.zeros(4, 1), y)  # model: any callable
    metrics = task.summarize(sums)
    # sample 0: top-1; sample 1: rank 2 (top-5); sample 2: rank 6 (neither); sample 3: 3 ties at 0 -> not top-1
    assert metrics["acc"] == pytest.approx(0.25)
    assert metrics["top5"] == pytest.approx(0.5)
    assert metrics["loss"] == pytest.approx(sum(_ce(logits[i].tolist(), 3) for i in range(4)) / 4, rel=1e-6)


def test_better_respects_mode_and_nan():
    task = ClassificationTask()
    assert task.better(0.5, None) and task.better(0.6, 0.5) and not task.better(0.5, 0.5)
    assert not task.better(float("nan"), None)
    task.mode = "min"
    assert task.better(0.4, 0.5) and not task.better(0.6, 0.5)


def test_registry():
    assert "classification" in list_tasks()
    assert isinstance(get_task("classification"), ClassificationTask)
    with pytest.raises(CnnlabError, match="unknown task 'clasification'.*did you mean classification"):
        get_task("clasification")
    with pytest.raises(CnnlabError, match="label_smoothing"):
        get_task("classification", label_smoothing=1.5)
    with pytest.raises(CnnlabError, match="task 'classification'"):
        get_task("classification", nonsense=1)

    @register_task("test-dummy")
    class Dummy(Task):  # the three abstract methods, doing nothing useful
        name = "test-dummy"

        def loss(self, out, x, y):
            raise AssertionError("not called")

        eval_sums = summarize = loss

    assert isinstance(get_task("test-dummy"), Dummy)
    assert model_info("lenet5").task == "classification"
