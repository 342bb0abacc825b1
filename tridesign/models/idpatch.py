"""ID-Patch (CVPR'25): identity association for group photos on SDXL + a pose ControlNet.

A 512-d ArcFace embedding per face is projected twice (bytedance/ID-Patch, `modules/inferencer.py`):
`patch_proj` to a 3x64x64 "ID patch" added to the ControlNet condition image at the face's
position, and `prompt_proj` to 16 ID tokens of width 2048 appended to the text embeddings. Both are
diffusers `ImageProjection`s (a linear layer and a LayerNorm). Two graphs deploy:
`idpatch_projection` (face embeddings -> patches and tokens) and `idpatch_unet_controlnet` (the SDXL
UNet conditioned by the ControlNet residuals, with 77 text + 16 ID tokens for one face). Placing the
patches on the condition image is a data-dependent paste done in numpy (`place_id_patches`).

SDXL's UNet config is written out from stabilityai/stable-diffusion-xl-base-1.0 `unet/config.json`;
the ControlNet is `ControlNetModel.from_unet` of it (the full-size SDXL ControlNet layout; the
released ID-Patch ControlNet config is *assumed* to match).
"""

from __future__ import annotations

import numpy as np

from tridesign.models.registry import ModelSpec, register

SDXL_UNET = {
    "paper": {"sample_size": 128, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
              "block_out_channels": (320, 640, 1280),
              "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
              "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
              "transformer_layers_per_block": (1, 2, 10), "attention_head_dim": (5, 10, 20),
              "cross_attention_dim": 2048, "use_linear_projection": True, "addition_embed_type": "text_time",
              "addition_time_embed_dim": 256, "projection_class_embeddings_input_dim": 2816, "norm_num_groups": 32},
    # One 32-channel level with cross-attention, text-time embedding and the ControlNet residuals.
    "tiny": {"sample_size": 8, "in_channels": 4, "out_channels": 4, "layers_per_block": 1,
             "block_out_channels": (32,),
             "down_block_types": ("CrossAttnDownBlock2D",),
             "up_block_types": ("CrossAttnUpBlock2D",),
             "transformer_layers_per_block": (1,), "attention_head_dim": (4,),
             "cross_attention_dim": 32, "use_linear_projection": True, "addition_embed_type": "text_time",
             "addition_time_embed_dim": 8, "projection_class_embeddings_input_dim": 80, "norm_num_groups": 8},
}
# face embedding width, ID tokens per face, ID patch side, pooled text width, ControlNet hint channels
IDPATCH = {
    "paper": {"face_dim": 512, "id_tokens": 16, "patch": 64, "pooled": 1280, "hint": (16, 32, 96, 256)},
    "tiny": {"face_dim": 32, "id_tokens": 4, "patch": 8, "pooled": 32, "hint": (8, 8, 8, 8)},
}
TEXT_TOKENS = {"paper": 77, "tiny": 8}


def build_projection(config: str = "paper"):
    """Face embeddings (B, face_dim) -> ID patches (B, 3, P, P) and ID tokens (B, 16, 2048)."""
    import torch.nn as nn
    from diffusers.models.embeddings import ImageProjection

    c, width = IDPATCH[config], SDXL_UNET[config]["cross_attention_dim"]

    class IdProjection(nn.Module):
        def __init__(self):
            super().__init__()
            self.patch_proj = ImageProjection(c["face_dim"], c["patch"] ** 2, 3)
            self.prompt_proj = ImageProjection(c["face_dim"], width, c["id_tokens"])

        def forward(self, face_embeds):
            patches = self.patch_proj(face_embeds).reshape(-1, 3, c["patch"], c["patch"])
            return patches, self.prompt_proj(face_embeds)

    return IdProjection()


