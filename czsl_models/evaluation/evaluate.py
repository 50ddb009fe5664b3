"""A model on a dataset: vocabularies and targets from the splits, pixel batches (with the
published training augmentation when asked), and the CZSL evaluation of a model on a phase."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from ..data import CompositionDataset, Sample
from ..data.pixels import PixelSamples, default_num_workers, pixel_batches
from ..inputs.vocab import Vocabulary
from .feasibility import best_threshold, candidate_thresholds, pair_feasibility
from .metrics import CZSLMetrics, StreamingEvaluator


@dataclass
class EvaluationSetup:
    """Candidate pairs, labels and an empty evaluator for one phase of a dataset."""

    vocab: Vocabulary
    labels: np.ndarray  # [N] index of each image's pair in vocab.pairs
    samples: list[Sample]
    evaluator: StreamingEvaluator

    def feasibility_evaluator(self, feasibility: np.ndarray, threshold: float) -> StreamingEvaluator:
        """An empty open-world evaluator that also masks unseen pairs below the feasibility threshold."""
        return StreamingEvaluator(self.vocab.pair_states, self.vocab.pair_objects, self.evaluator.seen,
                                  feasibility=feasibility, threshold=threshold)


def evaluation_setup(dataset: CompositionDataset, phase: str = "test", open_world: bool = False) -> EvaluationSetup:
    """The candidates (closed world: the split pairs, masked to train ∪ phase; open world: all
    states x objects), ground-truth labels and evaluator of a phase. Raises ValueError when the
    phase has no images or lacks seen or unseen pairs."""
    samples = list(dataset.splits[phase])
    if not samples:
        raise ValueError(f"the {phase} split of {dataset.name} has no images")
    pairs = dataset.candidate_pairs(phase, open_world=open_world)
    vocab = Vocabulary.build(dataset.states, dataset.objects, pairs=None if open_world else pairs,
                             seen_pairs=list(dataset.train_pairs),
                             max_words=max(len(dataset.states), len(dataset.objects)), max_pairs=len(pairs))
    names = vocab.pair_names()
    index = {pair: i for i, pair in enumerate(names)}
    labels = np.array([index[(s.state, s.object)] for s in samples], dtype=np.int64)
    seen = dataset.seen_mask(names)
    unseen_images = int((~seen[labels]).sum())
    if unseen_images == 0 or unseen_images == len(samples):
        kind = "unseen" if unseen_images == 0 else "seen"
        raise ValueError(f"the {phase} split of {dataset.name} has no images of {kind} pairs; the CZSL metrics need both")
    candidates = None if open_world else dataset.phase_mask(names, phase)
    evaluator = StreamingEvaluator(vocab.pair_states, vocab.pair_objects, seen, candidates=candidates)
    return EvaluationSetup(vocab, labels, samples, evaluator)



def model_feasibility(model, vocab: Vocabulary, dataset: CompositionDataset) -> np.ndarray:
    """CompCos feasibility [P] of the vocabulary's pairs from the model's own state and object text
    features and the dataset's training pairs (czsl_models.evaluation.feasibility)."""
    with torch.no_grad():
        text = model.prompts.encode_all(vocab)
    state_index = {name: i for i, name in enumerate(vocab.states)}
    object_index = {name: i for i, name in enumerate(vocab.objects)}
    train = [(state_index[state], object_index[object_]) for state, object_ in dataset.train_pairs]
    return pair_feasibility(text["state"].float().cpu().numpy(), text["object"].float().cpu().numpy(),
                            vocab.pair_states, vocab.pair_objects, train)


