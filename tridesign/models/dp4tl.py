"""DP4TL (NeurIPS'23): source dataset pruning for transfer learning.

Two models: the source model pretrained on the (pruned) source dataset, ResNet-101 on ImageNet in
the paper, and the ResNet-18 surrogate whose source-class predictions on target images drive label
mapping. Both come from the shared ResNet builder, so their sizes match torchvision's published
ones (44.5 M and 11.7 M). The scoring and pruning functions themselves are in
`tridesign.models.source_pruning` (numpy / scikit-learn; they run on the surrogate's outputs).
"""

from __future__ import annotations

import numpy as np

from tridesign.models.registry import ModelSpec, register

# depth, first-stage width, classes, input side
DP4TL_CONFIGS = {
    "source": {"tiny": (50, 4, 20, 32), "paper": (101, 64, 1000, 224)},
    "surrogate": {"tiny": (18, 4, 20, 32), "paper": (18, 64, 1000, 224)},
}


def build_source(config: str = "paper"):
    from tridesign.models.resnet import build_resnet

    depth, width, classes, _ = DP4TL_CONFIGS["source"][config]
    return build_resnet(depth, width, classes)


def build_surrogate(config: str = "paper"):
    from tridesign.models.resnet import build_resnet

    depth, width, classes, _ = DP4TL_CONFIGS["surrogate"][config]
    return build_resnet(depth, width, classes)


def _inputs(role: str):
    def make(config: str, batch: int, seed: int) -> dict[str, np.ndarray]:
        side = DP4TL_CONFIGS[role][config][3]
        rng = np.random.default_rng(seed)
        return {"image": rng.standard_normal((batch, 3, side, side), dtype=np.float32)}

    return make


_SOURCE = "He et al. 2016 architectures; roles from DP4TL (OPTML-Group/DP4TL)"

register(
    ModelSpec(
        name="dp4tl_source_resnet101",
        project="DP4TL",
        task="source model pretrained on the pruned source dataset (ImageNet classes)",
        build=build_source,
        example_inputs=_inputs("source"),
        output_names=("logits",),
        published_params=44_549_160,
        published_source=f"torchvision's weights table, ResNet101_Weights.IMAGENET1K_V1: 44,549,160 params; {_SOURCE}",
        params_source="model card",
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
    )
)
register(
    ModelSpec(
        name="dp4tl_surrogate_resnet18",
        project="DP4TL",
        task="surrogate that maps target images to source classes (label mapping)",
        build=build_surrogate,
        example_inputs=_inputs("surrogate"),
        output_names=("logits",),
        published_params=11_689_512,
        published_source=f"torchvision's weights table, ResNet18_Weights.IMAGENET1K_V1: 11,689,512 params; {_SOURCE}",
        params_source="model card",
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
    )
)
