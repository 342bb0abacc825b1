"""`python -m tridesign_board BUNDLE_DIR` on the board (or `python -m tridesign.board` here).

Prints what ran, its outputs against the bundle's reference within the stated tolerance, and the
latency; `--json` prints one JSON object instead. Exit 0 when the check passed, 1 when it failed or
the bundle cannot run, 2 for a bad command line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .check import BoardError, load_arrays
from .runner import run_bundle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tridesign_board", description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path, help="the unpacked bundle folder")
    parser.add_argument("--input", type=Path, help=".npz with one array per input name (default: the bundle's reference inputs)")
    parser.add_argument("-o", "--out", type=Path, help="write the outputs to this .npz")
    parser.add_argument("--engine", default="auto", choices=["auto", "tensorrt", "tvm", "onnxruntime"])
    parser.add_argument("--engine-dir", type=Path, help="where a TensorRT engine is built and kept (default: BUNDLE.engines beside the bundle)")
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    try:
        inputs = load_arrays(args.input) if args.input else None
        report, outputs = run_bundle(args.bundle, inputs, args.engine, args.repeat, args.warmup, args.engine_dir)
        if args.out:
            tmp = args.out.with_name(f".{args.out.name}.tmp")
            with open(tmp, "wb") as handle:
                np.savez(handle, **outputs)
            tmp.replace(args.out)
    except BoardError as err:
        print(f"tridesign_board: error: {err}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0 if report.get("passed", True) else 1


def format_report(report: dict) -> str:
    """The report as a few aligned lines for a terminal on the board."""
    lat = report["latency_ms"]
    lines = [
        f"bundle    {report['bundle']} ({report['model']}, target {report['target']})",
        f"engine    {report['engine']} ({report['precision']})",
        f"latency   median {lat['median']:.3f} ms, p90 {lat['p90']:.3f}, p99 {lat['p99']:.3f} ({lat['repeat']} runs)",
    ]
    if "power" in report:
        lines.append(f"power     {report['power']['mean_w']:.2f} W mean, {report['power']['energy_per_inference_mj']:.2f} mJ per inference")
    for row in report.get("comparison", []):
        verdict = "PASS" if row["passed"] else "FAIL"
        detail = row.get("error") or f"max abs {row['max_abs_err']:.3g} <= {row['allowed']:.3g}? rel {row['max_rel_err']:.3g}"
        lines.append(f"{verdict:9s} {row['output']}: {detail}")
    lines += [f"note      {note}" for note in report["notes"]]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
