"""Progress on stderr for long steps, so stdout stays clean for `--json`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console

stderr = Console(stderr=True)


@contextlib.contextmanager
def step(message: str) -> Iterator[None]:
    """Show a spinner while a step runs and a check mark with its duration when it ends."""
    import time

    start = time.perf_counter()
    with stderr.status(f"[bold]{message}[/]…", spinner="dots"):
        yield
    stderr.print(f"[green]✓[/] {message} [dim]({time.perf_counter() - start:.1f} s)[/]")
