"""Writing what a bench measured: fixed-width tables on stdout, a JSON report on disk."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass
from datetime import datetime
from pathlib import Path

from bench.harness.corpus import REPO

RESULTS_DIR = REPO / "bench" / "results"


def default_path(bench: str) -> Path:
    """``bench/results/<bench>-<local time>.json``."""
    return RESULTS_DIR / f"{bench}-{datetime.now():%Y%m%d-%H%M%S}.json"


def write_json(path: Path, report: object) -> None:
    """Write a report (a dataclass or plain JSON data), creating the folder; says where."""
    data = asdict(report) if is_dataclass(report) and not isinstance(report, type) else report
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell: the first left-aligned, the others right."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def fixed(value: float | None, digits: int = 2) -> str:
    """A number with ``digits`` decimals, ``-`` for none."""
    return "-" if value is None else f"{value:.{digits}f}"


def percent(value: float | None) -> str:
    """A fraction as a percentage with one decimal, ``-`` for none."""
    return "-" if value is None else f"{value * 100:.1f}"
