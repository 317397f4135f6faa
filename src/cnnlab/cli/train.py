"""``cnnlab train`` and ``cnnlab eval``: parse the arguments, call ``cnnlab.training``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from cnnlab.cli.options import (capped_int, finite_float, guard_outputs, pairs, positive_float, seed_int,
                                threads_int, threads_option)
from cnnlab.errors import ConfigError

TRAIN_EPILOG = """\
examples:
  cnnlab train lenet5                         the main job: LeNet-5 on mnist-5k, about a minute on 2 cores
  cnnlab train resnet20 --data cifar10 --epochs 10 --set lr=0.05
  cnnlab train --config runs/2025-01-01-lenet5-mnist-5k/config.json    repeat a run
  cnnlab train --resume runs/2025-01-01-lenet5-mnist-5k                continue a killed run
  torchrun --nproc_per_node=2 -m cnnlab train resnet20 --data cifar10  DistributedDataParallel

recipes (--recipe, fields changed with --set FIELD=VALUE): {recipes}
"""


def register(sub: argparse._SubParsersAction) -> None:
    _register_train(sub)
    _register_eval(sub)


def _register_train(sub: argparse._SubParsersAction) -> None:
    from cnnlab.training.device import MEMORY_FORMATS, PRECISIONS
    from cnnlab.training.recipes import list_recipes

    p = sub.add_parser(
        "train", help="train a zoo model with its paper's recipe",
        description="Train a model; a run folder gets config.json, metrics.csv, curves.png, results.json, "
                    "the weights and checkpoints.",
        epilog=TRAIN_EPILOG.format(recipes=", ".join(list_recipes())),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # Defaults are None so that, with --config, only the flags given on the command line change the spec.
    p.add_argument("model", nargs="?", help="model name (`cnnlab list`)")
    p.add_argument("--model", dest="model_option", metavar="MODEL", help="the model, as a flag (as timm and Lightning)")
    p.add_argument("--data", help="data set (default mnist-5k; `imagefolder:PATH` for your images)")
    p.add_argument("--recipe", help="training recipe (default: the model's)")
    p.add_argument("--epochs", "--max-epochs", type=capped_int("MAX_EPOCHS"),
                   help="train this many epochs (milestones scale with it)")
    p.add_argument("--batch-size", type=capped_int("MAX_BATCH_SIZE"), help="global batch size")
    p.add_argument("--lr", type=positive_float, help="base learning rate")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", help="change a recipe field (repeatable)")
    p.add_argument("--freeze", action="append", metavar="PATTERN",
                   help="do not train the parameters of this module (a name such as c1, or a glob such as "
                        "'layer[12]'); recipe field freeze (repeatable)")
    p.add_argument("--lr-mult", action="append", metavar="PATTERN=MULT",
                   help="multiply the learning rate of these parameters, e.g. features=0.1; recipe field lr_mult "
                        "(repeatable; a later one wins)")
    p.add_argument("--no-decay-bias-norm", action="store_true", default=None,
                   help="no weight decay on biases and normalisation parameters (recipe field no_decay_bias_norm)")
    p.add_argument("--l1", type=finite_float, metavar="LAMBDA",
                   help="add LAMBDA * sum |w| over the weights to the loss (recipe field l1)")
    p.add_argument("--model-set", action="append", metavar="FIELD=VALUE", help="a model config option (repeatable)")
    p.add_argument("--data-set", action="append", metavar="FIELD=VALUE", help="a data set option (repeatable)")
    p.add_argument("--task-set", action="append", metavar="FIELD=VALUE",
                   help="an option of the model's task, e.g. is_samples=100 or beta=4 for a VAE (repeatable)")
    p.add_argument("--data-root", help="where downloadable data sets live (default ./data)")
    p.add_argument("--download", action="store_true", default=None, help="download the data set if missing")
    p.add_argument("--bad-files", choices=("strict", "skip"), help="bad image files: error (default) or skip")
    p.add_argument("--seed", type=seed_int, help="random seed (default 0)")
    p.add_argument("--precision", choices=PRECISIONS, help="auto (default), fp32, bf16 or fp16 (CUDA)")
    p.add_argument("--memory-format", choices=MEMORY_FORMATS, help="tensor layout (default auto)")
    p.add_argument("--device", help="cpu, cuda, cuda:N (default: CUDA when present)")
    p.add_argument("--threads", type=threads_int, help="CPU threads for torch")
    p.add_argument("--max-steps", type=capped_int("MAX_ITERATIONS"), help="stop after this many updates (quick looks)")
    p.add_argument("--weights", help="initial weights (.safetensors or .pth), e.g. to fine-tune")
    p.add_argument("--sha256", help="expected sha256 of --weights")
    p.add_argument("--strict", action=argparse.BooleanOptionalAction, default=None,
                   help="--weights must match the model exactly (default) or not")
    p.add_argument("--out", help="run folder (default runs/<date>-<model>-<data>/, never overwritten)")
    p.add_argument("--runs-root", default="runs", help="where default run folders go (default ./runs)")
    p.add_argument("--config", help="repeat the run of this config.json (flags given here change it)")
    p.add_argument("--resume", nargs="?", const="auto", metavar="DIR|auto",
                   help="continue a run folder, or `auto`: the newest unfinished run of this model and data")
    p.add_argument("--checkpoint-every", type=capped_int("MAX_ITERATIONS"), metavar="N",
                   help="also checkpoint every N updates (always: every epoch)")
    p.add_argument("--deterministic", action="store_true", default=None,
                   help="deterministic algorithms only (bitwise-repeatable on a CPU)")
    p.add_argument("--tensorboard", action="store_true", default=None, help="also log to TensorBoard")
    p.add_argument("--val-fraction", type=finite_float, metavar="F",
                   help="fraction of the train split held out for selection when the data has no val split (0.1)")
    p.add_argument("--test-every-epoch", action="store_true", default=None,
                   help="also test after every epoch (curves only: selection always reads val)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or per-epoch lines")
    p.set_defaults(func=run)


def _register_eval(sub: argparse._SubParsersAction) -> None:
    from cnnlab.training.device import PRECISIONS

    e = sub.add_parser(
        "eval", help="evaluate saved weights (test-time augmentation, MC dropout)",
        description="Top-1/top-5 accuracy of saved weights on a data set's test split. The model and data "
                    "come from the config.json of the run beside the weights unless given.",
    )
    e.add_argument("weights", help="a weights file (.safetensors or .pth), e.g. runs/.../model.safetensors")
    e.add_argument("--model", help="model name (default: from the run's config.json)")
    e.add_argument("--model-set", action="append", metavar="FIELD=VALUE", help="a model config option")
    e.add_argument("--data", help="data set (default: the run's, else mnist-5k)")
    e.add_argument("--data-set", action="append", metavar="FIELD=VALUE", help="a data set option")
    e.add_argument("--data-root", default=None, help="where downloadable data sets live (default ./data)")
    e.add_argument("--download", action="store_true", help="download the data set if missing")
    e.add_argument("--tta", choices=("none", "flip", "10crop"), default="none", help="test-time augmentation")
    e.add_argument("--dropout-samples", type=capped_int("MAX_REPEATS"), metavar="K",
                   help="also Monte-Carlo dropout with K stochastic passes")
    e.add_argument("--batch-size", type=capped_int("MAX_BATCH_SIZE"), default=500, help="images per forward pass (default 500)")
    e.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="arithmetic of the forward passes (default auto: bf16 only where the CPU has it natively)")
    e.add_argument("--device", help="torch device (default: the model's, CPU)")
    e.add_argument("--sha256", help="expected sha256 of the weights file")
    e.add_argument("--strict", action=argparse.BooleanOptionalAction, default=True,
                   help="the weights must match the model exactly (default); --no-strict loads what matches "
                        "and leaves the rest as initialised")
    e.add_argument("--seed", type=seed_int, default=0, help="seed of the MC-dropout passes")
    e.add_argument("--format", choices=("text", "json"), default="text", help="a text report (default) or JSON")
    e.add_argument("--out", metavar="DIR",
                   help="where the confusion matrix (PNG, CSV) and the mistakes grid go (default: an eval/ "
                        "folder in the run folder of the weights, else ./cnnlab-eval)")
    e.add_argument("--mistakes", type=capped_int("MAX_SAMPLES", low=0), default=32, metavar="K",
                   help="how many of the most confident mistakes to draw (default 32; 0: none)")
    guard_outputs(e)
    threads_option(e)
    e.set_defaults(func=run_eval)


_SPEC_FLAGS = ("model", "data", "recipe", "epochs", "batch_size", "lr", "data_root", "download", "bad_files",
               "seed", "precision", "memory_format", "device", "threads", "max_steps", "weights", "sha256",
               "strict", "checkpoint_every", "deterministic", "tensorboard", "val_fraction", "test_every_epoch")


def _given(args: argparse.Namespace) -> dict[str, Any]:
    """The spec fields set on the command line (flags not given are None), --set & co. included."""
    changes = {name: getattr(args, name) for name in _SPEC_FLAGS if getattr(args, name) is not None}
    for field, flag, items in (("overrides", "--set", args.set), ("model_config", "--model-set", args.model_set),
                               ("data_options", "--data-set", args.data_set),
                               ("task_options", "--task-set", getattr(args, "task_set", None))):
        if items:
            changes[field] = pairs(items, flag)
    recipe_flags = _recipe_flags(args)
    if recipe_flags:
        changes["overrides"] = {**changes.get("overrides", {}), **recipe_flags}
    return changes


def _recipe_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The recipe fields given by their own flags (--freeze, --lr-mult, ...), as --set would give them."""
    out: dict[str, Any] = {}
    if getattr(args, "freeze", None):
        out["freeze"] = list(args.freeze)
    if getattr(args, "lr_mult", None):
        mult: dict[str, float] = {}
        for item in args.lr_mult:
            pattern, sep, text = item.partition("=")
            mult.pop(pattern.strip(), None)  # a repeated pattern moves to where it was given last
            try:
                mult[pattern.strip()] = float(text)
            except ValueError:
                sep = ""
            if not sep or not pattern.strip():
                raise ConfigError(f"--lr-mult expects PATTERN=MULT (e.g. features=0.1), got {item!r}")
        out["lr_mult"] = mult
    if getattr(args, "no_decay_bias_norm", None):
        out["no_decay_bias_norm"] = True
    if getattr(args, "l1", None) is not None:
        out["l1"] = args.l1
    return out


