"""Plots of the experiments, drawn from their results dicts (the content of ``results.json``) alone.

Each ``plot_<experiment>(results, out_dir) -> list[Plot]`` writes PNGs into ``out_dir`` and returns
their file names with captions for the report. Figures are built with ``matplotlib.figure.Figure``
(no pyplot, no global backend state), so plotting is safe in any process.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cnnlab import atomic
from cnnlab.viz.report import Plot

__all__ = [
    "save_figure",
    "plot_degradation",
    "plot_lesion",
    "plot_ablation",
    "plot_probes",
    "plot_invariance",
]

_DPI = 110


def save_figure(fig: Figure, out_dir: Path, file: str) -> str:
    """Write ``fig`` as ``out_dir/file`` (PNG) and return the file name, after :func:`tidy_axes`."""
    tidy_axes(fig)
    fig.tight_layout()
    atomic.save_figure(fig, Path(out_dir) / file, dpi=_DPI)
    return file


def tidy_axes(fig: Figure) -> None:
    """What every experiment plot needs whatever the scale: epochs as integer ticks, a line of one or
    two points drawn as markers, percentages kept within 0-100 (error bars of a mean near a bound
    would otherwise cross it), bars compared from 0, and a word in a panel that has nothing to show."""
    from matplotlib.container import BarContainer
    from matplotlib.ticker import MaxNLocator

    for ax in fig.axes:
        if not ax.get_visible() or ax.get_label() == "<colorbar>":
            continue
        lines = [ln for ln in ax.get_lines() if len(ln.get_xdata()) > 0]
        for ln in lines:
            if (ln.get_marker() in (None, "None", "", " ") and len(ln.get_xdata()) <= 2
                    and ln.get_transform() == ax.transData):  # not axhline/axvline: reference lines, no markers
                ln.set_marker("o")
        if "epoch" in ax.get_xlabel().lower():
            xs = sorted({round(float(x)) for ln in lines for x in ln.get_xdata() if x == x})
            if 0 < len(xs) <= 12:  # few epochs: one tick each, and room around a single point
                ax.set_xticks(xs)
                ax.set_xlim(xs[0] - 0.5, xs[-1] + 0.5)
            else:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if "%" in ax.get_ylabel() and ax.get_yscale() == "linear":
            lo, hi = ax.get_ylim()
            ax.set_ylim(max(lo, -2.0), min(hi, 102.0))
        if any(isinstance(c, BarContainer) and getattr(c, "orientation", "vertical") != "horizontal"
               for c in ax.containers) and ax.get_yscale() == "linear":  # barh: its y axis holds names, not values
            lo, hi = ax.get_ylim()
            if lo > 0 or lo < 0 <= min((b.get_height() for c in ax.containers if isinstance(c, BarContainer)
                                        for b in c), default=0):
                ax.set_ylim(0, hi)
        if not _has_finite_data(ax):
            ax.text(0.5, 0.5, "nothing measured at this scale", transform=ax.transAxes, ha="center", va="center",
                    color="0.4")


def _has_finite_data(ax) -> bool:  # noqa: ANN001
    import numpy as np

    for ln in ax.get_lines():
        y = np.asarray(ln.get_ydata(), dtype=float)
        if y.size and np.isfinite(y).any() and ln.get_linestyle() != ":":
            return True
    return bool(ax.patches or ax.collections or ax.images or ax.texts)


def _over_seeds(results: Mapping[str, Any]) -> str:
    """", means over N seeds" where the results hold several seeds' runs, else nothing."""
    seeds = results.get("seeds")
    return f", means over {len(seeds)} seeds" if isinstance(seeds, list) and len(seeds) > 1 else ""


def _pct(values: Sequence[float | None]) -> list[float]:
    return [float("nan") if v is None else 100.0 * v for v in values]


# ---------------------------------------------------------------------------------------------
# degradation (He et al. 2016, Fig. 6)
# ---------------------------------------------------------------------------------------------


