"""docs/cli.md is generated from the commands themselves and must match them (a command, option or
help text changed without regenerating fails here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REGENERATE = "typer tridesign.cli.main utils docs --name tridesign --output docs/cli.md"


def test_cli_reference_matches_the_commands(tmp_path) -> None:
    out = tmp_path / "cli.md"
    typer = Path(sys.executable).with_name("typer")
    done = subprocess.run(
        [str(typer), "tridesign.cli.main", "utils", "docs", "--name", "tridesign", "--output", str(out)],
        cwd=REPO, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "COLUMNS": "100", "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    assert out.read_text() == (REPO / "docs" / "cli.md").read_text(), f"docs/cli.md is stale: run `.venv/bin/{REGENERATE}`"
