"""What a model trains against: the training vocabulary and per-image target indices."""

from __future__ import annotations

from typing import Sequence

import torch

from ..data import CompositionDataset, Sample
from ..inputs.vocab import Vocabulary


def training_vocabulary(dataset: CompositionDataset) -> Vocabulary:
    """The closed world of the seen training pairs, every pair marked seen."""
    pairs = list(dataset.train_pairs)
    return Vocabulary.build(dataset.states, dataset.objects, pairs=pairs, seen_pairs=pairs,
                            max_words=max(len(dataset.states), len(dataset.objects)), max_pairs=len(pairs))


def training_targets(dataset: CompositionDataset, vocab: Vocabulary,
                     samples: Sequence[Sample]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(pair, state, object) target indices of training samples in the training vocabulary."""
    pair_index = {vocab.pair_names()[i]: i for i in range(vocab.num_pairs)}
    state_index = {name: i for i, name in enumerate(vocab.states)}
    object_index = {name: i for i, name in enumerate(vocab.objects)}
    pairs = [pair_index[(s.state, s.object)] for s in samples]
    return (torch.tensor(pairs, dtype=torch.long), torch.tensor([state_index[s.state] for s in samples]),
            torch.tensor([object_index[s.object] for s in samples]))