def _spec_from_args(args: argparse.Namespace):
    from cnnlab.training.run import TrainSpec, spec_from_config

    changes = _given(args)
    if args.config:
        spec = spec_from_config(args.config)
        for field in ("overrides", "model_config", "data_options", "task_options"):
            if field in changes:
                changes[field] = {**getattr(spec, field), **changes[field]}
        return dataclasses.replace(spec, **changes)
    if "model" not in changes:
        if args.resume not in (None, "auto") or (args.resume == "auto" and args.out):
            return None  # the run folder's config.json says
        raise ConfigError("give a MODEL (`cnnlab list` shows them), --config CONFIG.json or --resume DIR")
    return TrainSpec(**changes)


def run(args: argparse.Namespace) -> int:
    from cnnlab.training import distributed as D
    import torch

    from cnnlab.training.device import threads_for_load
    from cnnlab.training.run import train
    from cnnlab.viz.run_pictures import RunPictures

    if args.model_option is not None:
        if args.model is not None and args.model != args.model_option:
            raise ConfigError(f"two models given: {args.model} and --model {args.model_option}; give one")
        args.model = args.model_option
    spec = _spec_from_args(args)  # None with --resume DIR alone: train() reads DIR's spec
    if args.out is not None:
        from cnnlab.safeio import check_output_path

        check_output_path(args.out, what="--out", directory=True)
    # On resuming, the flags given are changes to the run: applied (--epochs ...) or refused by name.
    changes = _given(args) if args.resume is not None and not args.config else None
    threads_before = torch.get_num_threads()
    callbacks: list = [RunPictures()]
    if args.threads is None and getattr(spec, "threads", None) is None and not D.current().enabled:
        threads, note = threads_for_load()
        if threads is not None:
            callbacks.insert(0, _SayAtStart(f"cnnlab train: {note}"))  # said once training starts, not before an error
            torch.set_num_threads(threads)
    try:
        result = train(spec, out=args.out, runs_root=args.runs_root, resume=args.resume,
                       progress=not args.no_progress, changes=changes, callbacks=callbacks)
        is_main = D.current().is_main
    finally:
        D.shutdown()
        torch.set_num_threads(threads_before)
    if is_main and result.out_dir is not None and "acc" not in result.test:  # e.g. segmentation: the task's metrics
        monitor = result.config.get("task", {}).get("monitor", next(iter(result.val), "loss"))
        shown = ", ".join(f"{k} {v:.4f}" for k, v in result.test.items() if not k.startswith("iou_"))
        picked = (f"epoch {result.best_epoch} selected on val" if result.best_epoch else
                  f"no epoch completed ({result.steps} updates, --max-steps): the last weights kept, val")
        print(f"{result.config['model']['name']} on {result.config['data']['name']}: {picked} "
              f"({monitor} {result.val.get(monitor, float('nan')):.4f}); test {shown}; "
              f"{result.seconds:.1f} s, {result.images_per_second:.0f} img/s; run folder {result.out_dir}")
    elif is_main and result.out_dir is not None:
        acc = f"{100 * result.val_acc:.2f}%"
        chosen = (f"epoch {result.best_epoch} selected on val (accuracy {acc})" if result.best_epoch else
                  f"no epoch completed ({result.steps} updates, --max-steps): the last weights kept (val accuracy {acc})")
        print(f"{result.config['model']['name']} on {result.config['data']['name']}: {chosen}; its test accuracy "
              f"{100 * result.test_acc:.2f}% (top-5 {100 * result.test_top5:.2f}%; last weights "
              f"{100 * result.test_acc_last:.2f}%), train accuracy "
              f"{100 * result.train_acc:.2f}%, {result.seconds:.1f} s, {result.images_per_second:.0f} img/s; "
              f"run folder {result.out_dir}")
        _say_if_at_chance(result)
    return 0


