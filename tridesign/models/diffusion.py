"""Stable Diffusion v1.4 for UnlearnDiff (ECCV'24) and AdvUnlearn (NeurIPS'24).

Both projects work on SD v1.4's CLIP ViT-L/14 text encoder and its UNet: UnlearnDiff attacks an
unlearned model by optimising prompt tokens against the UNet's denoising error, AdvUnlearn
adversarially trains the text encoder. The two are exported separately (`sd14_text_encoder`,
`sd14_unet`), and `unlearndiff_sd14` chains them (prompt tokens + noisy latent + timestep -> predicted
noise), the exact function the attack queries. `advunlearn_text_encoder` is the same architecture
registered under AdvUnlearn, the encoder that project trains and deploys.

Configurations are written out from the released SD v1.4 `text_encoder/config.json` and
`unet/config.json` (CompVis/stable-diffusion-v1-4), since nothing can be downloaded here; the
published sizes are the model card's "860M UNet and 123M text encoder".
"""

from __future__ import annotations

import numpy as np

from tridesign.models.registry import ModelSpec, register

SD14_TEXT = {
    "paper": {"vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
              "num_attention_heads": 12, "max_position_embeddings": 77, "hidden_act": "quick_gelu", "projection_dim": 768},
    "tiny": {"vocab_size": 1000, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
             "num_attention_heads": 2, "max_position_embeddings": 16, "hidden_act": "quick_gelu", "projection_dim": 32,
             "bos_token_id": 998, "eos_token_id": 999},
}
SD14_UNET = {
    "paper": {"sample_size": 64, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
              "block_out_channels": (320, 640, 1280, 1280),
              "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
              "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
              "cross_attention_dim": 768, "attention_head_dim": 8, "norm_num_groups": 32, "act_fn": "silu",
              "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0},
    # One 32-channel resolution level with cross-attention (plus the mid block): every kind of
    # layer of the paper UNet, at a size that exports and compiles in seconds.
    "tiny": {"sample_size": 8, "in_channels": 4, "out_channels": 4, "layers_per_block": 1,
             "block_out_channels": (32,),
             "down_block_types": ("CrossAttnDownBlock2D",),
             "up_block_types": ("CrossAttnUpBlock2D",),
             "cross_attention_dim": 32, "attention_head_dim": 8, "norm_num_groups": 8, "act_fn": "silu",
             "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0},
}
# Prompt length (CLIP's 77 tokens) per config.
TEXT_LEN = {"paper": 77, "tiny": 8}


def build_text_encoder(config: str = "paper"):
    """CLIPTextModel returning the last hidden state (what SD conditions its UNet on)."""
    import torch.nn as nn
    from transformers import CLIPTextConfig, CLIPTextModel

    class TextEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.clip = CLIPTextModel(CLIPTextConfig(**SD14_TEXT[config]))

        def forward(self, input_ids):
            return self.clip(input_ids=input_ids, return_dict=True).last_hidden_state

    return TextEncoder()


def static_geglu(model):
    """Give every diffusers GEGLU a slice at a fixed width instead of `chunk(2)`; returns `model`.

    The TorchScript exporter writes `chunk` on a traced tensor as Slice ops whose bounds come from
    Shape arithmetic; TVM's ONNX importer turns those into `dynamic_strided_slice` with unknown shape
    and cannot legalize the matmul after it. Slicing at `proj.out_features // 2` (a Python int) is
    the same function with constant bounds, so every backend sees static shapes.
    """
    import types

    import torch.nn.functional as F
    from diffusers.models.activations import GEGLU

    def forward(self, hidden_states, *args, **kwargs):
        h = self.proj(hidden_states)
        half = self.proj.out_features // 2
        return h[..., :half] * F.gelu(h[..., half:])

    for module in model.modules():
        if isinstance(module, GEGLU):
            module.forward = types.MethodType(forward, module)
    return model


def build_unet(config: str = "paper"):
    """UNet2DConditionModel: (noisy latent, timestep, text states) -> predicted noise."""
    import torch.nn as nn
    from diffusers import UNet2DConditionModel

    class Unet(nn.Module):
        def __init__(self):
            super().__init__()
            self.unet = static_geglu(UNet2DConditionModel(**SD14_UNET[config]))

        def forward(self, sample, timestep, encoder_hidden_states):
            return self.unet(sample, timestep, encoder_hidden_states, return_dict=False)[0]

    return Unet()


def build_sd14(config: str = "paper"):
    """Text encoder then UNet: the denoiser UnlearnDiff's attack differentiates through its prompt."""
    import torch.nn as nn

    class Denoiser(nn.Module):
        def __init__(self):
            super().__init__()
            self.text_encoder = build_text_encoder(config)
            self.unet = build_unet(config)

        def forward(self, input_ids, sample, timestep):
            return self.unet(sample, timestep, self.text_encoder(input_ids))

    return Denoiser()


def _ids(rng: np.random.Generator, config: str, batch: int) -> np.ndarray:
    vocab = SD14_TEXT[config]["vocab_size"]
    ids = rng.integers(1, vocab - 2, (batch, TEXT_LEN[config]), dtype=np.int64)
    ids[:, 0] = vocab - 2  # begin-of-text, end-of-text: CLIP pools at the highest id
    ids[:, -1] = vocab - 1
    return ids


def _latent(rng: np.random.Generator, config: str, batch: int) -> tuple[np.ndarray, np.ndarray]:
    size = SD14_UNET[config]["sample_size"]
    sample = rng.standard_normal((batch, 4, size, size), dtype=np.float32)
    timestep = rng.integers(1, 1000, (batch,)).astype(np.float32)
    return sample, timestep


def _text_inputs(config: str, batch: int, seed: int) -> dict[str, np.ndarray]:
    return {"input_ids": _ids(np.random.default_rng(seed), config, batch)}


def _unet_inputs(config: str, batch: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    sample, timestep = _latent(rng, config, batch)
    width = SD14_UNET[config]["cross_attention_dim"]
    states = rng.standard_normal((batch, TEXT_LEN[config], width), dtype=np.float32)
    return {"sample": sample, "timestep": timestep, "encoder_hidden_states": states}


def _sd14_inputs(config: str, batch: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = _ids(rng, config, batch)
    sample, timestep = _latent(rng, config, batch)
    return {"input_ids": ids, "sample": sample, "timestep": timestep}


_TEXT_SOURCE = "SD v1.4 model card (CompVis/stable-diffusion-v1-4): 123M CLIP ViT-L/14 text encoder; 123,060,480 counted"
_UNET_SOURCE = "SD v1.4 model card (CompVis/stable-diffusion-v1-4): 860M UNet; 859,520,964 counted"
_PARTS = {"text_encoder": "sd14_text_encoder", "unet": "sd14_unet"}

register(
    ModelSpec(
        name="sd14_text_encoder",
        project="UnlearnDiff",
        task="SD v1.4 CLIP text encoder (prompt tokens -> conditioning states)",
        build=build_text_encoder,
        example_inputs=_text_inputs,
        output_names=("text_states",),
        published_params=123_000_000,
        published_source=_TEXT_SOURCE,
        params_source="model card",
        parts=_PARTS,
    )
)
register(
    ModelSpec(
        name="sd14_unet",
        project="UnlearnDiff",
        task="SD v1.4 UNet (noisy latent, timestep, text states -> predicted noise)",
        build=build_unet,
        example_inputs=_unet_inputs,
        output_names=("noise_pred",),
        published_params=860_000_000,
        published_source=_UNET_SOURCE,
        params_source="model card",
        parts=_PARTS,
    )
)
register(
    ModelSpec(
        name="unlearndiff_sd14",
        project="UnlearnDiff",
        task="SD v1.4 denoiser with its prompt (tokens + latent + timestep -> noise): the attack's objective",
        build=build_sd14,
        example_inputs=_sd14_inputs,
        output_names=("noise_pred",),
        published_params=983_000_000,
        published_source="sum of the model card's 123M text encoder and 860M UNet",
        params_source="model card",
        parts=_PARTS,
    )
)
register(
    ModelSpec(
        name="advunlearn_text_encoder",
        project="AdvUnlearn",
        task="adversarially trained SD v1.4 CLIP text encoder (prompt tokens -> conditioning states)",
        build=build_text_encoder,
        example_inputs=_text_inputs,
        output_names=("text_states",),
        published_params=123_000_000,
        published_source=_TEXT_SOURCE + "; AdvUnlearn trains this encoder (Zhang et al., NeurIPS'24)",
        params_source="model card",
    )
)
