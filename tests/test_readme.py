"""Every `cnnlab` command of the README's ```bash blocks runs as written (at tiny sizes where a flag
allows), and the README's Python example runs, so the tour cannot rot.

Commands that need a download, a data set that is not shipped, several processes or minutes of CPU
are listed in SKIP with the reason; placeholders (`runs/<run>`, `photo.png`, ...) are filled with files
this test makes. A README line that matches no rule runs exactly as written.
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

README = Path(__file__).resolve().parents[1] / "README.md"

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
}


def readme_commands() -> list[str]:
    text = README.read_text()
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line.startswith("cnnlab "):
                lines.append(" ".join(shlex.split(line, comments=True)) if "'" not in line else line.split(" #")[0].strip())
    return lines


def _tiny(argv: list[str]) -> list[str]:
    """The same command at a size a test can afford: one short epoch, one benchmark round."""
    cmd = argv[0]
    if cmd == "train" and "--config" not in argv:
        argv = [*argv, "--epochs", "1", "--max-steps", "3"]
        if any(a.startswith("vae") for a in argv):
            argv += ["--task-set", "is_samples=2"]
    if cmd == "bench":
        argv = [*argv, "--rounds", "1"] if "--rounds" not in argv else argv
    return argv


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder holding what the README's placeholders name: two run folders, images, a weights file."""
    root = tmp_path_factory.mktemp("readme")
    runs = root / "runs"
    assert main(["train", "lenet5", "--epochs", "1", "--max-steps", "4", "--out", str(runs / "run"),
                 "--no-progress"]) == 0
    assert main(["train", "lenet5", "--epochs", "1", "--max-steps", "4", "--seed", "1", "--out",
                 str(runs / "other"), "--no-progress"]) == 0
    assert main(["train", "vae_mlp", "--epochs", "1", "--max-steps", "2", "--task-set", "is_samples=2",
                 "--out", str(runs / "vae-run"), "--no-progress"]) == 0
    rng = np.random.default_rng(0)
    for name in ("photo.png", "digit.png", "photo.jpg"):
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(root / name)
    (root / "docs").mkdir()
    torch.manual_seed(0)
    save_weights(cnnlab.create_model("resnet50"), root / "w.safetensors")
    return root


def _fill(line: str, root: Path) -> list[str]:
    line = line.replace("runs/<vae-run>", str(root / "runs" / "vae-run"))
    line = line.replace("runs/<run>", str(root / "runs" / "run")).replace("runs/<other>", str(root / "runs" / "other"))
    return shlex.split(line)[1:]


COMMANDS = readme_commands()


def test_the_readme_has_a_tour():
    assert len(COMMANDS) >= 30 and "cnnlab train lenet5" in COMMANDS


def _absent_data(line: str) -> str | None:
    """Why a command on MNIST or Fashion-MNIST cannot run here: their files are not on this machine."""
    from cnnlab.data import torchvision_sets

    for name, table in torchvision_sets.IDX_SETS.items():
        if re.search(rf"--data {name}(\s|$)", line) and torchvision_sets.find_idx_folder(table, Path("data")) is None:
            return f"{name} is not on this machine (bash scripts/get-real-data.sh installs it)"
    return None


@pytest.mark.parametrize("line", COMMANDS)
def test_readme_command_runs(line, workdir, monkeypatch):
    reason = next((why for word, why in SKIP.items() if word in line), None) or _absent_data(line)
    if reason:
        pytest.skip(reason)
    monkeypatch.chdir(workdir)
    argv = _tiny(_fill(line, workdir))
    assert main(argv) == 0, line


def test_readme_python_example_runs(workdir, monkeypatch):
    block = re.search(r"## In Python\n\n```python\n(.*?)```", README.read_text(), flags=re.S).group(1)
    monkeypatch.chdir(workdir)
    code = block.replace("epochs=5", "epochs=1, max_steps=3").replace('"resnet50", (8, 3, 224, 224)', '"resnet18", (2, 3, 64, 64)')
    exec(compile(code, "README.md (In Python)", "exec"), {})