class _SayAtStart:
    """Trainer callback: print ``message`` on stderr when the first update is about to run (rank 0)."""

    def __init__(self, message: str) -> None:
        self.message = message

    def on_fit_start(self, trainer) -> None:  # noqa: ANN001
        if trainer.main:
            print(self.message, file=sys.stderr)


def _say_if_at_chance(result) -> None:  # noqa: ANN001
    """A run whose selected val accuracy is no better than guessing has not started to learn: say so,
    with the length it trained against the recipe's, instead of leaving a bare 10%."""
    classes = (result.config.get("data") or {}).get("num_classes") or 0
    if classes < 2 or not result.val_acc < 1.5 / classes:
        return
    schedule = result.config.get("schedule") or {}
    recipe_epochs = (result.config.get("recipe") or {}).get("epochs")
    length = f"{schedule.get('epochs')} epoch(s)" + (f" of the recipe's {recipe_epochs}" if recipe_epochs else "")
    print(f"cnnlab train: the validation accuracy ({100 * result.val_acc:.1f}%) is chance for {classes} classes: "
          f"the net has not started to learn in {result.steps} updates ({length}). Nets with saturating "
          "activations and small initial weights (the paper's LeNet-5: scaled tanh, LeCun's initialisation) sit "
          "on a plateau for their first hundreds of updates; train longer (--epochs), raise --lr, or try a ReLU "
          "variant (e.g. lenet5_relu)", file=sys.stderr)


