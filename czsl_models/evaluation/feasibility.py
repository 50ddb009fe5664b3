"""Open-world feasibility: how plausible an unseen state-object pair is, judged from the training pairs.

This is the feasibility score of CompCos (Mancini et al., CVPR 2021), which the open-world results
of later CZSL papers also mask with. A pair (s, o) is as feasible as o resembles the objects seen
with s in training, and s the states seen with o:

    ρ(s, o) = ½ · (max_{o' ∈ O_s} cos(φ(o), φ(o')) + max_{s' ∈ S_o} cos(φ(s), φ(s')))

φ is the model's own text feature of the primitive (its state and object prompts, so a trained
model's learned words count). A state or object that never occurs in a training pair makes its
term -1, the least feasible. Seen pairs are feasible by definition: the evaluator never masks
them whatever their score.

At evaluation, unseen pairs below a threshold are masked. The threshold is a number, or it is
chosen on the validation split (`choose_threshold`): the value with the best validation AUC
among the 0th, 5th, ..., 95th percentiles of the unseen pairs' feasibility (the 0th masks nothing),
the lowest one on ties.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

THRESHOLD_PERCENTILES = tuple(range(0, 100, 5))


def _unit_rows(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


def pair_feasibility(state_features: np.ndarray, object_features: np.ndarray, pair_states: np.ndarray,
                     pair_objects: np.ndarray, train_pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """ρ [P] (float64, in [-1, 1]) for pairs given by state and object indices; train_pairs are
    (state index, object index) pairs; features are [A, D] and [O, D] (any scale)."""
    states, objects = _unit_rows(state_features), _unit_rows(object_features)
    seen_with = np.zeros((len(states), len(objects)), dtype=bool)  # [A, O]: (s, o) is a training pair
    for state, object_ in train_pairs:
        seen_with[state, object_] = True
    state_similarity = states @ states.T
    object_similarity = objects @ objects.T
    # object_term[s, o] = max over objects o' seen with s of cos(o, o'); -1 when s has none.
    object_term = np.full(seen_with.shape, -1.0)
    for state in np.flatnonzero(seen_with.any(axis=1)):
        object_term[state] = object_similarity[:, seen_with[state]].max(axis=1)
    # state_term[s, o] = max over states s' seen with o of cos(s, s'); -1 when o has none.
    state_term = np.full(seen_with.shape, -1.0)
    for object_ in np.flatnonzero(seen_with.any(axis=0)):
        state_term[:, object_] = state_similarity[:, seen_with[:, object_]].max(axis=1)
    feasibility = 0.5 * (object_term + state_term)
    return feasibility[np.asarray(pair_states), np.asarray(pair_objects)]


def candidate_thresholds(feasibility: np.ndarray, seen: np.ndarray) -> list[float]:
    """The thresholds tried on validation: percentiles of the unseen pairs' feasibility, distinct, ascending."""
    unseen = np.asarray(feasibility)[~np.asarray(seen, dtype=bool)]
    if unseen.size == 0:
        return []
    return sorted({float(value) for value in np.percentile(unseen, THRESHOLD_PERCENTILES, method="lower")})


def best_threshold(thresholds: Sequence[float], aucs: Sequence[float]) -> float:
    """The threshold of the highest AUC; the lowest such threshold (masking least) on ties."""
    if not thresholds:
        raise ValueError("no thresholds to choose from")
    best = max(aucs)
    return min(t for t, auc in zip(thresholds, aucs) if auc == best)
