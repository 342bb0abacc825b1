"""Shared fixtures of the sparsity tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Run torch on one thread: with 2 cores shared by other jobs, OpenMP spin-waiting made a
    2-thread training step ~20x slower than a 1-thread one. Restored after each test."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def resnet():
    """A seeded tiny ResNet-20 in eval mode with non-trivial BatchNorm statistics (so folding matters)."""
    import torch

    from tridesign.models.deepzero import build_resnet20

    torch.manual_seed(0)
    model = build_resnet20("tiny")
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture
def example():
    import numpy as np

    return {"input": np.random.default_rng(0).standard_normal((2, 3, 32, 32), dtype=np.float32)}


def export_check(model, inputs, atol: float = 1e-4):
    """Export with the project's exporter; assert ONNX Runtime equals the (pruned) torch model."""
    import numpy as np

    from tridesign.compiler.export import torch_outputs, torch_to_onnx
    from tridesign.verification import run_onnxruntime

    onnx_model = torch_to_onnx(model, inputs, ("logits",))
    got = run_onnxruntime(onnx_model, inputs)["logits"]
    want = torch_outputs(model, inputs, ("logits",))["logits"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=atol)
    return onnx_model