def _refuse_run_options(model_config: dict, data_options: dict) -> None:
    """Options eval sets itself (from the data set and the WEIGHTS argument) would clash as keywords."""
    from cnnlab.training.run import RESERVED_DATA_OPTIONS, RESERVED_MODEL_OPTIONS

    clash = [k for k in RESERVED_MODEL_OPTIONS if k in model_config]
    if clash:
        raise ConfigError(f"model option {clash[0]!r} cannot be set with --model-set: the data set sets num_classes "
                          "and in_chans, and the WEIGHTS argument, --sha256 and --strict choose the weights")
    clash = [k for k in RESERVED_DATA_OPTIONS if k in data_options]
    if clash:
        raise ConfigError(f"data set option {clash[0]!r} cannot be set with --data-set (use --data-root, --download)")


def run_eval(args: argparse.Namespace) -> int:
    from cnnlab.data import load_dataset
    from cnnlab.models.registry import model_info
    from cnnlab.safeio import check_output_path, describe_path
    from cnnlab.training.engine import evaluate, evaluate_mc_dropout
    from cnnlab.training.rundir import config_for_weights, load_run_model

    weights = Path(args.weights)
    if not weights.is_file():
        raise ConfigError(f"weights file {args.weights} {describe_path(weights)}")
    if args.out is not None:  # a file, a FIFO, a path under a file: said before the evaluation
        check_output_path(args.out, what="--out", directory=True)
    doc = config_for_weights(weights)
    spec = doc["spec"] if doc else {}
    model_name = args.model or spec.get("model")
    if not model_name:
        raise ConfigError(f"{weights}: no config.json of a run beside it; name the model with --model")
    model_config = pairs(args.model_set, "--model-set")  # on top of the run's, for the run's model
    data_name = args.data or spec.get("data") or "mnist-5k"
    same_data = data_name == spec.get("data")
    data_options = {**((spec.get("data_options") or {}) if same_data else {}), **pairs(args.data_set, "--data-set")}
    run_model_config = (spec.get("model_config") or {}) if model_name == spec.get("model") else {}
    _refuse_run_options({**run_model_config, **model_config}, data_options)
    info = model_info(model_name)
    data = load_dataset(data_name, root=args.data_root or spec.get("data_root") or "data", download=args.download,
                        input_size=info.input_size, seed=int(spec.get("seed") or 0) if same_data else 0,
                        bad_files=spec.get("bad_files") or "strict",
                        val_fraction=float(spec.get("val_fraction") or 0.1) if same_data else 0.1,
                        **data_options)
    num_classes = (doc or {}).get("data", {}).get("num_classes") if same_data else None
    loaded = load_run_model(weights=weights, config=doc, model=model_name, model_config=model_config,
                            num_classes=num_classes or data.num_classes, in_chans=data.input_size[0],
                            sha256=args.sha256, strict=args.strict)
    model, load_report = loaded.model, loaded.report
    if info.task == "segmentation":  # per-pixel masks: the FCN metrics
        return _eval_segmentation(args, model, model_name, data, weights)
    if info.task != "classification":  # reconstruction, VAE: the task's own metrics
        return _eval_task(args, model, model_name, data, weights, doc, info)
    _check_eval_options(args, model, model_name, data.name)
    pad = None
    if doc and args.tta == "10crop":
        pad = int(doc.get("recipe", {}).get("crop_padding") or 0) or None  # views like the training crops
    dev = args.device
    standard = evaluate(model, data.test, batch_size=args.batch_size, precision=args.precision, device=dev)
    report: dict[str, Any] = {"model": model_name, "data": data.name, "weights": str(weights),
                              "test_images": len(data.test), "standard": standard}
    if not load_report.complete:
        report["not_loaded"] = load_report.describe()
    if args.tta != "none":
        report["tta"] = {"mode": args.tta, **evaluate(model, data.test, batch_size=args.batch_size,
                                                      precision=args.precision, tta=args.tta, device=dev,
                                                      tta_pad=pad)}
    if args.dropout_samples:
        report["mc_dropout"] = {"samples": args.dropout_samples, **evaluate_mc_dropout(
            model, data.test, samples=args.dropout_samples, batch_size=args.batch_size,
            precision=args.precision, device=dev, seed=args.seed)}
    out_dir = Path(args.out) if args.out else (weights.parent / "eval" if doc else Path("cnnlab-eval"))
    report["per_class"], report["files"] = _diagnose(model, data, out_dir, mistakes=args.mistakes,
                                                     batch_size=args.batch_size, title=f"{model_name} on {data.name}")
    if args.format == "json":
        print(json.dumps(report, indent=2))
        return 0
    print(f"{model_name} on {data.name} ({len(data.test):,} test images), weights {weights}")
    if not load_report.complete:
        print(f"  (--no-strict: {load_report.describe()}; those parameters keep their initial values)")

    def line(label: str, m: dict) -> None:
        print(f"  {label:<34} top-1 {100 * m['acc']:6.2f}%  top-5 {100 * m['top5']:6.2f}%  loss {m['loss']:.4f}")

    line("standard (weight scaling)" if args.dropout_samples else "standard", standard)
    if "tta" in report:
        line(f"test-time augmentation ({args.tta})", report["tta"])
    if "mc_dropout" in report:
        line(f"MC dropout ({args.dropout_samples} samples)", report["mc_dropout"])
    _print_per_class(report["per_class"])
    print("wrote " + ", ".join(report["files"]))
    return 0


