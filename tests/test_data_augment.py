"""Batch augmentation against torchvision's per-sample functional operations (an outside reference)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from cnnlab.data import augment as A
from cnnlab.data import load_dataset
from cnnlab.errors import ConfigError


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def batch(n: int = 16, c: int = 3, h: int = 8, w: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, c, h, w, generator=gen(seed))


def matching_offsets(x: torch.Tensor, out: torch.Tensor, padding: int, fill) -> list[tuple[int, int]]:
    """For each sample, the one (top, left) where torchvision's pad + crop gives the output."""
    h, w = x.shape[-2:]
    found = []
    for xi, oi in zip(x, out):
        padded = TF.pad(xi, [padding], fill=fill)
        hits = [(t, l) for t in range(2 * padding + 1) for l in range(2 * padding + 1)
                if torch.equal(TF.crop(padded, t, l, h, w), oi)]  # fmt: skip
        assert len(hits) == 1, f"{len(hits)} crops of the padded sample match the output"
        found.append(hits[0])
    return found


@pytest.mark.parametrize("fill", [0.0, (-1.0, -2.0, -3.0)])
def test_random_crop_is_a_per_sample_torchvision_crop(fill) -> None:
    x = batch(32)
    out = A.random_crop(x, 4, gen(1), fill=fill)
    assert out.shape == x.shape
    offsets = matching_offsets(x, out, 4, list(fill) if isinstance(fill, tuple) else fill)
    assert len(set(offsets)) > 10  # per-sample offsets, not one for the whole batch
    assert torch.equal(out, A.random_crop(x, 4, gen(1), fill=fill))  # the generator decides


def test_random_translate_shifts_within_range() -> None:
    x = batch(32, c=1, h=12, w=12)
    out = A.random_translate(x, 2, gen(2))
    offsets = matching_offsets(x, out, 2, 0.0)
    assert {t for t, _ in offsets} == set(range(5)) and {l for _, l in offsets} == set(range(5))


def test_hflip_flips_some_samples() -> None:
    x = batch(64)
    out = A.hflip(x, gen(3))
    flipped = [torch.equal(o, TF.horizontal_flip(xi)) for xi, o in zip(x, out)]
    kept = [torch.equal(o, xi) for xi, o in zip(x, out)]
    assert all(f != k for f, k in zip(flipped, kept))  # each sample is one or the other
    assert 16 < sum(flipped) < 48
    assert torch.equal(A.hflip(x, gen(3), p=1.0), TF.horizontal_flip(x))
    assert torch.equal(A.hflip(x, gen(3), p=0.0), x)


def test_crop_resize_is_rescale_then_crop_as_torchvision() -> None:
    """Scale jittering magnifies the whole image, then crops (Simonyan & Zisserman): the same as
    torchvision's resize of the image by 2 followed by a 16x16 crop, for boxes on the pixel grid."""
    x = batch(4, h=16, w=16)
    corners = [(0, 0), (3, 5), (8, 8), (8, 0)]  # top, left of an 8x8 box, in pixels
    top = torch.tensor([c[0] / 16 for c in corners])
    left = torch.tensor([c[1] / 16 for c in corners])
    half = torch.full((4,), 0.5)
    out = A._crop_resize(x, top, left, half, half, (16, 16))
    big = TF.resize(x, [32, 32], antialias=False)
    for bi, oi, (t, l) in zip(big, out, corners):
        assert torch.allclose(oi, TF.crop(bi, 2 * t, 2 * l, 16, 16), atol=1e-5)


def test_scale_jitter_and_random_resized_crop_shapes() -> None:
    x = batch(8, h=24, w=24)
    assert torch.allclose(A.scale_jitter(x, gen(), scales=(1.0, 1.0)), x, atol=1e-5)  # s = 1: the image
    out = A.scale_jitter(x, gen(), scales=A.VGG_SCALE_JITTER)
    assert out.shape == x.shape and not torch.allclose(out, x)
    assert A.random_resized_crop(x, gen(), size=(16, 16)).shape == (8, 3, 16, 16)


