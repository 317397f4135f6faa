"""Transfer learning: lecture 002's 2x2 table (very similar / very different data set against very
little / quite a lot of data), after Donahue et al. (DeCAF, ICML 2014), Razavian et al. (CVPR
Workshops 2014) and Yosinski et al. (NIPS 2014).

A network is trained on a source set; for a similar target (other classes of the same data set) and
a different one (another data set), with few and with more labelled examples per class, five ways to
get a classifier are compared: a linear classifier on the top layer's features, a linear classifier
on an earlier stage, fine-tuning the last layers, fine-tuning everything, and training from scratch.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from cnnlab.errors import ConfigError
from cnnlab.experiments.context import ExperimentContext, restrict, seed_list, seeded
from cnnlab.experiments.features import extract_features, fit_linear_probe, probe_accuracy
from cnnlab.experiments.nets import FrozenExcept, replace_head
from cnnlab.experiments.outcome import Criterion, Outcome, Table
from cnnlab.experiments.overrides import ADAM
from cnnlab.experiments.registry import register_experiment
from cnnlab.experiments.statistics import SeedComparison, compare_seeds, mean_std, require_seeds, seed_criterion
from cnnlab.training.spec import TrainSpec
from cnnlab.viz.experiment_plots import save_figure
from cnnlab.viz.report import Plot

__all__ = ["TransferConfig", "SCALES", "METHODS", "PRESCRIBED", "CELLS", "run", "plot_transfer", "pick_winner",
           "prescribed_against_winner"]

CLAIM = (
    "You do not need a lot of data to use CNNs: transfer a network trained on a large data set. With "
    "very little data on a very similar data set, use a linear classifier on the top layer; with "
    "quite a lot of similar data, fine-tune a few layers; with very little data on a very different "
    "data set, try linear classifiers on different (earlier) stages; with quite a lot of different "
    "data, fine-tune a larger number of layers."
)

# Method key -> description (the lecture's words where it has them).
METHODS: dict[str, str] = {
    "linear_top": "linear classifier on the top layer",
    "linear_early": "linear classifier on an earlier stage",
    "finetune_last": "fine-tune the last layers",
    "finetune_all": "fine-tune all layers",
    "scratch": "train from scratch",
}
# Lecture 002's table: (similarity, amount) -> the prescribed method.
PRESCRIBED: dict[tuple[str, str], str] = {
    ("similar", "little"): "linear_top",  # "Use Linear Classifier on top layer"
    ("similar", "lots"): "finetune_last",  # "Finetune a few layers"
    ("different", "little"): "linear_early",  # "You're in trouble... Try linear classifier from different stages"
    ("different", "lots"): "finetune_all",  # "Finetune a larger number of layers"
}
CELLS = tuple(PRESCRIBED)


@dataclass(frozen=True)
class TransferConfig:
    data: str  # the source data set; the similar target is its `similar_classes`
    model: str  # zoo name
    pretrain: TrainSpec
    finetune: TrainSpec  # for every trained method (epochs: see `updates`; batch: the lots cells')
    source_classes: tuple[int, ...]
    similar_classes: tuple[int, ...]
    different: str  # the different target data set (all its classes)
    little: int  # labelled examples per class
    lots: int
    updates: tuple[int, int]  # gradient updates of every trained method in the (little, lots) cells
    little_batch_size: int  # batch of the little cells (a few dozen images: several updates per epoch)
    head: str  # the model's linear classifier, replaced by a new one for the target's classes
    top: str  # module whose output is the top layer's features (flattened)
    early: str  # module of the earlier stage (flattened)
    last_layers: tuple[str, ...]  # modules trained by "fine-tune the last layers" (the head included)
    seeds: int = 3  # seeds: the source network, the labelled subset's draw and the new heads' initialisation
    tie: float = 0.01  # the prescribed method "wins" when within this accuracy of the best
    l2: float = 1e-3  # the linear classifiers' weight decay (on standardised features)
    model_options: tuple[tuple[str, Any], ...] = ()
    data_options: tuple[tuple[str, Any], ...] = ()
    different_options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if set(self.source_classes) & set(self.similar_classes):
            raise ConfigError("transfer: source_classes and similar_classes must not overlap")
        if not 1 <= self.little < self.lots:
            raise ConfigError(f"transfer: need 1 <= little < lots, got {self.little}, {self.lots}")
        if self.head not in self.last_layers:
            raise ConfigError(f"transfer: last_layers must include the head {self.head!r}")
        if len(self.updates) != 2 or any(not isinstance(u, int) or u < 1 for u in self.updates):
            raise ConfigError(f"transfer: updates must be two positive integers (little, lots), got {self.updates!r}")
        if self.finetune.batch_size is None:
            raise ConfigError("transfer: finetune.batch_size must be given (epochs are derived from it)")
        if not isinstance(self.little_batch_size, int) or self.little_batch_size < 1:
            raise ConfigError(f"transfer: little_batch_size must be a positive integer, got {self.little_batch_size!r}")
        require_seeds("transfer", self.seeds)


# LeNet-5's stages: c1 (6 maps, 28x28), c3 (16 maps, 10x10), c5 (120), f6 (84), fc (the classes).
_LENET = dict(head="fc", top="f6", early="c3", last_layers=("c5", "f6", "fc"))
# Fine-tuning and training from scratch: the lenet recipe without its random shifts, so that the
# trained methods see the same images as the linear classifiers (which fit fixed features).
_NO_SHIFT = (*ADAM, ("translate", 0))

SCALES = {
    "tiny": TransferConfig(
        data="synthetic",
        data_options=(("shape", (1, 28, 28)), ("n", 200), ("n_test", 100)),
        model="lenet5_relu",
        pretrain=TrainSpec(recipe="lenet", epochs=1, batch_size=32, overrides=ADAM),
        finetune=TrainSpec(recipe="lenet", epochs=1, batch_size=8, overrides=_NO_SHIFT),
        source_classes=(0, 1, 2, 3, 4),
        similar_classes=(5, 6, 7, 8, 9),
        different="synthetic",
        different_options=(("shape", (1, 28, 28)), ("n", 120), ("n_test", 40), ("num_classes", 3)),
        little=2,
        lots=5,
        updates=(2, 4),
        little_batch_size=4,
        seeds=2,
        **_LENET,
    ),
    # Source: the 2,000 training digits 0-4 of mnist-5k. Similar target: the digits 5-9 of mnist-5k
    # (same scanner, same writers' style, new classes). Different target: scikit-learn's 8x8 digits
    # (another collection: 1,797 digits of 43 writers, 16 grey levels, upsampled to 28x28 -- blocky
    # and blurred, a different image distribution, although the classes are digits too).
    "quick": TransferConfig(
        data="mnist-5k",
        model="lenet5_relu",
        pretrain=TrainSpec(recipe="lenet", epochs=10, batch_size=64, overrides=ADAM),
        finetune=TrainSpec(recipe="lenet", epochs=1, batch_size=32, overrides=_NO_SHIFT),
        source_classes=(0, 1, 2, 3, 4),
        similar_classes=(5, 6, 7, 8, 9),
        different="digits",
        little=10,
        lots=100,
        updates=(100, 200),
        little_batch_size=16,
        seeds=5,  # cheap (3 seeds took 139 s on one thread under load): 5 narrow the standard errors
        **_LENET,
    ),
    # CIFAR-10 classes 0-4 (airplane, automobile, bird, cat, deer) as the source; 5-9 (dog, frog,
    # horse, ship, truck) as the similar target; SVHN house numbers (grey-free colour digits) as the
    # different one. ResNet-20: top = last stage, earlier = second stage (average-pooled).
    "full": TransferConfig(
        data="cifar10",
        model="resnet20",
        pretrain=TrainSpec(recipe="resnet_cifar", epochs=100),
        finetune=TrainSpec(recipe="resnet_cifar", epochs=1, batch_size=64, lr=0.01,
                           overrides=(("schedule", "cosine"),)),
        source_classes=(0, 1, 2, 3, 4),
        similar_classes=(5, 6, 7, 8, 9),
        different="svhn",
        little=10,
        lots=500,
        updates=(500, 2000),
        little_batch_size=16,
        seeds=3,
        head="fc",
        top="layer3",
        early="layer2",
        last_layers=("layer3", "fc"),
    ),
}


def pick_winner(accs: dict[str, float]) -> str:
    """The method with the highest accuracy (the first of METHODS' order on a tie); ``run`` passes the
    validation accuracies, so the winner is chosen without looking at the test split."""
    return max(METHODS, key=lambda m: (accs[m], -list(METHODS).index(m)))


def prescribed_against_winner(methods: dict[str, dict[str, Any]], prescribed: str, *,
                              tie: float) -> tuple[str, SeedComparison]:
    """The winner of a cell, chosen on the mean validation accuracy, and the claim "the prescribed
    method is the winner or within ``tie`` of it" decided on the test split over draws: the paired
    test accuracies of the prescribed method plus ``tie`` against the winner's. When the prescribed
    method is the winner every difference is ``tie`` (met); when another method wins on val, "met"
    needs the prescribed method within ``tie`` of it on test by 2 standard errors, "not met" a test
    deficit beyond ``tie`` by 2 standard errors. ``methods[m]``: ``{"val": mean, "per_seed": [test, ...]}``."""
    winner = pick_winner({m: v["val"] for m, v in methods.items()})
    comparison = compare_seeds([a + tie for a in methods[prescribed]["per_seed"]], methods[winner]["per_seed"])
    return winner, comparison


def plot_transfer(results: dict, out_dir: Path) -> list[Plot]:
    table = results["table"]
    names = list(METHODS)
    fig = Figure(figsize=(10.0, 4.8))
    ax = fig.add_subplot()
    width = 0.16
    for j, m in enumerate(names):
        xs = [i + (j - 2) * width for i in range(len(table))]
        accs = [100 * c["methods"][m]["acc"] for c in table.values()]
        stds = [100 * c["methods"][m]["std"] for c in table.values()]
        bars = ax.bar(xs, accs, width, yerr=stds, capsize=2, color=f"C{j}", label=METHODS[m])
        for bar, c in zip(bars, table.values()):
            if m == c["winner"]:
                ax.annotate("*", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                            fontsize=14, fontweight="bold")
            if m == c["prescribed"]:
                bar.set(edgecolor="k", linewidth=2.0)
    ax.set_xticks(range(len(table)), [f"{c['similarity']} data set\n{c['amount']} data ({c['per_class']}/class)"
                                      for c in table.values()], fontsize=8)  # fmt: skip
    lo = min(100 * c["methods"][m]["acc"] for c in table.values() for m in names)
    ax.set(ylim=(max(0.0, lo - 5), 104), ylabel="test accuracy (%)",
           title="Transfer: * = winner on validation, black outline = the lecture's prescription")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    return [Plot(save_figure(fig, out_dir, "transfer.png"),
                 "Test accuracy of each method in each cell of lecture 002's table (mean and std over draws); "
                 "the winner on the validation split is starred, the lecture's prescribed method outlined in black.")]


def _spec_for(cfg: TransferConfig, amount: str, n_train: int) -> TrainSpec:
    """The cell's fine-tuning spec: its batch, and as many epochs as the cell's updates take."""
    batch = cfg.little_batch_size if amount == "little" else cfg.finetune.batch_size
    updates = cfg.updates[0] if amount == "little" else cfg.updates[1]
    epochs = max(1, math.ceil(updates / math.ceil(n_train / batch)))
    return dataclasses.replace(cfg.finetune, epochs=epochs, batch_size=batch)


def _linear(cfg: TransferConfig, pretrained: Any, data: Any, module: str) -> tuple[float, float]:
    """(val, test) accuracy of a linear classifier on the frozen ``module``'s features."""
    splits = (data.train, data.val, data.test)
    feats = extract_features(pretrained, torch.cat([p.x for p in splits]), [module], pool="none")[module]
    n, v = len(data.train.y), len(data.val.y)
    probe = fit_linear_probe(feats[:n], data.train.y, num_classes=data.num_classes, l2=cfg.l2)
    return probe_accuracy(probe, feats[n : n + v], data.val.y), probe_accuracy(probe, feats[n + v :], data.test.y)


def _methods_one_draw(ctx: ExperimentContext, cfg: TransferConfig, pretrained: Any, data: Any, spec: TrainSpec,
                      src_tag: str, options: dict) -> dict[str, tuple[float, float]]:
    """Every method on one draw of a cell's target, with ``ctx.seed``'s source network: method ->
    (val accuracy, test accuracy). The trained methods keep their best-validation epoch."""
    out = {m: _linear(cfg, pretrained, data, module) for m, module in (("linear_top", cfg.top),
                                                                         ("linear_early", cfg.early))}
    for method, trainable in (("finetune_last", cfg.last_layers), ("finetune_all", None)):

        def build(trainable: tuple[str, ...] | None = trainable) -> Any:
            torch.manual_seed(ctx.seed)  # the new head's initialisation
            model = replace_head(copy.deepcopy(pretrained), cfg.head, data.num_classes)  # the source net stays as it was
            model.train()
            return FrozenExcept(model, trainable) if trainable is not None else model

        fit = ctx.train(f"{METHODS[method]} on {data.name}", build, data, spec,
                        key={"model": cfg.model, "method": method, "source": src_tag, **options})  # fmt: skip
        out[method] = (float(fit.val_acc), float(fit.test_acc))
    fit = ctx.train(f"{cfg.model} from scratch on {data.name}", lambda: ctx.create_model(cfg.model, data, **options),
                    data, spec, key={"model": cfg.model, "method": "scratch", **options})  # fmt: skip
    out["scratch"] = (float(fit.val_acc), float(fit.test_acc))
    return out


def _measure_cells(ctx: ExperimentContext, cfg: TransferConfig, sources: dict[int, Any], source_all: Any,
                   different_all: Any, src_tag: str, options: dict) -> dict[str, dict[str, Any]]:
    """Lecture 002's four cells, every method on every seed's draw; the winner chosen on val."""
    table: dict[str, dict[str, Any]] = {}
    for similarity, amount in CELLS:
        per_class = cfg.little if amount == "little" else cfg.lots
        runs: dict[str, list[tuple[float, float]]] = {m: [] for m in METHODS}
        for seed, pretrained in sources.items():
            if similarity == "similar":
                tag = f"{cfg.data}[{','.join(map(str, cfg.similar_classes))}]"
                data = restrict(source_all, classes=cfg.similar_classes, per_class=per_class, seed=seed,
                                name=f"{tag} {per_class}/class draw {seed}")  # fmt: skip
            else:
                data = restrict(different_all, per_class=per_class, seed=seed,
                                name=f"{cfg.different} {per_class}/class draw {seed}")  # fmt: skip
            spec = _spec_for(cfg, amount, len(data.train.y))
            for m, vt in _methods_one_draw(seeded(ctx, seed), cfg, pretrained, data, spec, src_tag, options).items():
                runs[m].append(vt)
        methods = {m: dict(zip(("acc", "std"), mean_std([t for _, t in r])), per_seed=[t for _, t in r],
                           val=mean_std([v for v, _ in r])[0], val_per_seed=[v for v, _ in r])
                   for m, r in runs.items()}  # fmt: skip
        prescribed = PRESCRIBED[(similarity, amount)]
        winner, comparison = prescribed_against_winner(methods, prescribed, tie=cfg.tie)
        table[f"{similarity}/{amount}"] = dict(
            similarity=similarity, amount=amount, per_class=per_class, data=data.name.split(" ")[0],
            num_classes=data.num_classes, train_size=len(data.train.y), val_size=len(data.val.y),
            test_size=len(data.test.y), updates=cfg.updates[0 if amount == "little" else 1],
            batch_size=spec.batch_size, methods=methods, winner=winner, prescribed=prescribed,
            prescribed_gap=methods[winner]["val"] - methods[prescribed]["val"],  # on val, as the winner
            prescribed_vs_winner=vars(comparison),
        )  # fmt: skip
    return table


# The lecture's labels of the table's rows and columns.
_WORDS = {"similar": "very similar data set", "different": "very different data set", "little": "very little data",
          "lots": "quite a lot of data"}  # fmt: skip


def _criteria(cfg: TransferConfig, table: dict[str, dict[str, Any]]) -> list[Criterion]:
    pct = lambda v: f"{100 * v:.1f}%"  # noqa: E731
    criteria = []
    for key, c in table.items():
        m, p, w = c["methods"], c["prescribed"], c["winner"]
        vp, vw = (f"val {pct(m[k]['val'])}, test {pct(m[k]['acc'])}" for k in (p, w))
        finding = (f"{key}: {METHODS[p]} is the best on val ({vp}); the {100 * cfg.tie:g}-point allowance" if p == w else
                   f"{key}: {METHODS[p]} ({vp}), the best on val is {METHODS[w]} ({vw}); on test, the lecture's "
                   f"choice plus the {100 * cfg.tie:g}-point allowance minus the winner")  # fmt: skip
        criteria.append(seed_criterion(
            f"{_WORDS[c['similarity']]}, {_WORDS[c['amount']]}: the lecture's choice ({METHODS[p]}) is the method "
            f"chosen on the validation split, or within {100 * cfg.tie:g} point(s) of it on the test split",
            finding, SeedComparison(**{k: tuple(v) if isinstance(v, list) else v
                                       for k, v in c["prescribed_vs_winner"].items()})))  # fmt: skip
    for c in (c for c in table.values() if c["amount"] == "little"):
        # The best transfer method of a cell is chosen on val; its test accuracy is then compared with scratch's.
        best = max((m for m in METHODS if m != "scratch"), key=lambda m, c=c: c["methods"][m]["val"])
        comparison = compare_seeds(c["methods"][best]["per_seed"], c["methods"]["scratch"]["per_seed"])
        c["best_transfer"], c["best_transfer_vs_scratch"] = best, vars(comparison)
        criteria.append(seed_criterion(
            f"{_WORDS[c['similarity']]}, {_WORDS['little']}: the best transfer method (chosen on validation "
            "accuracy) beats training from scratch on the test split",
            f"{METHODS[best]} {pct(c['methods'][best]['acc'])} against scratch {pct(c['methods']['scratch']['acc'])}",
            comparison))  # fmt: skip
    return criteria


def _tables(table: dict[str, dict[str, Any]], seeds_note: str) -> list[Table]:
    return [
        Table(
            title="Validation accuracy (%) of each method in each cell (the winner is chosen on these)" + seeds_note,
            columns=("cell", "labelled / class", *METHODS.values(), "winner (on val)", "lecture's choice"),
            rows=tuple((k, c["per_class"], *(round(100 * c["methods"][m]["val"], 2) for m in METHODS),
                        METHODS[c["winner"]], METHODS[c["prescribed"]]) for k, c in table.items()),
        ),
        Table(
            title="Test accuracy (%) of each method in each cell (reported, not used to choose)" + seeds_note,
            columns=("cell", "labelled / class", *METHODS.values()),
            rows=tuple((k, c["per_class"], *(round(100 * c["methods"][m]["acc"], 2) for m in METHODS))
                       for k, c in table.items()),
        ),
        Table(
            title="Lecture 002's table: prescribed / chosen on val",
            columns=("", "very similar data set", "very different data set"),
            rows=tuple((f"{'very little' if a == 'little' else 'quite a lot of'} data",
                        *(f"{METHODS[table[f'{s}/{a}']['prescribed']]} / {METHODS[table[f'{s}/{a}']['winner']]}"
                          for s in ("similar", "different"))) for a in ("little", "lots")),
        ),
    ]  # fmt: skip


def _setup_and_notes(ctx: ExperimentContext, cfg: TransferConfig, source: Any, different_all: Any,
                     source_accs: list[float]) -> tuple[list[str], list[str]]:
    size = "x".join(map(str, source.input_size))
    seeds = ", ".join(map(str, seed_list(ctx, cfg.seeds)))
    setup = [
        f"Source: `{cfg.data}` classes {list(cfg.source_classes)} ({len(source.train.y):,} training images of "
        f"{size}); `{cfg.model}` trained on them with {cfg.pretrain.describe()}, once per seed {seeds} (source "
        f"test accuracy {', '.join(f'{100 * a:.1f}%' for a in source_accs)}).",
        f"Similar target: `{cfg.data}` classes {list(cfg.similar_classes)}, relabelled 0-{len(cfg.similar_classes) - 1}. "
        f"Different target: `{cfg.different}` (all {different_all.num_classes} classes), adapted to {size}.",
        f"Little data: {cfg.little} labelled training images per class; quite a lot: {cfg.lots} per class. Seed s "
        f"({seeds}) draws the labelled images, and its source network is the one transferred (so the draws "
        "vary the source network too); every target's full validation and test splits are used (the "
        "validation split chooses, the test split is reported and decides the verdicts).",
        f"Linear classifiers: multinomial logistic regression (L-BFGS to convergence, L2 {cfg.l2:g} on standardised "
        f"features) on the frozen pretrained network's `{cfg.top}` output (top layer) or `{cfg.early}` output "
        "(earlier stage), flattened.",
        f"Trained methods (the same budget for all in a cell: about {cfg.updates[0]} updates of batch "
        f"{cfg.little_batch_size} with little data, {cfg.updates[1]} of batch {cfg.finetune.batch_size} with more; "
        f"recipe `{cfg.finetune.recipe}`" + "".join(f", {k}={v}" for k, v in cfg.finetune.overrides.items())
        + (f", lr {cfg.finetune.lr:g}" if cfg.finetune.lr else "") + "): "
        f"fine-tune the last layers = new head, `{'`, `'.join(cfg.last_layers)}` trained, everything below frozen (weights "
        "and normalisation statistics); fine-tune all = pretrained weights with a new head, all trained; from "
        "scratch = the same architecture from a random initialisation.",
        "Verdicts: the winner of a cell is the method with the highest mean validation accuracy; the criteria "
        "compare test accuracies paired by draw (the mean difference must exceed 2 standard errors).",
    ]
    notes = [
        "The lecture's source is ImageNet (1.2M images) and its targets are other image sets; this scale transfers "
        f"from {len(source.train.y):,} images, so the source network's features are far less general than an "
        "ImageNet network's.",
        f"The {100 * cfg.tie:g}-point allowance: the lecture's choice counts as right when it is within "
        f"{100 * cfg.tie:g} point(s) of the method chosen on val, since methods that close are equally good choices "
        "at this scale.",
        f"The 'top layer' is the last hidden layer (`{cfg.top}`). Trained on {len(cfg.source_classes)} classes only, it "
        "is specialised to them, whereas the top layer of an ImageNet network is trained to separate 1,000 classes; "
        "an earlier stage keeps more general features here.",
    ]
    if cfg.different == "digits":
        notes.append("The 'very different' data set available offline is scikit-learn's 8x8 digits: a different "
                     "collection and image distribution (16 grey levels, upsampled), but still digits, so it is "
                     "less different from the source than the lecture's case; `--scale full` uses SVHN.")
    return setup, notes


@register_experiment(
    name="transfer",
    title="Transfer learning: lecture 002's 2x2 table",
    claim=CLAIM,
    lectures=("002_a740cb8c04a80802.txt", "003_7e0d723498294d64.txt"),
    paper="Donahue et al., ICML 2014; Razavian et al., CVPR-W 2014; Yosinski et al., NIPS 2014",
    scales=SCALES,
    plot=plot_transfer,
)
def run(ctx: ExperimentContext, cfg: TransferConfig) -> Outcome:
    source_all, options = ctx.open_config(cfg)
    different_all = ctx.load_data(cfg.different, input_size=tuple(source_all.input_size), **dict(cfg.different_options))
    src_tag = f"{cfg.data}[{','.join(map(str, cfg.source_classes))}]"
    source = restrict(source_all, classes=cfg.source_classes, name=src_tag)
    sources, source_accs = {}, []
    for seed in seed_list(ctx, cfg.seeds):  # one source network per seed
        sctx = seeded(ctx, seed)
        pre = sctx.train(f"{cfg.model} on {src_tag} (source)", lambda sctx=sctx: sctx.create_model(cfg.model, source, **options),
                         source, cfg.pretrain, key={"model": cfg.model, "role": "source", **options})  # fmt: skip
        sources[seed] = ctx.to_device(pre.model)  # features are extracted on the run's compute device
        source_accs.append(float(pre.test_acc))
    table = _measure_cells(ctx, cfg, sources, source_all, different_all, src_tag, options)
    criteria = _criteria(cfg, table)
    setup, notes = _setup_and_notes(ctx, cfg, source, different_all, source_accs)
    results = {"table": table, "source_test_acc": mean_std(source_accs)[0], "source_test_acc_per_seed": source_accs,
               "methods": METHODS, "seeds": cfg.seeds}  # fmt: skip
    return Outcome(results=results, criteria=criteria, tables=_tables(table, f" (mean of {cfg.seeds} draws)"),
                   setup=setup, notes=notes)
