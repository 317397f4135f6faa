"""Image captioning as a :class:`~cnnlab.training.tasks.Task`: Show and Tell's loss (the negative log
likelihood of the true caption's words, teacher-forced, <pad> not counted) and corpus BLEU-4 of the
decoded captions as the selection metric.

Targets are (N, T) word indices ``<start> words <end> <pad>...`` (``mnist-captions``); the data's
class names are the vocabulary. BLEU-4 (Papineni et al. 2002: geometric mean of the clipped 1- to
4-gram precisions, times the brevity penalty, over the whole split) is computed by NLTK's
``corpus_bleu`` (the ``captioning`` extra) with one reference per image, on the words between
<start> and <end>. Decoding is greedy (``beam_size`` 1, the default) or a beam search.

Teacher forcing feeds the true words to the decoder: the Trainer hands the batch's captions to
:meth:`CaptioningTask.forward_train` with the images.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.data.bundle import DataBundle
from cnnlab.data.canvas import PAD, decode_caption
from cnnlab.errors import ConfigError
from cnnlab.training.tasks import Task, register_task

__all__ = ["CaptioningTask", "corpus_bleu", "decode"]


def corpus_bleu(candidates: list[str], references: list[str], *, n_gram: int = 4) -> float:
    """Corpus BLEU-``n_gram`` of ``candidates`` against one reference each (NLTK's ``corpus_bleu``,
    uniform weights, no smoothing: ~0 (NLTK returns about 1e-155) when some n-gram order has no
    match), in [0, 1]. Words are
    separated by spaces."""
    try:
        import warnings

        from nltk.translate.bleu_score import corpus_bleu as nltk_corpus_bleu
    except ImportError as err:
        raise ConfigError(f"captioning's BLEU needs nltk ({err}); pip install 'cnnlab[captioning]'") from None
    with warnings.catch_warnings():  # NLTK warns when an n-gram order has no match: the score is then 0
        warnings.simplefilter("ignore")
        return float(nltk_corpus_bleu([[r.split()] for r in references], [c.split() for c in candidates],
                                      weights=(1.0 / n_gram,) * n_gram))


def decode(model: nn.Module, x: Tensor, *, beam_size: int = 1) -> Tensor:
    """Captions (N, T) of word indices: greedy (``model(x)``) or ``model.beam_search``."""
    return model(x) if beam_size == 1 else model.beam_search(x, beam_size=beam_size)


@register_task("captioning")
class CaptioningTask(Task):
    """Teacher-forced word cross-entropy; metrics ``loss`` (per word), ``exact`` (captions decoded
    exactly right) and ``bleu4``."""

    name = "captioning"
    monitor = "bleu4"
    mode = "max"
    stat_names = ("loss", "words", "exact", "captions", "bleu4", "bleu_captions")

    def __init__(self, *, beam_size: int = 1) -> None:
        if isinstance(beam_size, bool) or not isinstance(beam_size, int) or not 1 <= beam_size <= 64:
            raise ConfigError(f"captioning: beam_size must be an integer in 1..64, got {beam_size!r}")
        self.beam_size = beam_size
        self.vocabulary: tuple[str, ...] = ()

    def setup(self, data: DataBundle) -> None:
        corpus_bleu(["a"], ["a"], n_gram=1)  # the metric's package, checked before any training
        if data.train.y.ndim != 2:
            raise ConfigError(f"captioning needs (N, T) word indices as targets (mnist-captions); {data.name} has "
                              f"targets of shape {tuple(data.train.y.shape)}")
        self.vocabulary = tuple(data.class_names)

    def check(self, model: nn.Module, data: DataBundle) -> None:
        out, name = self.probe(model, data)
        if not callable(getattr(model, "beam_search", None)) or out.ndim != 2 or out.dtype != torch.long:
            raise ConfigError(f"{name} is not a captioner (forward gives {tuple(out.shape)} {out.dtype}, "
                              "not (N, T) word indices)")

    def augment_batch(self, augment, x: Tensor, y: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        return x, y  # no image augmentation: a shift or mirror would change "left of"

    def forward_train(self, model: nn.Module, x: Tensor, y: Tensor | None = None) -> Any:
        if y is None or len(y) != len(x):
            raise ConfigError("captioning: the training forward pass needs the batch's captions (teacher forcing)")
        return model.forward_train(x, y)

    def _word_loss(self, logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """(summed cross-entropy of words 1.. of ``y``, number of those words that are not <pad>)."""
        target = y[:, 1:]
        loss = F.cross_entropy(logits.float().flatten(0, 1), target.flatten(), ignore_index=PAD, reduction="sum")
        return loss, (target != PAD).sum()

    def _sums(self, loss_sum: Tensor, words: Tensor, exact: Tensor, n: int) -> Tensor:
        z = torch.zeros((), dtype=torch.float64, device=loss_sum.device)
        return torch.stack([loss_sum.detach().double(), words.double(), exact.double(),
                            torch.tensor(float(n), dtype=torch.float64, device=loss_sum.device), z, z])

    def loss(self, out: Any, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        loss_sum, words = self._word_loss(out, y)
        loss = loss_sum / words.clamp_min(1)
        exact = torch.zeros((), device=y.device)  # not decoded in training
        return loss, self._sums(loss_sum, words, exact, 0)

    def _exact(self, pred: Tensor, y: Tensor) -> Tensor:
        length = min(pred.shape[1], y.shape[1])
        return ((pred[:, :length] == y[:, :length]).all(1) & (y[:, length:] == PAD).all(1)).sum()

    def eval_sums(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        loss_sum, words = self._word_loss(model.forward_train(x, y), y)
        pred = decode(model, x, beam_size=self.beam_size)
        return self._sums(loss_sum, words, self._exact(pred, y), len(y))

    @torch.no_grad()
    def split_sums(self, model: nn.Module, x_all: Tensor, y_all: Tensor, *, batch_size: int, device: torch.device,
                   autocast_dtype: torch.dtype | None, memory_format: torch.memory_format) -> Tensor:
        """Loss and exact matches summed over the split, and its BLEU-4 (times its captions)."""
        sums, texts, refs = self.zeros(device), [], []
        for start in range(0, len(y_all), batch_size):
            x = x_all[start : start + batch_size].to(device).contiguous(memory_format=memory_format)
            y = y_all[start : start + batch_size].to(device)
            with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
                loss_sum, words = self._word_loss(model.forward_train(x, y), y)
                pred = decode(model, x, beam_size=self.beam_size)
            sums += self._sums(loss_sum, words, self._exact(pred, y), len(y))
            texts += [decode_caption(p, self.vocabulary) for p in pred.cpu()]
            refs += [decode_caption(t, self.vocabulary) for t in y.cpu()]
        if texts:
            sums[4] += corpus_bleu(texts, refs) * len(texts)
            sums[5] += len(texts)
        return sums

    def summarize(self, sums: Tensor) -> dict[str, float]:
        loss, words, exact, n, bleu, bleu_n = (float(v) for v in sums.detach().cpu())
        out = {"loss": loss / max(words, 1.0)}
        if n > 0:  # val and test: decoded
            out["exact"] = exact / n
        if bleu_n > 0:
            out["bleu4"] = bleu / bleu_n
        return out

    def describe(self) -> dict:
        return {**super().describe(), "beam_size": self.beam_size}