def test_pca_eigen_matches_numpy_and_lighting_follows_it() -> None:
    mix = torch.tensor([[1.0, 0.5, 0.2], [0.0, 1.0, 0.3], [0.0, 0.0, 1.0]])
    x = torch.einsum("ij,njhw->nihw", mix, batch(2000, h=4, w=4))  # correlated channels
    pixel_std = (0.2, 0.3, 0.4)
    vals, vecs = A.pca_eigen(x, std=pixel_std)
    raw = (x * torch.tensor(pixel_std).view(1, 3, 1, 1)).transpose(0, 1).reshape(3, -1).double().numpy()
    ref_vals = np.linalg.eigvalsh(np.cov(raw, bias=True))[::-1]
    assert np.allclose(vals.numpy(), ref_vals, rtol=1e-4)

    lit = A.pca_lighting(x, 0.1, gen(4), eigen=(vals, vecs), pixel_std=pixel_std)
    shift = lit - x
    assert torch.allclose(shift, shift[:, :, :1, :1].expand_as(shift), atol=1e-6)  # one colour shift a sample
    raw_shift = (shift[:, :, 0, 0] * torch.tensor(pixel_std)).double()
    # in the eigenbasis each component is alpha_i * sqrt(lambda_i), alpha ~ N(0, 0.1)
    comps = raw_shift @ vecs.double()
    ratio = comps.std(0) / (0.1 * vals.double().sqrt())
    assert torch.all((ratio > 0.8) & (ratio < 1.2))


def test_tta_views_match_torchvision_ten_crop() -> None:
    x = batch(4, h=32, w=32)
    assert len(A.tta_views(x, "none")) == 1
    flip = A.tta_views(x, "flip")
    assert len(flip) == 2 and torch.equal(flip[1], TF.horizontal_flip(x))
    views = A.tta_views(x, "10crop")
    assert len(views) == 10 and all(v.shape == x.shape for v in views)
    big = TF.resize(x, [37, 37], antialias=False)  # 32 / (224/256) = 36.6 -> 37
    tl, tr, bl, br, centre, *mirrored = TF.ten_crop(big, [32, 32])
    for ours, ref in zip(views, [centre, tl, tr, bl, br]):
        assert torch.allclose(ours, ref, atol=1e-6)
    for ours, ref in zip(views[5:], [centre, tl, tr, bl, br]):  # the reflections of the five patches
        assert torch.allclose(ours, TF.horizontal_flip(ref), atol=1e-6)
    # torchvision crops the mirrored image instead: the same corner views (its mirrored top-left is
    # our mirrored top-right); its mirrored centre sits one pixel off ours when the margin is odd
    m_tl, m_tr, m_bl, m_br, _ = mirrored
    for ours, ref in zip(views[6:], [m_tr, m_tl, m_br, m_bl]):
        assert torch.allclose(ours, ref, atol=1e-6)
    padded = A.tta_views(x, "10crop", pad=4)
    assert torch.equal(padded[0], x) and all(v.shape == x.shape for v in padded)
    with pytest.raises(ConfigError, match="tta"):
        A.tta_views(x, "5crop")


def test_augment_from_a_recipe_like_spec() -> None:
    data = load_dataset("synthetic", shape=(3, 8, 8), n=64, seed=0)
    recipe = SimpleNamespace(name="resnet_cifar", lr=0.1, crop_padding=4, flip=True)  # other fields ignored
    aug = A.Augment(recipe, data=data)
    assert aug.enabled and aug.to_dict()["crop_padding"] == 4 and aug.flip
    assert aug.fill == tuple(-m / s for m, s in zip(data.mean, data.std))  # raw black, as zero padding
    x = data.train.x[:16]
    out = aug(x, gen(5))
    assert out.shape == x.shape and torch.equal(out, aug(x, gen(5)))
    assert not A.Augment({}).enabled and torch.equal(A.Augment({})(x, gen()), x)

    lit = A.Augment({"pca_lighting": 0.1}, data=data)
    assert lit.eigen is not None and lit(x, gen()).shape == x.shape
    vgg = A.Augment(scale_jitter=True, flip=True)
    assert vgg.scale_jitter == A.VGG_SCALE_JITTER
    with pytest.raises(ConfigError, match="256/224"):
        A.Augment(scale_jitter=(256, 512))  # the paper's pixels, not a magnification
    with pytest.raises(ConfigError, match="needs data"):
        A.Augment({"pca_lighting": 0.1})
    with pytest.raises(ConfigError, match="crop_pad"):
        A.Augment(crop_pad=4)
    with pytest.raises(ConfigError, match="crop_padding"):
        A.Augment(crop_padding=-1)
