"""Image captioning: Show and Tell (Vinyals, Toshev, Bengio & Erhan, "Show and tell: a neural image
caption generator", CVPR 2015).

A CNN encodes the image into a vector that is the LSTM's first input (x_{-1} = W_i CNN(I), §3.1);
then the words, embedded (x_t = W_e S_t), are fed one by one, and the LSTM's output at each step is
a softmax over the vocabulary for the next word. Training maximises the log likelihood of the true
caption with the true previous words as inputs (teacher forcing, §3.1); inference is greedy or a
beam search (§3.1: "BeamSearch ... keep the k best sentences up to time t").

Word indices follow :mod:`cnnlab.data.canvas`'s vocabulary convention: 0 <pad>, 1 <start>, 2 <end>.
``forward(x)`` returns the greedy caption (N, max_length) of word indices (padded after <end>), a
fixed-shape output; :meth:`ShowAndTell.forward_train` gives the teacher-forced logits and
:meth:`ShowAndTell.beam_search` the beam's captions.

Departures from the paper: the encoder is a zoo net's first stages (``fcn_digits``' stages 1-4 at
half width, from scratch) whose 4x4 map is flattened, not average-pooled as GoogLeNet's is, so the
image vector keeps where each digit is ("left of", "above"); the LSTM and the embeddings are 128
wide (the paper: 512); the image code is batch-normalised; no dropout nor ensembling.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.errors import ConfigError
from cnnlab.models.registry import build_config, register_model
from cnnlab.models.zoo.rcnn import truncated_backbone

__all__ = ["ShowAndTellConfig", "ShowAndTell", "show_and_tell_digits", "PAD", "START", "END"]

PAD, START, END = 0, 1, 2  # the first words of every vocabulary it is trained with (cnnlab.data.canvas's)


@dataclass(frozen=True)
class ShowAndTellConfig:
    backbone: str = "fcn_digits"  # a zoo net whose feature_info stages run one after another
    backbone_width: float = 1.0  # 1.0: the stages of a default fcn_digits, whose trained weights load as they are
    reduction: int = 16  # the stride of the stage whose map is the image's code
    image_size: int = 64
    embed: int = 128  # word and image embedding (the paper: 512)
    hidden: int = 128  # LSTM units (the paper: 512)
    max_length: int = 16  # words generated, <start> included, as the data's captions
    beam_size: int = 3  # beam_search()'s default width
    image_every_step: bool = False  # True: the image code also enters with every word (LRCN, Donahue et al. 2015)

    def __post_init__(self) -> None:
        for field in ("reduction", "image_size", "embed", "hidden", "max_length", "beam_size"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4096:
                raise ConfigError(f"show_and_tell: {field} must be an integer in 1..4096, got {value!r}")
        if isinstance(self.backbone_width, bool) or not isinstance(self.backbone_width, (int, float)) or not (
                0.01 <= self.backbone_width <= 16):
            raise ConfigError(f"show_and_tell: backbone_width must be a number in [0.01, 16], got {self.backbone_width!r}")
        if not isinstance(self.image_every_step, bool):
            raise ConfigError(f"show_and_tell: image_every_step must be true or false, got {self.image_every_step!r}")


class ShowAndTell(nn.Module):
    """CNN encoder + LSTM decoder; ``num_classes`` is the vocabulary's size."""

    def __init__(self, cfg: ShowAndTellConfig, *, num_classes: int, in_chans: int) -> None:
        super().__init__()
        if num_classes <= END:
            raise ConfigError(f"show_and_tell: a vocabulary needs <pad>, <start>, <end> and words, got {num_classes}")
        self.cfg, self.vocab_size = cfg, num_classes
        encoder, channels = truncated_backbone(cfg.backbone, in_chans=in_chans, reduction=cfg.reduction,
                                               width=cfg.backbone_width)
        # The stages keep the backbone's own names (stage1, ...), so a trained backbone's weights load
        # into them with ``--weights FILE --no-strict`` (the paper starts from a pretrained CNN, §4.3).
        self.stages = tuple(name for name, _ in encoder.named_children())
        for name, module in encoder.named_children():
            self.add_module(name, module)
        side = cfg.image_size // cfg.reduction
        self.image_embed = nn.Linear(channels * side * side, cfg.embed)  # W_i: the image as the first input
        # Batch normalisation of the image code: without it the code of the flattened map reached
        # |8| on average and saturated the LSTM's gates, and the captions never learnt the digits.
        self.image_norm = nn.BatchNorm1d(cfg.embed)
        self.word_embed = nn.Embedding(num_classes, cfg.embed, padding_idx=PAD)  # W_e
        self.lstm = nn.LSTMCell(cfg.embed * (2 if cfg.image_every_step else 1), cfg.hidden)
        self.logit = nn.Linear(cfg.hidden, num_classes)
        self.feature_info = [dict(module=self.stages[-1], num_chs=channels, reduction=cfg.reduction)]

    def encoder(self, x: Tensor) -> Tensor:
        for name in self.stages:
            x = getattr(self, name)(x)
        return x  # N x C x H/r x W/r

    def encode(self, x: Tensor) -> tuple[tuple[Tensor, Tensor], Tensor]:
        """The LSTM state after it has read the image (x_{-1}): (h, c), each N x hidden; and the image code."""
        code = self.image_norm(self.image_embed(self.encoder(x).flatten(1)))  # N x embed
        first = torch.cat([code, code], 1) if self.cfg.image_every_step else code
        return self.lstm(first), code

    def step(self, words: Tensor, state: tuple[Tensor, Tensor], code: Tensor) -> tuple[Tensor, Tensor]:
        """The LSTM state after reading ``words`` (N,) (and the image code where it enters every step)."""
        x = self.word_embed(words)
        return self.lstm(torch.cat([x, code], 1) if self.cfg.image_every_step else x, state)

    def forward_train(self, x: Tensor, captions: Tensor) -> Tensor:
        """Teacher forcing: logits (N, T - 1, V) of words 1..T-1 of ``captions`` (N, T) given words 0..T-2."""
        state, code = self.encode(x)
        logits = []
        for t in range(captions.shape[1] - 1):
            state = self.step(captions[:, t], state, code)
            logits.append(self.logit(state[0]))
        return torch.stack(logits, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Greedy captions (N, max_length): <start>, then the most likely word at each step; <pad> after <end>."""
        state, code = self.encode(x)
        word = torch.full((x.shape[0],), START, dtype=torch.long, device=x.device)
        done = torch.zeros_like(word, dtype=torch.bool)
        out = [word]
        for _ in range(self.cfg.max_length - 1):
            state = self.step(word, state, code)
            word = self.logit(state[0]).argmax(1).masked_fill(done, PAD)
            done = done | (word == END)
            out.append(word)
        return torch.stack(out, 1)

    @torch.no_grad()
    def beam_search(self, x: Tensor, *, beam_size: int | None = None) -> Tensor:
        """The most likely caption of each image among the ``beam_size`` best kept at every step
        (N, max_length), ranked by total log-probability; a finished caption stays as it is."""
        k = beam_size or self.cfg.beam_size
        n, v, length = x.shape[0], self.vocab_size, self.cfg.max_length
        (h, c), code = self.encode(x)
        h, c, code = h.repeat_interleave(k, 0), c.repeat_interleave(k, 0), code.repeat_interleave(k, 0)  # NK x ...
        seqs = torch.full((n * k, 1), START, dtype=torch.long, device=x.device)
        score = torch.full((n, k), float("-inf"), device=x.device)
        score[:, 0] = 0.0  # one live beam at the start: the k copies would tie
        done = torch.zeros(n * k, dtype=torch.bool, device=x.device)
        for _ in range(length - 1):
            h, c = self.step(seqs[:, -1], (h, c), code)
            logp = F.log_softmax(self.logit(h).float(), -1)  # NK x V
            # a finished beam continues only with <pad>, at no cost
            finished = torch.full_like(logp, float("-inf"))
            finished[:, PAD] = 0.0
            logp = torch.where(done.unsqueeze(1), finished, logp)
            total = (score.view(-1, 1) + logp).view(n, k * v)
            score, flat = total.topk(k, dim=1)  # N x k
            parent = (flat // v + torch.arange(n, device=x.device).unsqueeze(1) * k).flatten()
            word = (flat % v).flatten()
            seqs = torch.cat([seqs[parent], word.unsqueeze(1)], 1)
            h, c, done = h[parent], c[parent], done[parent] | (word == END) | (word == PAD)
        best = score.argmax(1) + torch.arange(n, device=x.device) * k
        return seqs[best]


@register_model(family="captioning", paper="Vinyals et al., 2015", input_size=(1, 64, 64), num_classes=38,
                recipe="show_and_tell",
                departures="encoder: fcn_digits' stages 1-4 at half width from scratch, its 4x4 map flattened "
                "(the paper: ImageNet GoogLeNet, pooled); LSTM and embeddings 128 wide (the paper: 512); "
                "no dropout, no ensemble",
                task="captioning")
def show_and_tell_digits(*, num_classes: int = 38, in_chans: int = 1, **config) -> ShowAndTell:
    """A CPU-sized Show and Tell for ``mnist-captions`` (``num_classes``: the vocabulary's size)."""
    return ShowAndTell(build_config(ShowAndTellConfig, "show_and_tell_digits", config), num_classes=num_classes,
                       in_chans=in_chans)