def _eval_task(args: argparse.Namespace, model, model_name: str, data, weights: Path, doc: dict | None, info) -> int:
    """eval of a model whose task is not classification: the task's test metrics, as training reports them."""
    from cnnlab.training.engine import evaluate_task
    from cnnlab.training.recipes import Recipe, get_recipe
    from cnnlab.training.tasks import get_task

    spec = (doc or {}).get("spec") or {}
    recipe = Recipe.from_dict(doc["recipe"]) if doc and isinstance(doc.get("recipe"), dict) else get_recipe(info.recipe)
    task = get_task(info.task, **(spec.get("task_options") or {}))
    task.configure(recipe)
    task.setup(data)
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)  # a VAE samples its latent code: the same numbers on every call
        metrics = evaluate_task(model, data.test, task, batch_size=args.batch_size, precision=args.precision,
                                device=args.device)
    if args.format == "json":
        print(json.dumps({"model": model_name, "data": data.name, "weights": str(weights), "task": info.task,
                          "test_images": len(data.test), "test": metrics}, indent=2))
        return 0
    print(f"{model_name} on {data.name} ({len(data.test):,} test images, task {info.task}), weights {weights}")
    print("  " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return 0


def _eval_segmentation(args: argparse.Namespace, model, model_name: str, data, weights: Path) -> int:
    from cnnlab.training.segmentation import evaluate_segmentation

    if args.tta != "none" or args.dropout_samples:
        raise ConfigError(f"{model_name} is a segmentation model: --tta and --dropout-samples apply to classifiers")
    metrics = evaluate_segmentation(model, data.test, batch_size=args.batch_size, device=args.device,
                                    class_names=data.class_names)
    if args.format == "json":
        print(json.dumps({"model": model_name, "data": data.name, "weights": str(weights),
                          "test_images": len(data.test), "standard": metrics}, indent=2))
        return 0
    print(f"{model_name} on {data.name} ({len(data.test):,} test images), weights {weights}")
    print("  " + "  ".join(f"{k} {100 * metrics[k]:.2f}%" for k in ("miou", "pixel_acc", "mean_acc", "fwiou")))
    from cnnlab.terminal import for_terminal  # class names come from the data: escaped

    print("  per-class IoU: " + ", ".join(f"{for_terminal(k[4:])} {100 * v:.1f}%" for k, v in metrics.items()
                                          if k.startswith("iou_") and v == v))
    return 0


def _check_eval_options(args: argparse.Namespace, model, model_name: str, data_name: str) -> None:
    """Refuse, before any work, the options that cannot give a meaningful number."""
    from torch import nn

    from cnnlab.data.datasets import unsuitable_tta

    reason = unsuitable_tta(data_name, args.tta)
    if reason:
        raise ConfigError(reason)
    if args.dropout_samples and not any(isinstance(m, nn.Dropout) for m in model.modules()):
        raise ConfigError(f"--dropout-samples: {model_name} has no dropout layer, so Monte-Carlo dropout would "
                          "repeat the same prediction; use a model with dropout (alexnet, vgg*, nin_cifar, ...)")


def _diagnose(model, data, out_dir: Path, *, mistakes: int, batch_size: int, title: str) -> tuple[list[dict], list[str]]:
    """Per-class accuracy rows; the confusion matrix (CSV, PNG) and mistakes grid written to ``out_dir``."""
    from cnnlab.training.diagnostics import write_diagnostics
    from cnnlab.viz.confusion import draw_diagnostics

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"--out {out_dir}: cannot create the folder ({err.strerror or err})") from None
    rows, files = write_diagnostics(model, data, out_dir, mistakes=mistakes, batch_size=batch_size)
    pictures = draw_diagnostics(out_dir, title=title, mistakes=bool(mistakes))
    return rows, files + [str(p) for p in pictures]


def _print_per_class(rows: list[dict]) -> None:
    from cnnlab.terminal import for_terminal  # class names are folder names or a run's config: escape them

    worst = sorted(rows, key=lambda r: (r["accuracy"] is None, r["accuracy"] if r["accuracy"] is not None else 0))
    shown = rows if len(rows) <= 20 else worst[:10]
    print("  per-class accuracy" + ("" if len(rows) <= 20 else " (the 10 worst classes)") + ":")
    for r in shown:
        acc = "-" if r["accuracy"] is None else f"{100 * r['accuracy']:6.2f}%"
        print(f"    {for_terminal(r['class']):<20} {acc}  ({r['correct']}/{r['images']})")