def build_unet_controlnet(config: str = "paper"):
    """SDXL UNet whose down/mid residuals come from a ControlNet that sees the ID-patched condition."""
    import torch.nn as nn
    from diffusers import ControlNetModel, UNet2DConditionModel

    from tridesign.models.diffusion import static_geglu

    class ConditionedUnet(nn.Module):
        def __init__(self):
            super().__init__()
            self.unet = static_geglu(UNet2DConditionModel(**SDXL_UNET[config]))
            self.controlnet = static_geglu(
                ControlNetModel.from_unet(
                    self.unet, conditioning_embedding_out_channels=IDPATCH[config]["hint"], load_weights_from_unet=False
                )
            )

        def forward(self, sample, timestep, encoder_hidden_states, text_embeds, time_ids, controlnet_cond):
            added = {"text_embeds": text_embeds, "time_ids": time_ids}
            down, mid = self.controlnet(
                sample, timestep, encoder_hidden_states, controlnet_cond, added_cond_kwargs=added, return_dict=False
            )
            return self.unet(
                sample, timestep, encoder_hidden_states, added_cond_kwargs=added,
                down_block_additional_residuals=down, mid_block_additional_residual=mid, return_dict=False,
            )[0]

    return ConditionedUnet()


def place_id_patches(condition: np.ndarray, patches: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Add each face's (3, P, P) patch to the (3, H, W) condition image centred at its (x, y).

    Faces whose patch would leave the image are skipped, as in ID-Patch's inference code.
    """
    out = condition.copy()
    _, h, w = condition.shape
    p = patches.shape[-1]
    for patch, (cx, cy) in zip(patches, np.rint(centres).astype(int)):
        x0, y0 = cx - p // 2, cy - p // 2
        if x0 < 0 or y0 < 0 or x0 + p > w or y0 + p > h:
            continue
        out[:, y0 : y0 + p, x0 : x0 + p] += patch
    return out


def _projection_inputs(config: str, batch: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((batch, IDPATCH[config]["face_dim"]), dtype=np.float32)
    return {"face_embeds": emb / np.linalg.norm(emb, axis=1, keepdims=True)}


def _unet_inputs(config: str, batch: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    u, c = SDXL_UNET[config], IDPATCH[config]
    size = u["sample_size"]
    tokens = TEXT_TOKENS[config] + c["id_tokens"]  # one face
    return {
        "sample": rng.standard_normal((batch, 4, size, size), dtype=np.float32),
        "timestep": rng.integers(1, 1000, (batch,)).astype(np.float32),
        "encoder_hidden_states": rng.standard_normal((batch, tokens, u["cross_attention_dim"]), dtype=np.float32),
        "text_embeds": rng.standard_normal((batch, c["pooled"]), dtype=np.float32),
        # original size, crop offset, target size: SDXL's micro-conditioning
        "time_ids": np.tile(np.array([size * 8, size * 8, 0, 0, size * 8, size * 8], np.float32), (batch, 1)),
        "controlnet_cond": rng.random((batch, 3, size * 8, size * 8), dtype=np.float32),
    }


_PARTS = {"projection": "idpatch_projection", "unet_controlnet": "idpatch_unet_controlnet"}

register(
    ModelSpec(
        name="idpatch_projection",
        project="ID-Patch",
        task="face embedding -> ID patch (3x64x64) and 16 ID tokens (x2048)",
        build=build_projection,
        example_inputs=_projection_inputs,
        output_names=("id_patches", "id_tokens"),
        published_params=23_126_016,
        published_source="reference count of ID-Patch's two ImageProjection heads (512->3x4096 and 512->16x2048, each + LayerNorm)",
        params_source="derived",
        parts=_PARTS,
    )
)
register(
    ModelSpec(
        name="idpatch_unet_controlnet",
        project="ID-Patch",
        task="SDXL UNet + ControlNet conditioned on the ID-patched pose image, 77 text + 16 ID tokens",
        build=build_unet_controlnet,
        example_inputs=_unet_inputs,
        output_names=("noise_pred",),
        published_params=3_818_477_844,
        published_source=(
            "reference count: SDXL base UNet 2,567,463,684 (stabilityai/stable-diffusion-xl-base-1.0; SDXL paper: 2.6B) "
            "+ full SDXL ControlNet 1,251,014,160 (ControlNetModel.from_unet layout, ~1.25B as released SDXL ControlNets)"
        ),
        params_source="derived",
        parts=_PARTS,
    )
)
