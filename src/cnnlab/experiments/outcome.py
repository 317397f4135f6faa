"""What an experiment returns: its measured numbers, the criteria that test the claim, the verdict.

The verdict is never written by hand: each experiment states its :class:`Criterion` list (the test
and the measured finding), and :func:`verdict_from` turns them into ``reproduced`` and one sentence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cnnlab.errors import ConfigError

__all__ = ["Criterion", "Table", "Outcome", "verdict_from"]


@dataclass(frozen=True)
class Criterion:
    """One test of the claim, stated before the numbers are known, and what was measured.

    ``description`` is the rule ("plain-56 ends with a higher training error than plain-20"),
    ``finding`` the measurement in words with its numbers ("plain-56 3.1% vs plain-20 1.2%"),
    ``passed`` whether the measurement satisfies the rule.
    """

    description: str
    finding: str
    passed: bool
    # "within noise" when a multi-seed comparison could not tell the arms apart (see compare_seeds);
    # the verdict then says so instead of "contrary to the claim". "" otherwise.
    status: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.passed, bool):
            raise ConfigError(f"Criterion.passed must be a bool, got {self.passed!r}")
        if self.status not in ("", "within noise"):
            raise ConfigError(f"Criterion.status must be '' or 'within noise', got {self.status!r}")


@dataclass(frozen=True)
class Table:
    """A table of results for the report: a title, column names and rows of plain values."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]

    def __post_init__(self) -> None:
        for i, row in enumerate(self.rows):
            if len(row) != len(self.columns):
                raise ConfigError(f"Table {self.title!r}: row {i} has {len(row)} cells, expected {len(self.columns)}")


@dataclass
class Outcome:
    """What ``run(ctx, cfg)`` returns: the measured numbers and how they bear on the claim.

    ``results`` holds the experiment's own keys (``residual``, ``models``, ...) and goes into
    ``results.json`` as it is; ``setup`` and ``notes`` are report bullets (what was run; departures
    from the paper and caveats).
    """

    results: dict[str, Any]
    criteria: list[Criterion]
    tables: list[Table]
    setup: list[str]
    notes: list[str] = field(default_factory=list)


def verdict_from(criteria: list[Criterion], *, context: str) -> tuple[bool | str, str]:
    """``(reproduced, sentence)`` from the criteria: all met -> True, none -> False, else "partly".

    The sentence lists every finding and whether it agrees with the claim, so it is as honest as the
    criteria are; ``context`` says where it was measured ("at quick scale on mnist-5k").
    """
    if not criteria:
        raise ValueError("an experiment must state at least one criterion")
    met = sum(c.passed for c in criteria)
    reproduced: bool | str = True if met == len(criteria) else False if met == 0 else "partly"
    head = {True: "Reproduced", False: "Not reproduced", "partly": "Partly reproduced"}[reproduced]
    parts = [f"{c.finding} ({'as claimed' if c.passed else c.status or 'contrary to the claim'})" for c in criteria]
    return reproduced, f"{head} {context}: {'; '.join(parts)}."
