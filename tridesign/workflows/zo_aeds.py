"""ZO-AE-DS mode: a white-box denoiser (+ encoder) trained through a black box it can only query.

ZO-AE-DS (ICLR'22) defends a black-box classifier with a denoiser in front of it. The black box
answers queries only, so the gradient of the loss w.r.t. the black box's *input* is estimated by
ZO and chained into the white box by backprop through the surrogate loss Σ z·ĝ. Its finding: put
an autoencoder's frozen decoder into the black box and estimate in the low-dimensional latent z
instead of in pixel space; at equal query budgets the latent estimate is far better (and CGE,
affordable at d = |z|, better still).

Here, at small scale on the bundled digits (1×32×32, d_pixel = 1024, d_latent = 64: the paper's
16× ratio): the black box (decoder + classifier, or the classifier alone for pixel-space ZO) is an
ONNX Runtime session; the white box is torch (it is trained with backprop, by the host). Per-sample
estimates: each row of a batch has its own loss, so q perturbations of all B rows run as one
session call of q·B rows. Loss: cross-entropy against the black box's own prediction on the clean
input, as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import onnxruntime as ort

from tridesign.deploy.zo.engine_ort import cross_entropy

if TYPE_CHECKING:
    import torch

LATENT = (4, 4, 4)  # 64 latent dimensions


class BlackBox:
    """An ONNX model reached only through its session's outputs; counts the queries it answers."""

    def __init__(self, onnx_bytes: bytes) -> None:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.queries = 0

    def logits(self, x: np.ndarray) -> np.ndarray:
        self.queries += len(x)
        return self.session.run(None, {self.input: np.ascontiguousarray(x, dtype=np.float32)})[0]

    def row_losses(self, x: np.ndarray, labels: np.ndarray) -> np.ndarray:
        logits = self.logits(x)
        return np.array([cross_entropy(logits[i : i + 1], labels[i : i + 1]) for i in range(len(x))])


def per_sample_gradient(
    box: BlackBox, v: np.ndarray, labels: np.ndarray, estimator: Literal["rge", "cge"], q: int, mu: float, rng: np.random.Generator
) -> np.ndarray:
    """ĝ[b] ≈ ∇ loss_b at v[b] for every row b (v: [B, ...]); q queries per row plus one base query.

    RGE: forward differences along q unit-sphere directions per row, scaled d/q (ZO-AE-DS).
    CGE: forward differences along q coordinates (all of them when q = d).
    """
    b, shape = len(v), v.shape[1:]
    flat = v.reshape(b, -1).astype(np.float32)
    d = flat.shape[1]
    base = box.row_losses(v, labels)
    if estimator == "rge":
        u = rng.standard_normal((q, b, d)).astype(np.float32)
        u /= np.linalg.norm(u, axis=2, keepdims=True)
        scale = d / q
    else:
        coords = np.sort(rng.choice(d, size=min(q, d), replace=False))
        u = np.zeros((len(coords), b, d), np.float32)
        u[np.arange(len(coords)), :, coords] = 1.0
        scale = 1.0
    perturbed = (flat[None] + mu * u).reshape(len(u) * b, *shape)
    losses = box.row_losses(perturbed, np.tile(labels, len(u))).reshape(len(u), b)
    coeffs = (losses - base[None]) / mu
    return (scale * np.einsum("qb,qbd->bd", coeffs, u)).reshape(v.shape)


@dataclass
class AEDSModels:
    """torch modules: denoiser, encoder, decoder, classifier (digits, 1×32×32)."""

    denoiser: "torch.nn.Module"
    encoder: "torch.nn.Module"
    decoder: "torch.nn.Module"
    classifier: "torch.nn.Module"


def build_models(seed: int = 0) -> AEDSModels:
    """Small DnCNN-style denoiser (residual), conv encoder to 4×4×4, mirrored decoder, CNN classifier."""
    import torch
    import torch.nn as nn

    torch.manual_seed(seed)

    class Denoiser(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers = [nn.Conv2d(1, 16, 3, padding=1), nn.ReLU()]
            layers += [nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU()] * 1
            layers += [nn.Conv2d(16, 1, 3, padding=1)]
            self.body = nn.Sequential(*layers)

        def forward(self, y):
            return y - self.body(y)

    encoder = nn.Sequential(nn.Conv2d(1, 16, 4, 4), nn.ReLU(), nn.Conv2d(16, LATENT[0], 3, 2, 1))
    decoder = nn.Sequential(nn.ConvTranspose2d(LATENT[0], 16, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(16, 1, 4, 4), nn.Tanh())
    classifier = nn.Sequential(
        nn.Conv2d(1, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 8 * 8, 10)
    )
    return AEDSModels(Denoiser(), encoder, decoder, classifier)


def to_onnx(module: "torch.nn.Module", example: "torch.Tensor") -> bytes:
    """Export a frozen black-box part (eval mode, dynamic batch) for ONNX Runtime."""
    import io
    import warnings

    import torch

    buffer = io.BytesIO()
    module.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), buffer, input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {0: "b"}, "logits": {0: "b"}}, opset_version=17, dynamo=False)
    return buffer.getvalue()


