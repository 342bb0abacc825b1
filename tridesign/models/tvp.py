"""TVP (CVPR'23): text-visual prompting for 2D temporal video grounding.

transformers ships the architecture (`TvpForVideoGrounding`, ported from intel/TVP), so the model is
built from a `TvpConfig` rather than rewritten: ResNet-50 grid features per sampled frame (3x3 conv,
2x2 max-pool, ReLU), a BERT-base text encoder and cross-modal fusion (12 layers, 768 wide), a 96-px
"framepad" visual prompt (replace mode) and a 10-token text prompt (`text_prompt`), an MLP head for
normalised start/end times. The prompts are the parameters ZO finetuning tunes on the device.
Paper config: `TvpConfig()` defaults (= intel/tvp-base), 48 frames at 448x448, 32 text tokens.
"""

from __future__ import annotations

import numpy as np

from tridesign.models.registry import ModelSpec, register

TVP_CONFIGS = {
    "tiny": {
        "frames": 2, "image": 128, "text_len": 8,
        "tvp": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
                "num_frames": 2, "max_img_size": 128, "visual_prompt_size": 16, "vocab_size": 100,
                "max_position_embeddings": 64, "max_grid_row_position_embeddings": 16, "max_grid_col_position_embeddings": 16},
        "backbone": {"embedding_size": 8, "hidden_sizes": [8, 16, 32, 64], "depths": [1, 1, 1, 1], "layer_type": "basic"},
    },
    "paper": {"frames": 48, "image": 448, "text_len": 32, "tvp": {}, "backbone": None},
}


def tvp_config(config: str):
    from transformers import ResNetConfig, TvpConfig

    c = TVP_CONFIGS[config]
    kwargs = dict(c["tvp"])
    if c["backbone"] is not None:
        kwargs["backbone_config"] = ResNetConfig(out_features=["stage4"], **c["backbone"])
    return TvpConfig(**kwargs)


def build_tvp(config: str = "paper"):
    """TvpForVideoGrounding behind a tuple-returning forward (input_ids, pixel_values, attention_mask)."""
    import types

    import torch.nn as nn
    from transformers import TvpForVideoGrounding

    class TvpGrounding(nn.Module):
        def __init__(self):
            super().__init__()
            self.tvp = TvpForVideoGrounding(tvp_config(config))
            embeddings = self.tvp.model.visual_embeddings
            embeddings.add_2d_positional_embeddings = types.MethodType(_add_2d_positions, embeddings)

        def forward(self, input_ids, pixel_values, attention_mask):
            """TvpModel.forward step by step, with the padding mask built as an additive 4D mask.

            transformers builds the mask with `create_bidirectional_mask`, whose traced graph (And +
            Expand over Shape arithmetic) TVM's ONNX importer rejects; `(1 - mask) * min` is the same
            bidirectional padding mask. The prompter scales its input in place, hence the clone.
            """
            import torch

            m = self.tvp.model
            batch = int(input_ids.shape[0])
            visual = m.visual_embeddings(m.vision_model(m.visual_prompter(pixel_values.clone())))
            text = m.embeddings(input_ids=input_ids)
            embeds = torch.cat([m.text_prompt.expand(batch, -1, -1), text, visual], dim=1)
            keep = torch.cat(
                [embeds.new_ones(batch, m.text_prompt.shape[1]), attention_mask.to(embeds.dtype), embeds.new_ones(batch, visual.shape[1])],
                dim=1,
            )
            additive = (1.0 - keep)[:, None, None, :] * torch.finfo(embeds.dtype).min
            hidden = m.encoder(embeds, attention_mask=additive, return_dict=True).last_hidden_state
            return self.tvp.video_grounding_head(m.pooler(hidden))

    return TvpGrounding()


def _add_2d_positions(self, grid, interpolate_pos_encoding: bool = False):
    """Row + column position embeddings broadcast over the batch.

    transformers 5.23 views the column embeddings as (batch, 1, width, hidden), which fails for any
    batch above 1; this is the broadcast it intends (grids larger than the tables are cut, as there).
    """
    import torch

    _, height, width, _ = grid.shape
    rows = self.row_position_embeddings(torch.arange(min(self.max_grid_row_position_embeddings, height), device=grid.device))
    cols = self.col_position_embeddings(torch.arange(min(self.max_grid_col_position_embeddings, width), device=grid.device))
    return grid + rows[:, None, :] + cols[None, :, :]


def _tvp_inputs(config: str, batch: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    c = TVP_CONFIGS[config]
    vocab = c["tvp"].get("vocab_size", 30522)
    ids = rng.integers(1000 % vocab, vocab, (batch, c["text_len"]), dtype=np.int64)
    mask = np.ones((batch, c["text_len"]), dtype=np.int64)
    mask[:, c["text_len"] * 3 // 4 :] = 0  # padded tail, so the mask path is exercised
    frames = rng.standard_normal((batch, c["frames"], 3, c["image"], c["image"]), dtype=np.float32)
    return {"input_ids": ids, "pixel_values": frames, "attention_mask": mask}


register(
    ModelSpec(
        name="tvp",
        project="TVP",
        task="temporal video grounding (frames + query -> normalised start/end)",
        build=build_tvp,
        example_inputs=_tvp_inputs,
        output_names=("logits",),
        published_params=168_351_298,
        published_source=(
            "reference count of TvpConfig() defaults (= intel/tvp-base: ResNet-50 + BERT-base fusion + framepad "
            "prompts for 48 frames at 448 px); the paper prints no total"
        ),
        params_source="derived",
        # The ZO-tunable parameters (names in the built module).
        notes={"prompts": ("tvp.model.text_prompt", *(f"tvp.model.visual_prompter.pad_{s}" for s in ("up", "down", "left", "right")))},
    )
)