def plot_degradation(results: Mapping[str, Any], out_dir: Path) -> list[Plot]:
    """One plot per family (plain, residual): training error (thin, dashed) and test error (bold)
    per epoch for each depth, as in He et al.'s Fig. 6."""
    plots = []
    models = results["models"]
    for family, title in (("plain", "Plain networks"), ("residual", "Residual networks")):
        members = [m for m in models.values() if m["residual"] == (family == "residual")]
        if not members:
            continue
        fig = Figure(figsize=(6.0, 4.2))
        ax = fig.add_subplot()
        for i, m in enumerate(sorted(members, key=lambda m: m["depth"])):
            color = f"C{i}"
            epochs = list(range(1, len(m["train_error"]) + 1))
            ax.plot(epochs, _pct(m["train_error"]), "--", color=color, lw=1.2, label=f"{m['label']} train")
            ax.plot(epochs, _pct(m["test_error"]), "-", color=color, lw=2.4, label=f"{m['label']} test")
        ax.set(xlabel="epoch", ylabel="error (%)", title=f"{title} on {results['data']} ({results['scale']} scale)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
        file = save_figure(fig, out_dir, f"degradation_{family}.png")
        caption = f"{title}: training error (dashed) and test error (bold) per epoch" + _over_seeds(results) + "."
        plots.append(Plot(file=file, caption=caption))

    # The four networks side by side: training error on the left, test error on the right.
    fig = Figure(figsize=(10.0, 4.0))
    panels = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    ordered = sorted(models.values(), key=lambda m: (m["residual"], m["depth"]))
    for ax, key, title in zip(panels, ("train_error", "test_error"), ("(a) training error", "(b) test error")):
        for m in ordered:
            style = "-" if m["residual"] else "--"
            epochs = list(range(1, len(m[key]) + 1))
            ax.plot(epochs, _pct(m[key]), style, lw=2.6 if m["depth"] > 20 else 1.4, label=m["label"])
        ax.set(xlabel="epoch", ylabel="error (%)", title=title)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    plots.append(Plot(save_figure(fig, out_dir, "degradation_all.png"),
                      "All four networks: (a) training error and (b) test error per epoch (plain dashed, "
                      "residual solid, deeper nets thicker)" + _over_seeds(results) + "."))
    return plots


# ---------------------------------------------------------------------------------------------
# lesion (Veit et al. 2016, Figs. 3, 5a, 6)
# ---------------------------------------------------------------------------------------------


def plot_lesion(results: Mapping[str, Any], out_dir: Path) -> list[Plot]:
    res, plain = results["residual"], results["plain"]
    chance = results["chance_acc"]
    plots = []

    # Fig. 3: accuracy after deleting each block in turn.
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.add_subplot()
    rows = res["delete_one"]
    xs = list(range(1, len(rows) + 1))
    ax.plot(xs, _pct([r["acc"] for r in rows]), "o-", color="C0", label=f"{res['label']}: one block deleted")
    down = [(x, r) for x, r in zip(xs, rows) if r["downsampling"]]
    if down:
        ax.plot([x for x, _ in down], _pct([r["acc"] for _, r in down]), "s", color="C3", ms=9, mfc="none",
                mew=2, label="downsampling block")
    ax.axhline(100 * res["baseline_acc"], color="C0", ls=":", label=f"{res['label']} intact")
    prow = plain["delete_one"]
    if prow:
        # Blocks that could not be deleted (shape-changing) leave a gap in the line.
        acc_at = {p["position"]: p["acc"] for p in prow}
        px = list(range(1, max([*acc_at, *(s["position"] for s in plain.get("skipped", []))]) + 1))
        ax.plot(px, _pct([acc_at.get(x) for x in px]), "^-", color="C1", label=f"{plain['label']}: one block deleted")
    ax.axhline(100 * plain["baseline_acc"], color="C1", ls=":", label=f"{plain['label']} intact")
    ax.axhline(100 * chance, color="gray", ls="--", lw=1, label="chance")
    ax.set(xlabel="deleted block (position in the network)", ylabel="test accuracy (%)", ylim=(0, 102),
           title="Deleting one block at test time")
    ax.set_xticks(xs)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center right")
    plots.append(Plot(save_figure(fig, out_dir, "lesion_delete_one.png"),
                      "Test accuracy after deleting one block (residual: keep the shortcut; plain: "
                      "identity, only for blocks that keep the shape)" + _over_seeds(results)
                      + ". Squares mark downsampling blocks."))

    # Fig. 5a: deleting k random blocks.
    fig = Figure(figsize=(6.0, 4.2))
    ax = fig.add_subplot()
    dk = res["delete_k"]
    ks = [0] + [r["k"] for r in dk]
    mean = [res["baseline_acc"]] + [r["mean_acc"] for r in dk]
    std = [0.0] + [r["std_acc"] for r in dk]
    ax.errorbar(ks, _pct(mean), yerr=_pct(std), fmt="o-", capsize=3, color="C0")
    ax.axhline(100 * chance, color="gray", ls="--", lw=1, label="chance")
    ax.set(xlabel="number of residual blocks deleted (k)", ylabel="test accuracy (%)", ylim=(0, 102),
           title=f"{res['label']}: deleting k random blocks")
    ax.grid(alpha=0.3)
    ax.legend()
    spread = "seeds (of each seed's mean over random draws)" if len(results.get("seeds", [])) > 1 else "random draws"
    plots.append(Plot(save_figure(fig, out_dir, "lesion_delete_k.png"),
                      f"Mean test accuracy (and standard deviation over {spread}) after deleting k "
                      "random residual blocks."))

    # Fig. 6: path-length distribution and gradient per path length.
    pl = res["path_lengths"]
    k = [r["k"] for r in pl]
    fig = Figure(figsize=(11.0, 3.8))
    a1, a2, a3 = fig.add_subplot(1, 3, 1), fig.add_subplot(1, 3, 2), fig.add_subplot(1, 3, 3)
    a1.bar(k, [r["paths"] for r in pl], color="C0")
    a1.set(xlabel="path length (residual branches on the path)", ylabel="number of paths",
           title=f"(a) paths: binomial, n = {res['num_blocks']}")
    measured = [r for r in pl if r.get("mean_grad_norm") is not None]
    a2.errorbar([r["k"] for r in measured], [r["mean_grad_norm"] for r in measured],
                yerr=[r["std_grad_norm"] for r in measured], fmt="o-", capsize=2, color="C3")
    a2.set_yscale("log")
    a2.set(xlabel="path length", ylabel="gradient norm at first block", title="(b) gradient per path")
    a3.bar([r["k"] for r in measured], [r["paths"] * r["mean_grad_norm"] for r in measured], color="C2")
    a3.set(xlabel="path length", ylabel="paths x gradient norm", title="(c) total gradient by length")
    for a in (a1, a2, a3):
        a.grid(alpha=0.3)
    plots.append(Plot(save_figure(fig, out_dir, "lesion_path_lengths.png"),
                      "(a) Number of paths of each length, C(n, k); (b) gradient magnitude reaching the "
                      "first block through paths of length k (mean and spread over sampled paths, log "
                      "scale); (c) their product: how much gradient paths of each length carry in all"
                      + _over_seeds(results) + "."))
    if results.get("reorder") or results.get("residual_norms"):
        plots.append(_plot_lesion_reorder_norms(results, out_dir))
    return plots


def _plot_lesion_reorder_norms(results: Mapping[str, Any], out_dir: Path) -> Plot:
    """Veit et al. Fig. 5b (accuracy against Kendall's tau after re-ordering) and the size of each
    residual branch against its shortcut, one colour per seed."""
    fig = Figure(figsize=(11.0, 4.0))
    a1, a2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    res, reorder, norms = results["residual"], results.get("reorder", []), results.get("residual_norms", [])
    intact = {s["seed"]: s["baseline_acc"] for s in results.get("per_seed", [])}
    seeds = sorted({r.get("seed", 0) for r in reorder})
    for i, seed in enumerate(seeds):
        rows = [r for r in reorder if r.get("seed", 0) == seed]
        a1.plot([r["tau"] for r in rows], _pct([r["acc"] for r in rows]), "o", color=f"C{i}", alpha=0.7,
                label=f"seed {seed}")
        a1.plot([1.0], [100 * intact.get(seed, res["baseline_acc"])], "*", color=f"C{i}", ms=13, mec="k")
    a1.plot([], [], "*", color="0.6", mec="k", ms=13, label="original order (tau = 1)")
    a1.axhline(100 * results["chance_acc"], color="gray", ls="--", lw=1, label="chance")
    a1.set(xlabel="Kendall's tau to the original order", ylabel="test accuracy (%)", ylim=(0, 102),
           title="(a) re-ordering blocks (Veit et al. Fig. 5b)")
    a1.legend(fontsize=7)
    xs = list(range(len(norms)))
    a2.bar(xs, [r["residual_over_shortcut"] for r in norms],
           color=["C3" if r["downsampling"] else "C0" for r in norms], alpha=0.6)
    for x, r in zip(xs, norms):
        vals = r.get("residual_over_shortcut_seeds", [])
        a2.plot([x] * len(vals), vals, "k.", ms=4)
    a2.axhline(1.0, color="gray", ls="--", lw=1)
    a2.set_xticks(xs, [r["block"] for r in norms], rotation=45, ha="right", fontsize=8)
    a2.set(ylabel="||F(x)|| / ||shortcut(x)||", title="(b) residual branch against shortcut (red: downsampling)")
    for a in (a1, a2):
        a.grid(alpha=0.3)
    return Plot(save_figure(fig, out_dir, "lesion_reorder_norms.png"),
                "(a) Test accuracy after re-ordering the blocks by random swaps of compatible blocks, against "
                "Kendall's tau between the new and the original order (one colour per seed); (b) per block, the norm "
                "of the residual branch's output over the shortcut's on test images (bars: mean over seeds; dots: seeds; "
                "dashed: equal size).")


# ---------------------------------------------------------------------------------------------
# ablation (Zeiler & Fergus 2014, Table 3)
# ---------------------------------------------------------------------------------------------


def plot_ablation(results: Mapping[str, Any], out_dir: Path) -> list[Plot]:
    variants = results["variants"]
    fig = Figure(figsize=(8.0, 4.4))
    ax = fig.add_subplot()
    names = [v["name"] for v in variants]
    # test_acc is one value per seed (a single float in results of single-seed runs). Points, not
    # bars: the variants differ by a point or two near 98%, invisible on bars drawn from 0.
    seeds = [v["test_acc"] if isinstance(v["test_acc"], list) else [v["test_acc"]] for v in variants]
    for i, s in enumerate(seeds):
        vals = _pct(s)
        mean = sum(vals) / len(vals)
        se = (sum((x - mean) ** 2 for x in vals) / (len(vals) - 1) / len(vals)) ** 0.5 if len(vals) > 1 else 0.0
        ax.plot([i] * len(vals), vals, "o", color=f"C{i}", alpha=0.6)
        ax.errorbar([i], [mean], yerr=[2 * se], fmt="_", ms=26, mew=2.5, capsize=6, color="k")
    ax.set_xticks(range(len(names)), [f"{n}\n{v['params'] / 1e6:.2f}M params" for n, v in zip(names, variants)],
                  rotation=15, fontsize=8)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set(ylabel="test accuracy (%)", title="Removing layers of an AlexNet-style network")
    ax.grid(alpha=0.3, axis="y")
    return [Plot(save_figure(fig, out_dir, "ablation.png"),
                 "Test accuracy of each variant, retrained from scratch: dots single seeds, bars the mean over "
                 "seeds +- 2 standard errors (the verdicts use the paired per-seed costs); the labels give each "
                 "variant's parameters.")]


# ---------------------------------------------------------------------------------------------
# probes (Zeiler & Fergus 2014 §5.2; linear classifiers on each stage)
# ---------------------------------------------------------------------------------------------


def plot_probes(results: Mapping[str, Any], out_dir: Path) -> list[Plot]:
    stages = results["stages"]
    xs = list(range(len(stages)))
    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.add_subplot()
    for key, label, style in (
        ("trained_acc", "trained network, its own classes", "o-"),
        ("heldout_acc", "trained network, held-out classes", "s-"),
        ("random_acc", "untrained network (same architecture)", "x--"),
    ):
        vals = [s.get(key) for s in stages]
        if any(v is not None for v in vals):
            line = ax.plot(xs, _pct(vals), style, label=label)[0]
            seeds = [s.get(key.replace("_acc", "_per_seed")) or [] for s in stages]  # multi-seed runs: one dot per seed
            for x, per_seed in zip(xs, seeds):
                if len(per_seed) > 1:
                    ax.plot([x] * len(per_seed), _pct(per_seed), ".", color=line.get_color(), alpha=0.5)
    if results.get("pixels_acc") is not None:
        ax.axhline(100 * results["pixels_acc"], color="gray", ls=":", label="raw pixels")
    ax.set_xticks(xs, [f"{s['stage']}\n({s['num_chs']} ch)" for s in stages], fontsize=8)
    ax.set(xlabel="stage (shallow to deep)", ylabel="linear probe test accuracy (%)",
           title=f"Linear probes on {results['model']} stages")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return [Plot(save_figure(fig, out_dir, "probes.png"),
                 "Test accuracy of a linear classifier (logistic regression) on the globally average-pooled "
                 "features of each stage of the frozen network (lines: mean over seeds; dots: each seed's network).")]


# ---------------------------------------------------------------------------------------------
# invariance (Zeiler & Fergus 2014, Fig. 5)
# ---------------------------------------------------------------------------------------------


def plot_invariance(results: Mapping[str, Any], out_dir: Path) -> list[Plot]:
    plots = []
    for kind, t in results["transforms"].items():
        fig = Figure(figsize=(10.0, 3.8))
        a1, a2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
        mags = t["magnitudes"]
        for i, layer in enumerate(results["layers"]):
            a1.plot(mags, t["distance"][layer], "o-", ms=3, color=f"C{i}", label=layer)
        a1.set(xlabel=f"{kind} ({t['unit']})", ylabel="||f(Tx) - f(x)|| / ||f(x)||",
               title=f"(a) feature change per layer: {kind}")
        a1.legend(fontsize=8)
        a2.plot(mags, t["true_prob"], "o-", ms=3, color="k", label="P(true class)")
        a2.plot(mags, t["accuracy"], "s--", ms=3, color="C3", label="accuracy")
        a2.set(xlabel=f"{kind} ({t['unit']})", ylabel="probability / accuracy", ylim=(-0.02, 1.02),
               title="(b) output")
        a2.legend(fontsize=8)
        for a in (a1, a2):
            a.grid(alpha=0.3)
        plots.append(Plot(save_figure(fig, out_dir, f"invariance_{kind}.png"),
                          f"{kind.capitalize()}: (a) normalised distance between the features of the original "
                          "and transformed images, per layer (mean over images); (b) mean probability of the "
                          "true class and accuracy on the transformed images."))
    return plots
