"""DP4TL's source-data scoring: which source classes (or feature clusters) a target task needs.

Label mapping (supervised pretraining): the surrogate classifies every target image into a source
class; a source class's score is the number of target images mapped to it, and the top-k classes
are kept. Feature mapping (self-supervised pretraining, no source labels): source features are
clustered with k-means, every target feature votes for its nearest centroid, and the most-voted
clusters are kept. Pruning then keeps the source samples whose class or cluster survived. Plain
numpy and scikit-learn, so scoring runs on outputs of any engine (torch, ORT, TVM).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tridesign.errors import UsageError


def label_mapping_votes(target_logits: np.ndarray, num_source_classes: int | None = None) -> np.ndarray:
    """(N, S) surrogate logits of target images -> (S,) number of target images mapped to each class."""
    if target_logits.ndim != 2:
        raise UsageError(f"target logits must be (images, source classes), got shape {target_logits.shape}")
    classes = num_source_classes or target_logits.shape[1]
    return np.bincount(np.argmax(target_logits, axis=1), minlength=classes)


def top_k_kept(votes: np.ndarray, keep: int) -> np.ndarray:
    """Indices of the `keep` most-voted entries, ties broken by lower index, returned sorted."""
    if not 0 < keep <= votes.size:
        raise UsageError(f"keep must be in 1..{votes.size}, got {keep}")
    order = np.lexsort((np.arange(votes.size), -votes))
    return np.sort(order[:keep])


@dataclass(frozen=True)
class FeatureMapping:
    """k-means over source features: each source sample's cluster, and target votes per cluster."""

    source_clusters: np.ndarray  # (M,) cluster id of every source sample
    votes: np.ndarray  # (K,) number of target samples nearest to each centroid
    centroids: np.ndarray  # (K, D)


def feature_mapping(source_features: np.ndarray, target_features: np.ndarray, clusters: int, seed: int = 0) -> FeatureMapping:
    """Cluster the source features and let each target feature vote for its nearest centroid."""
    from sklearn.cluster import KMeans

    if source_features.shape[1] != target_features.shape[1]:
        raise UsageError(f"feature widths differ: source {source_features.shape[1]}, target {target_features.shape[1]}")
    if not 0 < clusters <= len(source_features):
        raise UsageError(f"clusters must be in 1..{len(source_features)}, got {clusters}")
    km = KMeans(n_clusters=clusters, n_init=4, random_state=seed).fit(source_features)
    votes = np.bincount(km.predict(target_features), minlength=clusters)
    return FeatureMapping(km.labels_.astype(np.int64), votes, km.cluster_centers_)


def prune_source(groups: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Boolean mask over source samples: True where the sample's class/cluster is kept."""
    return np.isin(groups, kept)


def pruning_ratio(mask: np.ndarray) -> float:
    """Fraction of source samples removed (DP4TL reports 40-80 % with no downstream loss)."""
    return 1.0 - float(mask.mean()) if mask.size else 0.0