def digits_1ch(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The digits split as one channel of 32×32 in [-1, 1]."""
    from tridesign.data.digits import load_digits_split

    split = load_digits_split(seed)
    return split.x_train[:, :1], split.y_train, split.x_test[:, :1], split.y_test


def pretrain(models: AEDSModels, x: np.ndarray, y: np.ndarray, sigma: float, steps: int, seed: int = 0) -> None:
    """Stage 1: classifier on clean digits, autoencoder on reconstruction, denoiser by MSE (briefly)."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)
    parts = [
        (models.classifier, lambda xb, yb: F.cross_entropy(models.classifier(xb), yb)),
        (torch.nn.ModuleList([models.encoder, models.decoder]), lambda xb, yb: F.mse_loss(models.decoder(models.encoder(xb)), xb)),
        (models.denoiser, lambda xb, yb: F.mse_loss(models.denoiser(xb + sigma * torch.randn_like(xb)), xb)),
    ]
    for i, (module, loss_fn) in enumerate(parts):
        module.train()
        opt = torch.optim.Adam(module.parameters(), lr=3e-3)
        for _ in range(steps if i < 2 else steps // 4):
            idx = rng.choice(len(x), 64, replace=False)
            loss = loss_fn(torch.from_numpy(x[idx]), torch.from_numpy(y[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
        module.eval()


def train_stage2(
    models: AEDSModels, x: np.ndarray, mode: str, steps: int, q: int, sigma: float, mu: float = 5e-3,
    lr: float = 1e-3, batch: int = 32, seed: int = 0,
) -> dict:
    """Stage 2 in one of: fo-pixel, zo-pixel-rge, zo-latent-rge, zo-latent-cge (models are modified).

    Pixel modes train the denoiser through the classifier; latent modes train denoiser + encoder
    through decoder + classifier. ZO modes reach the black box only through an ORT session.
    """
    import torch
    import torch.nn.functional as F

    latent = "latent" in mode
    frozen = torch.nn.Sequential(models.decoder, models.classifier) if latent else models.classifier
    example = torch.zeros(1, *(LATENT if latent else (1, 32, 32)))
    box = BlackBox(to_onnx(frozen, example))
    for p in frozen.parameters():
        p.requires_grad_(False)
    white = [models.denoiser] + ([models.encoder] if latent else [])
    params = [p for m in white for p in m.parameters()]
    for m in white:
        m.train()
    opt = torch.optim.Adam(params, lr=lr)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    for _ in range(steps):
        idx = rng.choice(len(x), batch, replace=False)
        clean = torch.from_numpy(x[idx])
        with torch.no_grad():
            target = torch.from_numpy(box.logits((models.encoder(clean) if latent else clean).numpy()).argmax(1))
        noisy = clean + sigma * torch.randn_like(clean)
        v = models.denoiser(noisy)
        v = models.encoder(v) if latent else v
        if mode == "fo-pixel":
            loss = F.cross_entropy(frozen(v), target)
        else:
            g = per_sample_gradient(box, v.detach().numpy(), target.numpy(), mode.rsplit("-", 1)[1], q, mu, rng)
            loss = (v * torch.from_numpy(g)).sum() / batch
        opt.zero_grad()
        loss.backward()
        opt.step()
    for m in white:
        m.eval()
    return {"mode": mode, "steps": steps, "q": q, "queries_per_sample_step": q + 1 if mode != "fo-pixel" else 0,
            "black_box_queries": box.queries}


def noisy_accuracy(models: AEDSModels, x: np.ndarray, y: np.ndarray, sigma: float, latent: bool, seed: int = 1) -> float:
    """Top-1 of the whole pipeline on test digits with Gaussian noise σ (standard accuracy)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        xt = torch.from_numpy(x)
        noisy = xt + sigma * torch.randn(xt.shape, generator=gen)
        v = models.denoiser(noisy)
        logits = models.classifier(models.decoder(models.encoder(v)) if latent else v)
    return float((logits.argmax(1).numpy() == y).mean())
