"""Train ResNet-20 on scikit-learn's digits (32x32, 3 channels) and cache the weights.

    .venv/bin/python scripts/train_digits.py [--config tiny|paper] [--seed 0] [--retrain]

Prints the test accuracy and where the weights went; the sparsity, kernels and ZO work load the
cached model with `tridesign.models.digits.load_trained_resnet20()` (which trains on first use).
"""

from __future__ import annotations

import argparse
import time

from tridesign.models import digits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="tiny", choices=("tiny", "paper"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--retrain", action="store_true", help="train even when cached weights exist")
    args = parser.parse_args()
    start = time.perf_counter()
    model = digits.load_trained_resnet20(args.config, seed=args.seed, retrain=args.retrain)
    acc = digits.evaluate(model)
    print(f"resnet20 ({args.config}) on digits: test accuracy {acc:.4f} "
          f"({time.perf_counter() - start:.1f} s) -> {digits.weights_path(args.config, args.seed)}")


if __name__ == "__main__":
    main()
