"""ZO-AE-DS (ICLR'22): black-box defense by zeroth-order optimization in an autoencoder's latent space.

The pipeline is denoiser -> encoder -> [black box: decoder -> classifier]. The defender owns and
trains the first two (white box); the decoder is frozen and the classifier is only queried, so the
ZO gradient is estimated at the latent z, the boundary between the two parts. The toolchain
therefore exports the parts separately (`zoaeds_whitebox`, `zoaeds_blackbox`) and keeps the whole
chain (`zoaeds`) for end-to-end checks.

Architectures (damon-demon/Black-Box-Defense, PROJECTS.md): DnCNN depth 17, 64 channels, batch norm,
residual output (Zhang et al. 2017, as in Salman et al.'s denoised smoothing); the CIFAR-10
autoencoder with four strided convs 3->24->48->96->192 to a 192x1x1 latent and a mirrored
transposed-conv decoder ending in a sigmoid; the classifier is ResNet-110 (*uncertain*: denoised
smoothing's CIFAR-10 classifier).
"""

from __future__ import annotations

import numpy as np

from tridesign.models.registry import ModelSpec, register

ZOAEDS_CONFIGS = {
    # DnCNN depth/width, AE channels (the last one is the latent size d), classifier depth/width.
    "tiny": {"dncnn": (5, 16), "ae": (6, 12, 24, 48), "classifier": (8, 8)},
    "paper": {"dncnn": (17, 64), "ae": (24, 48, 96, 192), "classifier": (110, 16)},
}
# (kernel, stride, padding) of the four encoder convs; the decoder uses them in reverse.
_AE_LAYOUT = ((4, 4, 0), (3, 3, 2), (4, 2, 1), (2, 2, 0))


def build_dncnn(config: str = "paper"):
    """DnCNN: conv+ReLU, (depth-2) x conv+BN+ReLU, conv; the output is the input minus the predicted noise."""
    import torch.nn as nn

    depth, width = ZOAEDS_CONFIGS[config]["dncnn"]
    layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1), nn.ReLU()]
    for _ in range(depth - 2):
        layers += [nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width, eps=1e-4), nn.ReLU()]
    layers.append(nn.Conv2d(width, 3, 3, padding=1, bias=False))

    class DnCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(*layers)

        def forward(self, x):
            return x - self.body(x)

    return DnCNN()


def build_encoder(config: str = "paper"):
    import torch.nn as nn

    chans = (3, *ZOAEDS_CONFIGS[config]["ae"])
    layers: list[nn.Module] = []
    for (k, s, p), cin, cout in zip(_AE_LAYOUT, chans[:-1], chans[1:]):
        layers += [nn.Conv2d(cin, cout, k, s, p), nn.ReLU()]
    return nn.Sequential(*layers)


def build_decoder(config: str = "paper"):
    import torch.nn as nn

    chans = (3, *ZOAEDS_CONFIGS[config]["ae"])
    layers: list[nn.Module] = []
    for i in reversed(range(len(_AE_LAYOUT))):
        k, s, p = _AE_LAYOUT[i]
        layers += [nn.ConvTranspose2d(chans[i + 1], chans[i], k, s, p), nn.ReLU() if i else nn.Sigmoid()]
    return nn.Sequential(*layers)


def build_classifier(config: str = "paper"):
    from tridesign.models.resnet import CifarResNet

    depth, width = ZOAEDS_CONFIGS[config]["classifier"]
    return CifarResNet(depth, width, num_classes=10)


def build_whitebox(config: str = "paper"):
    """Denoiser then encoder: image -> latent z (the part the defender trains)."""
    import torch.nn as nn

    return nn.Sequential(build_dncnn(config), build_encoder(config))


def build_blackbox(config: str = "paper"):
    """Frozen decoder then the queried classifier: latent z -> logits."""
    import torch.nn as nn

    return nn.Sequential(build_decoder(config), build_classifier(config))


def build_full(config: str = "paper"):
    import torch.nn as nn

    return nn.Sequential(build_whitebox(config), build_blackbox(config))


def latent_dim(config: str) -> int:
    """d, the dimension the ZO estimators perturb (192 for CIFAR-10)."""
    return ZOAEDS_CONFIGS[config]["ae"][-1]


def _image_inputs(config: str, batch: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"image": rng.random((batch, 3, 32, 32), dtype=np.float32)}


def _latent_inputs(config: str, batch: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"latent": rng.random((batch, latent_dim(config), 1, 1), dtype=np.float32)}


_SOURCE = "damon-demon/Black-Box-Defense; ZO-AE-DS (Zhang et al., ICLR'22), Sec. 4 and App."
_PARTS = {"white_box": "zoaeds_whitebox", "black_box": "zoaeds_blackbox"}

register(
    ModelSpec(
        name="zoaeds_whitebox",
        project="ZO-AE-DS",
        task="white-box part: DnCNN denoiser + encoder (CIFAR-10 image -> 192-d latent)",
        build=build_whitebox,
        example_inputs=_image_inputs,
        output_names=("latent",),
        published_params=717_736,
        published_source=f"reference count: DnCNN 17x64 (Zhang et al. 2017) 558,400 + CIFAR encoder 159,336; {_SOURCE}",
        params_source="derived",
        parts=_PARTS,
        dynamic_axes={"image": {0: "batch"}, "latent": {0: "batch"}},
    )
)
register(
    ModelSpec(
        name="zoaeds_blackbox",
        project="ZO-AE-DS",
        task="black-box part: frozen decoder + ResNet-110 classifier (192-d latent -> CIFAR-10 logits)",
        build=build_blackbox,
        example_inputs=_latent_inputs,
        output_names=("logits",),
        published_params=1_889_861,
        published_source=(
            f"reference count: mirrored decoder 159,147 + ResNet-110 1,730,714 (He et al. 2016 Table 6: 1.7 M); {_SOURCE}"
        ),
        params_source="derived",
        parts=_PARTS,
        dynamic_axes={"latent": {0: "batch"}, "logits": {0: "batch"}},
    )
)
register(
    ModelSpec(
        name="zoaeds",
        project="ZO-AE-DS",
        task="whole defended classifier: denoiser -> encoder -> decoder -> classifier",
        build=build_full,
        example_inputs=_image_inputs,
        output_names=("logits",),
        published_params=717_736 + 1_889_861,
        published_source=f"sum of the white-box and black-box parts' reference counts; {_SOURCE}",
        params_source="derived",
        parts=_PARTS,
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
    )
)
