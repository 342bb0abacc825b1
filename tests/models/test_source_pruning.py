"""DP4TL's label-mapping and feature-mapping scores on synthetic data with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from tridesign.errors import UsageError
from tridesign.models.source_pruning import (
    feature_mapping,
    label_mapping_votes,
    prune_source,
    pruning_ratio,
    top_k_kept,
)


def test_label_mapping_keeps_the_source_classes_the_target_maps_to():
    rng = np.random.default_rng(0)
    # 300 target images; the surrogate maps 70 % of them to source class 7 and 25 % to class 2.
    mapped = rng.choice([7, 2, 0, 9], size=300, p=[0.7, 0.25, 0.03, 0.02])
    logits = rng.standard_normal((300, 10)) * 0.1
    logits[np.arange(300), mapped] += 5.0
    votes = label_mapping_votes(logits)
    assert votes.sum() == 300 and votes.shape == (10,)
    assert list(top_k_kept(votes, 2)) == [2, 7]
    source_labels = np.repeat(np.arange(10), 50)
    mask = prune_source(source_labels, top_k_kept(votes, 2))
    assert mask.sum() == 100 and set(source_labels[mask]) == {2, 7}
    assert pruning_ratio(mask) == pytest.approx(0.8)


def test_top_k_breaks_ties_by_class_index_and_rejects_bad_k():
    votes = np.array([3, 5, 5, 0, 3])
    assert list(top_k_kept(votes, 3)) == [0, 1, 2]
    with pytest.raises(UsageError):
        top_k_kept(votes, 0)
    with pytest.raises(UsageError):
        label_mapping_votes(np.zeros(5))


def test_feature_mapping_keeps_the_clusters_near_the_target_features():
    rng = np.random.default_rng(1)
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], dtype=float)
    source = np.concatenate([c + rng.standard_normal((40, 2)) for c in centres])
    target = np.concatenate([centres[1] + rng.standard_normal((30, 2)), centres[3] + rng.standard_normal((10, 2))])
    fm = feature_mapping(source, target, clusters=4, seed=0)
    assert fm.votes.sum() == 40 and fm.source_clusters.shape == (160,)
    kept = top_k_kept(fm.votes, 2)
    kept_centres = fm.centroids[kept]
    assert {tuple(np.rint(c / 10).astype(int)) for c in kept_centres} == {(1, 0), (1, 1)}
    mask = prune_source(fm.source_clusters, kept)
    assert mask[40:80].all() and mask[120:].all() and not mask[:40].any() and not mask[80:120].any()


def test_feature_mapping_rejects_mismatched_widths():
    with pytest.raises(UsageError, match="widths"):
        feature_mapping(np.zeros((10, 3)), np.zeros((5, 2)), clusters=2)
