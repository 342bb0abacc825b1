"""The numpy helpers around the exported graphs: QDTrack proposals, DeepZero's solver, ID-Patch
patch placement, and the export rewrites (TVP forward, static GEGLU) against the library originals."""

from __future__ import annotations

import numpy as np
import pytest

from tridesign.models import deepzero, idpatch, trimot


def test_nms_suppresses_overlaps_and_keeps_score_order():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9]], dtype=np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.95], dtype=np.float32)
    assert list(trimot.nms(boxes, scores, 0.5)) == [3, 2]
    assert list(trimot.nms(boxes, scores, 0.99)) == [3, 0, 1, 2]


def test_anchor_count_matches_the_rpn_outputs_and_zero_deltas_decode_to_anchors():
    import torch

    model = trimot.build_detector("tiny").eval()
    with torch.no_grad():
        scores, deltas, *_ = model(torch.zeros(1, 3, 64, 64))
    base = trimot.anchors((64, 64))
    assert base.shape == (scores.shape[1], 4) and deltas.shape[1] == base.shape[0]
    decoded = trimot.decode(base, np.zeros_like(base), (64, 64))
    np.testing.assert_allclose(decoded, base.clip(0, 64), atol=1e-4)


def test_select_proposals_returns_batch_indexed_rois_inside_the_image():
    rng = np.random.default_rng(0)
    n = trimot.anchors((64, 64)).shape[0]
    rois = trimot.select_proposals(rng.standard_normal((2, n)), rng.standard_normal((2, n, 4)) * 0.1, (64, 64), post_nms=10)
    assert rois.shape[1] == 5 and 0 < len(rois) <= 20
    assert set(np.unique(rois[:, 0])) == {0.0, 1.0}
    assert (rois[:, 1:] >= 0).all() and (rois[:, 1:] <= 64).all()
    assert (rois[:, 3] >= rois[:, 1]).all() and (rois[:, 4] >= rois[:, 2]).all()


def test_roi_align_of_a_constant_map_is_that_constant():
    import torch

    from tridesign.models.qdtrack import _roi_align

    feat = torch.full((2, 3, 8, 8), 2.5)
    rois = torch.tensor([[1, 4.0, 4.0, 20.0, 28.0], [0, 0.0, 0.0, 31.0, 31.0]])
    out = _roi_align(feat, rois, 0.25, 7, 2)
    assert out.shape == (2, 3, 7, 7) and torch.allclose(out, torch.full_like(out, 2.5))
    ramp = torch.arange(8.0).repeat(8, 1)[None, None]  # value = x
    left, right = _roi_align(ramp, torch.tensor([[0, 0.0, 0.0, 16.0, 16.0], [0, 16.0, 0.0, 32.0, 16.0]]), 0.25, 2, 2)
    assert left.mean() < right.mean()


def test_solver_step_conserves_a_uniform_flow_and_has_no_autograd_path():
    u = np.ones((2, 8, 8), np.float32) * 0.3
    np.testing.assert_allclose(deepzero.solver_step(u), u, atol=1e-6)
    rng = np.random.default_rng(0)
    v = rng.standard_normal((2, 16, 16)).astype(np.float32)
    stepped = deepzero.solver_step(v)
    assert isinstance(stepped, np.ndarray) and stepped.dtype == np.float32
    assert np.abs(stepped).max() <= np.abs(v).max() + 1e-5  # interpolation + diffusion never amplify


def test_corrected_rollout_applies_the_correction_every_step():
    v = np.zeros((2, 16, 16), np.float32)
    traj = deepzero.corrected_rollout(v, lambda x: np.full((1, 2) + x.shape[2:], 0.1, np.float32), reynolds=0.5, steps=3)
    assert traj.shape == (3, 2, 16, 16)
    np.testing.assert_allclose(traj[:, 0, 0, 0], [0.1, 0.2, 0.3], atol=1e-5)


def test_place_id_patches_adds_at_centres_and_skips_faces_off_the_image():
    cond = np.zeros((3, 32, 32), np.float32)
    patches = np.ones((2, 3, 8, 8), np.float32)
    out = idpatch.place_id_patches(cond, patches, np.array([[10.0, 12.0], [30.0, 30.0]]))
    assert out.sum() == 3 * 64 and out[:, 8:16, 6:14].min() == 1 and cond.sum() == 0


def test_tvp_export_forward_equals_transformers_forward():
    import torch

    from tridesign.models import tvp

    torch.manual_seed(0)
    model = tvp.build_tvp("tiny").eval()
    for p in model.parameters():
        p.data.normal_(0, 0.5)  # away from the near-constant outputs of the default init
    inputs = {k: torch.from_numpy(v) for k, v in tvp._tvp_inputs("tiny", 1, 3).items()}
    with torch.no_grad():
        ours = model(*inputs.values())
        theirs = model.tvp(**inputs).logits
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5)
    assert (ours - 0.5).abs().max() > 1e-2


def test_static_geglu_equals_diffusers_geglu():
    import torch
    from diffusers.models.activations import GEGLU

    from tridesign.models.diffusion import static_geglu

    torch.manual_seed(0)
    ref = GEGLU(8, 6)
    x = torch.randn(2, 5, 8)
    expected = ref(x)
    got = static_geglu(torch.nn.Sequential(ref))(x)
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("config", ["tiny", "paper"])
def test_id_projection_shapes(config):
    import torch

    c = idpatch.IDPATCH[config]
    with torch.device("meta"):
        model = idpatch.build_projection(config)
        patches, tokens = model(torch.empty(3, c["face_dim"]))
    assert patches.shape == (3, 3, c["patch"], c["patch"])
    assert tokens.shape == (3, c["id_tokens"], idpatch.SDXL_UNET[config]["cross_attention_dim"])


def test_tvp_prompt_parameters_named_in_the_spec_exist():
    from tridesign.models import get_model

    spec = get_model("tvp")
    names = dict(spec.build("tiny").named_parameters())
    prompts = spec.notes["prompts"]
    assert len(prompts) == 5 and all(n in names for n in prompts)
    assert names["tvp.model.text_prompt"].shape[1] == 10  # the paper's 10-token text prompt
