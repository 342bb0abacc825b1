"""Entry point: builds the typer app from the command modules and maps errors to exit codes.

A `TridesignError` (the user's mistake or a failure they can act on) becomes one line on stderr and
its exit code (2 usage, 1 failure); click itself reports bad options (exit 2) and Ctrl-C ("Aborted!",
exit 1). Artifacts are built
in temporary directories and renamed at the end, so neither leaves anything half-written.
"""

from __future__ import annotations

import sys

import typer

from tridesign.cli import codesign, core, deploy, evaluate, finetune, hwsim, inspect, sparsity, track, tune, videos
from tridesign.errors import TridesignError

# Each module exposes register(app); listed explicitly so the command set is visible in one place.
COMMAND_MODULES = [core, evaluate, inspect, deploy, finetune, hwsim, sparsity, track, tune, videos, codesign]

app = typer.Typer(
    name="tridesign",
    help="Edge deployment and data-model-circuit co-design: inspect, export, compile, evaluate, tune, profile, deploy, run, simulate, sweep, codesign, finetune.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Plain click errors: a usage mistake is reported in one "Error: ..." line, not a box.
    rich_markup_mode=None,
)
for _module in COMMAND_MODULES:
    _module.register(app)


def main() -> None:
    try:
        app(standalone_mode=True)
    except TridesignError as err:
        print(f"tridesign: error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
