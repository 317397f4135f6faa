"""Captioning: the scene grammar, BLEU-4 against hand-computed values, Show and Tell's decoding (beam
search never worse than greedy by the model's own likelihood), and a run through the engine whose
captions `cnnlab predict` prints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnnlab import create_model, model_info
from cnnlab.data.canvas import CAPTION_LENGTH, END, START, VOCABULARY, caption_words, decode_caption, encode_caption
from cnnlab.errors import ConfigError
from cnnlab.training.captioning import CaptioningTask, corpus_bleu
from cnnlab.training.tasks import get_task

pytest.importorskip("nltk", reason="pip install 'cnnlab[captioning]'")

SMALL = dict(n_train=24, n_val=8, n_test=8)


def _rows(*objs):
    """Box rows of 28x28-patch digits: (label, x0, y0) each, 20x20 boxes, padded to 3 rows."""
    rows = [[d, x, y, x + 20, y + 20] for d, x, y in objs]
    return np.array(rows + [[-1] * 5] * (3 - len(rows)))


@pytest.mark.parametrize("objs, caption", [
    ([(3, 5, 5)], "a 3"),
    ([(7, 40, 10), (3, 5, 12)], "a 3 left of a 7"),  # dx 35 > dy 2: the left one first
    ([(7, 10, 40), (3, 12, 2)], "a 3 above a 7"),  # dy 38 > dx 2: the upper one first
    ([(5, 0, 0), (5, 30, 5)], "two 5s side by side"),
    ([(5, 0, 0), (5, 3, 30)], "two 5s one above the other"),
    ([(1, 40, 0), (9, 0, 30), (4, 20, 10)], "a 9 , a 4 and a 1 from left to right"),
])
def test_captions_follow_the_grammar(objs, caption):
    assert " ".join(caption_words(_rows(*objs))) == caption
    ids = encode_caption(caption.split())
    assert len(ids) == CAPTION_LENGTH and ids[0] == START and END in ids
    assert decode_caption(ids) == caption


def test_bleu4_equals_hand_computed_values():
    ref = "a 3 left of a 7"
    assert corpus_bleu([ref], [ref]) == pytest.approx(1.0)
    # one wrong digit: clipped n-gram precisions 5/6, 4/5, 3/4, 2/3; no brevity penalty
    assert corpus_bleu(["a 3 left of a 1"], [ref]) == pytest.approx((5 / 6 * 4 / 5 * 3 / 4 * 2 / 3) ** 0.25)
    # a prefix of 5 words: every precision 1, brevity penalty exp(1 - 6/5)
    assert corpus_bleu(["a 3 left of a"], [ref]) == pytest.approx(np.exp(1 - 6 / 5))
    # corpus level: the counts add up over captions before the ratios (not a mean of sentence scores)
    two = corpus_bleu(["a 3 left of a 1", ref], [ref, ref])
    assert two == pytest.approx((11 / 12 * 9 / 10 * 7 / 8 * 5 / 6) ** 0.25)
    assert corpus_bleu(["a 3"], [ref]) == pytest.approx(0.0, abs=1e-100)  # no 4-gram: NLTK's ~1e-155


def _logprob(model, x, captions):
    """Sum of the log-probabilities of each caption's words after <start>, up to and with <end>."""
    logits = model.forward_train(x, captions)
    logp = F.log_softmax(logits.float(), -1).gather(2, captions[:, 1:].unsqueeze(-1)).squeeze(-1)
    return (logp * (captions[:, 1:] != 0)).sum(1)


def test_beam_search_never_scores_below_greedy_and_width_one_is_greedy():
    torch.manual_seed(0)
    model = create_model("show_and_tell_digits", backbone_width=0.25, max_length=8).eval()
    x = torch.randn(6, 1, 64, 64)
    with torch.no_grad():
        greedy, beam1, beam4 = model(x), model.beam_search(x, beam_size=1), model.beam_search(x, beam_size=4)
        assert torch.equal(greedy, beam1)
        assert (_logprob(model, x, beam4) >= _logprob(model, x, greedy) - 1e-4).all()
    assert greedy.shape == (6, 8) and (greedy[:, 0] == START).all()


def test_registered_model_and_task_and_bad_config():
    assert model_info("show_and_tell_digits").task == "captioning"
    assert model_info("show_and_tell_digits").num_classes == len(VOCABULARY)
    assert isinstance(get_task("captioning"), CaptioningTask)
    with pytest.raises(ConfigError, match="beam_size"):
        get_task("captioning", beam_size=0)
    with pytest.raises(ConfigError, match="hidden"):
        create_model("show_and_tell_digits", hidden=0)


def test_teacher_forcing_reads_the_batch_captions():
    """The Trainer hands the targets to the forward pass: the captioner's logits predict word t+1 of
    the caption it was given, and a forward pass without captions is refused."""
    task = CaptioningTask()
    model = create_model("show_and_tell_digits", backbone_width=0.25)
    with pytest.raises(ConfigError, match="needs the batch's captions"):
        task.forward_train(model, torch.zeros(2, 1, 64, 64))
    y = torch.zeros(2, 6, dtype=torch.long)
    assert task.forward_train(model, torch.zeros(2, 1, 64, 64), y).shape[:2] == (2, 5)


def test_a_cli_run_selects_on_val_bleu_and_predict_prints_captions(tmp_path, capsys):
    from PIL import Image

    from cnnlab.cli import main
    from cnnlab.data.canvas import load_scenes

    out = tmp_path / "run"
    sets = [a for k, v in SMALL.items() for a in ("--data-set", f"{k}={v}")]
    assert main(["train", "show_and_tell_digits", "--data", "mnist-captions", *sets, "--epochs", "1", "--threads",
                 "1", "--model-set", "backbone_width=0.25", "--out", str(out), "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["selected_on"] == "val_bleu4 (max)" and 0.0 <= results["test_bleu4"] <= 1.0
    image = tmp_path / "scene.png"
    Image.fromarray(load_scenes(**SMALL)["test"][0][0, 0].numpy()).save(image)
    capsys.readouterr()
    assert main(["predict", str(image), "--run", str(out), "--format", "json", "--beam-size", "2"]) == 0
    got = json.loads(capsys.readouterr().out)["predictions"][0]
    assert got["beam_size"] == 2 and set(got["greedy"].split()) <= set(VOCABULARY)
