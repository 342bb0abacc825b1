"""Shared output helpers: every report prints a rich table, or one JSON object with --json."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

stdout = Console()


def emit_json(payload: Any) -> None:
    """Exactly one JSON object on stdout (progress and notes go to stderr)."""
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


def table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    out = Table(title=title, title_justify="left")
    for i, column in enumerate(columns):
        out.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        out.add_row(*(fmt(v) for v in row))
    stdout.print(out)


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if value == 0:
            return "0"
        return f"{value:.3g}" if abs(value) < 1e-2 or abs(value) >= 1e5 else f"{value:,.3f}".rstrip("0").rstrip(".")
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def human(n: float) -> str:
    """1234567 -> '1.23 M' (parameters, MACs)."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f}"


def model_config(source: str, config: str | None) -> str:
    """The config to build; when SOURCE is a registered model and none was asked for, the tiny one,
    said on stderr (a user who expected the published size finds out before reading any number)."""
    if config is not None:
        return config
    from tridesign.artifact import open_source
    from tridesign.progress import stderr

    if open_source(source).kind == "registered":
        stderr.print(f"[yellow]note:[/] building the tiny config of {source} (--config paper for the published size)")
    return "tiny"
