"""One rule for every command that writes where the user points it (report, viz, eval, experiment,
summary --erf, compare and runs compare --plot): a file cnnlab did not write there is never replaced
without --force, and the refusal names it; cnnlab's own earlier output is refreshed."""

from __future__ import annotations

import json

import pytest

from cli_helpers import one_line, run_cli
from cnnlab.atomic import LEDGER, atomic_write, cnnlab_wrote, replace_guard
from cnnlab.errors import ConfigError
from test_runs_cli import _run


@pytest.fixture
def runs(tmp_path):
    _run(tmp_path / "runs" / "a", seed=1, val=0.97, test=0.96)
    _run(tmp_path / "runs" / "b", seed=2, val=0.99, test=0.95)
    return tmp_path / "runs"


def test_a_users_file_is_not_replaced_and_the_refusal_names_it(runs, tmp_path, capsys) -> None:
    thesis = tmp_path / "thesis.html"
    thesis.write_text("my thesis")
    rc, _, err = run_cli(["report", str(runs / "a"), "--out", str(thesis)], capsys)
    one_line(rc, err, str(thesis), "cnnlab did not write it", "--force")
    assert thesis.read_text() == "my thesis"
    plot = tmp_path / "holiday.png"
    plot.write_bytes(b"\x89PNG my photo")
    rc, _, err = run_cli(["runs", "compare", str(runs / "a"), str(runs / "b"), "--plot", str(plot)], capsys)
    one_line(rc, err, str(plot), "--force")
    assert plot.read_bytes() == b"\x89PNG my photo"


def test_a_users_index_html_in_a_folder_of_runs_is_kept(runs, capsys) -> None:
    (runs / "index.html").write_text("<p>my notes</p>")
    rc, _, err = run_cli(["report", str(runs)], capsys)
    one_line(rc, err, "index.html", "--force")
    assert (runs / "index.html").read_text() == "<p>my notes</p>"


def test_summary_refuses_before_measuring(tmp_path, capsys) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"my photo")
    rc, out, err = run_cli(["summary", "lenet5", "--erf", str(photo)], capsys)
    one_line(rc, err, str(photo), "--force")
    assert out == "" and photo.read_bytes() == b"my photo"  # no table printed: refused before the work


def test_cnnlabs_own_output_is_refreshed_and_force_replaces(runs, tmp_path, capsys) -> None:
    page = tmp_path / "r.html"
    assert run_cli(["report", str(runs / "a"), "--out", str(page)], capsys)[0] == 0
    assert cnnlab_wrote(page)
    assert run_cli(["report", str(runs / "a"), "--out", str(page)], capsys)[0] == 0  # its own: refreshed
    page.write_text(page.read_text() + "<!-- my edit -->")  # edited by the user: now theirs
    rc, _, err = run_cli(["report", str(runs / "a"), "--out", str(page)], capsys)
    one_line(rc, err, "changed since")
    assert page.read_text().endswith("<!-- my edit -->")
    assert run_cli(["report", str(runs / "a"), "--out", str(page), "--force"], capsys)[0] == 0
    assert "my edit" not in page.read_text()


def test_a_damaged_ledger_owns_nothing(tmp_path) -> None:
    target = tmp_path / "out.png"
    with replace_guard(force=False, error=ConfigError):
        atomic_write(target, b"first")
    assert cnnlab_wrote(target)
    for damage in (b"{not json", b"[1, 2]", json.dumps({"out.png": 5}).encode(), b"{" * 100_000):
        (tmp_path / LEDGER).write_bytes(damage)
        assert not cnnlab_wrote(target)
        with replace_guard(force=False, error=ConfigError), pytest.raises(ConfigError, match="out.png"):
            atomic_write(target, b"second")
        assert target.read_bytes() == b"first"


def test_outside_a_guarded_command_writes_are_unchanged(tmp_path) -> None:
    target = tmp_path / "metrics.csv"
    target.write_text("old")
    atomic_write(target, b"new")  # the engine's own files: no guard, no ledger
    assert target.read_bytes() == b"new" and not (tmp_path / LEDGER).exists()


def test_moving_finished_files_into_a_folder_keeps_the_guard_and_the_ledger(tmp_path):
    """How an experiment puts its finished files in place (atomic.move_into): a user's file of the same
    name is refused before anything moves; cnnlab's own earlier outputs are refreshed and the folder's
    ledger keeps its other entries."""
    from cnnlab import atomic
    from cnnlab.errors import ConfigError

    out, first, second = tmp_path / "out", tmp_path / "a", tmp_path / "b"
    for d in (out, first, second):
        d.mkdir()
    with atomic.replace_guard(force=False, error=ConfigError):
        atomic.write_text(out / "notes.txt", "kept\n")
        atomic.write_text(first / "report.md", "one\n")
        atomic.move_into(first, out)
        atomic.write_text(second / "report.md", "two\n")
        atomic.move_into(second, out)  # refreshes cnnlab's own report.md
        assert (out / "report.md").read_text() == "two\n"
        assert atomic.cnnlab_wrote(out / "notes.txt") and atomic.cnnlab_wrote(out / "report.md")
        (out / "report.md").write_text("edited by the user\n")
        third = tmp_path / "c"
        third.mkdir()
        atomic.write_text(third / "report.md", "three\n")
        atomic.write_text(third / "results.json", "{}\n")
        with pytest.raises(ConfigError, match="report.md exists and cnnlab did not write it"):
            atomic.move_into(third, out)
    assert (out / "report.md").read_text() == "edited by the user\n" and not (out / "results.json").exists()