@torch.no_grad()
def _stream_scores(model, dataset: CompositionDataset, setup: EvaluationSetup, evaluators: Sequence[StreamingEvaluator],
                   batch_size: int, features, num_workers: int | None,
                   progress: Callable[[int, int], None] | None) -> None:
    """Score the phase's images batch by batch and feed every evaluator."""
    model.prompts.check_lengths(setup.vocab)
    was_training = model.training
    model.eval()
    device = model.backbone.device
    order = list(range(len(setup.samples)))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    try:
        if features is not None:
            source = ((None, batch) for batch in batches)
        else:
            workers = default_num_workers(len(order), device) if num_workers is None else num_workers
            source = pixel_batches(PixelSamples(dataset, setup.samples, model.backbone.preprocess), batches, workers)
        done = 0
        for pixels, indices in source:
            visual = features.batch(indices, device) if features is not None else None
            if pixels is not None:
                pixels = pixels.to(device)
            logits = model(pixels, setup.vocab, visual=visual)
            scores = model.pair_scores(logits, setup.vocab)
            for evaluator in evaluators:
                evaluator.update(scores, setup.labels[indices])
            done += len(indices)
            if progress is not None:
                progress(done, len(order))
    finally:
        model.train(was_training)


def pair_table_values(table: np.ndarray, vocab: Vocabulary, dataset: CompositionDataset) -> np.ndarray:
    """[P] the values of a [states, objects] table (in the dataset's sorted order, as the released feasibility
    files are) for the vocabulary's pairs."""
    state_index = {name: i for i, name in enumerate(dataset.states)}
    object_index = {name: i for i, name in enumerate(dataset.objects)}
    states = np.array([state_index[vocab.states[s]] for s in vocab.pair_states], dtype=np.int64)
    objects = np.array([object_index[vocab.objects[o]] for o in vocab.pair_objects], dtype=np.int64)
    return np.asarray(table)[states, objects]


def evaluate_model(model, dataset: CompositionDataset, phase: str = "test", open_world: bool = False,
                   batch_size: int = 32, features=None, num_workers: int | None = None,
                   progress: Callable[[int, int], None] | None = None,
                   feasibility_threshold: float | None = None,
                   feasibility_table: np.ndarray | None = None) -> CZSLMetrics:
    """CZSL metrics of a model on a dataset phase (closed or open world), streamed over image batches.

    `features`: cached vision outputs of exactly that phase's images (the trainer passes them for
    models that train from cache); otherwise images are decoded and encoded here.
    `feasibility_threshold` (open world only): unseen pairs whose CompCos feasibility is below it
    are masked (czsl_models.evaluation.feasibility; `choose_feasibility_threshold` picks one on validation).
    `feasibility_table` [states, objects]: feasibility scores to use instead of CompCos's (the released files of
    the benchmarks, czsl_models.data.feasibility_files)."""
    setup = evaluation_setup(dataset, phase, open_world)
    evaluator = setup.evaluator
    if feasibility_threshold is not None:
        if not open_world:
            raise ValueError("a feasibility threshold applies to the open world only")
        feasibility = (model_feasibility(model, setup.vocab, dataset) if feasibility_table is None
                       else pair_table_values(feasibility_table, setup.vocab, dataset))
        evaluator = setup.feasibility_evaluator(feasibility, feasibility_threshold)
    _stream_scores(model, dataset, setup, [evaluator], batch_size, features, num_workers, progress)
    return evaluator.compute()


def choose_feasibility_threshold(model, dataset: CompositionDataset, batch_size: int = 32, features=None,
                                 num_workers: int | None = None,
                                 progress: Callable[[int, int], None] | None = None) -> tuple[float, dict[float, float]]:
    """The feasibility threshold with the best open-world AUC on the validation split, and the AUC of
    every threshold tried; the images are scored once, every threshold evaluated on the same scores."""
    setup = evaluation_setup(dataset, "val", open_world=True)
    feasibility = model_feasibility(model, setup.vocab, dataset)
    thresholds = candidate_thresholds(feasibility, setup.evaluator.seen)
    evaluators = [setup.feasibility_evaluator(feasibility, threshold) for threshold in thresholds]
    _stream_scores(model, dataset, setup, evaluators, batch_size, features, num_workers, progress)
    aucs = {threshold: evaluator.compute().AUC for threshold, evaluator in zip(thresholds, evaluators)}
    return best_threshold(list(aucs), list(aucs.values())), aucs
