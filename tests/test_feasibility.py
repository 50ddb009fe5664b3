"""Open-world feasibility (CompCos): the scores, the thresholds tried, and evaluation with a mask."""

from __future__ import annotations

import json

import numpy as np
import pytest

from czsl_models import load_model
from czsl_models.cli import main as cli_main
from czsl_models.data import load_dataset
from czsl_models.evaluation.feasibility import best_threshold, candidate_thresholds, pair_feasibility
from czsl_models.evaluation.evaluate import choose_feasibility_threshold, evaluate_model, evaluation_setup, model_feasibility

DATASET = "synthetic:shapes?num_states=3&num_objects=3&images_per_pair=2"


def test_pair_feasibility_by_hand():
    # Unit 2-D features with easy cosines: objects at 0°, 60°, 90°; states at 0°, 90°, 30°.
    angle = np.deg2rad
    objects = np.array([[np.cos(angle(a)), np.sin(angle(a))] for a in (0, 60, 90)])
    states = np.array([[np.cos(angle(a)), np.sin(angle(a))] for a in (0, 90, 30)]) * 3.0  # scale is ignored
    train = [(0, 0), (1, 1)]  # state 2 and object 2 never occur in training
    pair_states, pair_objects = np.repeat(np.arange(3), 3), np.tile(np.arange(3), 3)
    rho = pair_feasibility(states, objects, pair_states, pair_objects, train).reshape(3, 3)
    cos = lambda degrees: np.cos(angle(degrees))  # noqa: E731
    # (0, 1): object 1 vs objects seen with state 0 {0}: cos 60°; state 0 vs states seen with object 1 {1}: cos 90°.
    assert rho[0, 1] == pytest.approx((cos(60) + cos(90)) / 2)
    # (1, 0): object 0 vs {1}: cos 60°; state 1 vs states seen with object 0 {0}: cos 90°.
    assert rho[1, 0] == pytest.approx((cos(60) + cos(90)) / 2)
    # (2, 0): state 2 has no training objects (-1); state 2 vs {0}: cos 30°.
    assert rho[2, 0] == pytest.approx((-1 + cos(30)) / 2)
    # (0, 2): object 2 vs {0}: cos 90°; object 2 has no training states (-1).
    assert rho[0, 2] == pytest.approx((cos(90) - 1) / 2)
    assert rho[2, 2] == pytest.approx(-1.0)
    assert rho[0, 0] == pytest.approx(1.0) and rho[1, 1] == pytest.approx(1.0)  # seen pairs


def test_thresholds_tried_and_chosen():
    feasibility = np.array([1.0, 0.2, -0.3, 0.7, 0.7, 1.0])
    seen = np.array([True, False, False, False, False, True])
    thresholds = candidate_thresholds(feasibility, seen)
    assert thresholds == sorted(set(thresholds)) and thresholds[0] == -0.3  # the minimum masks nothing
    assert set(thresholds) <= {-0.3, 0.2, 0.7}
    assert best_threshold([-0.3, 0.2, 0.7], [0.1, 0.4, 0.4]) == 0.2  # ties go to the one masking least
    assert candidate_thresholds(feasibility, np.ones(6, bool)) == []
    with pytest.raises(ValueError):
        best_threshold([], [])


@pytest.fixture(scope="module")
def dataset():
    return load_dataset(DATASET)


def test_evaluation_with_a_feasibility_mask(dataset):
    model = load_model("clip", backbone="tiny")
    setup = evaluation_setup(dataset, "test", open_world=True)
    feasibility = model_feasibility(model, setup.vocab, dataset)
    unseen = ~setup.evaluator.seen
    assert feasibility.shape == (setup.vocab.num_pairs,) and np.all(feasibility[~unseen] > 0.999)
    plain = evaluate_model(model, dataset, open_world=True, batch_size=8)
    lowest = evaluate_model(model, dataset, open_world=True, batch_size=8, feasibility_threshold=feasibility[unseen].min())
    assert lowest == plain  # at the minimum nothing is masked
    median = float(np.median(feasibility[unseen]))
    masked_setup = setup.feasibility_evaluator(feasibility, median)
    assert masked_setup.num_candidate_pairs < setup.evaluator.num_candidate_pairs
    with pytest.raises(ValueError, match="open world only"):
        evaluate_model(model, dataset, open_world=False, feasibility_threshold=0.0)


def test_threshold_chosen_on_validation_in_one_pass(dataset):
    model = load_model("msci", backbone="tiny", train_states=dataset.states, train_objects=dataset.objects)
    calls = []
    threshold, aucs = choose_feasibility_threshold(model, dataset, batch_size=4, progress=lambda d, t: calls.append((d, t)))
    total = len(dataset.splits["val"])
    assert calls[-1] == (total, total) and len(calls) == -(-total // 4)  # every image scored once
    assert threshold in aucs and aucs[threshold] == max(aucs.values())
    assert min(aucs) == threshold or aucs[min(aucs)] < aucs[threshold]


def test_evaluate_command_with_feasibility(capsys):
    base = ["evaluate", "--dataset", DATASET, "--backbone", "tiny", "--batch-size", "4", "--open-world"]
    assert cli_main(base + ["--feasibility-threshold", "val", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    tried = dict((t, auc) for t, auc in document["val_auc_by_threshold"])
    assert document["feasibility_threshold"] in tried
    assert tried[document["feasibility_threshold"]] == max(tried.values())
    assert cli_main(base + ["--feasibility-threshold", "0.5"]) == 0
    assert "unseen pairs with CLIP-text feasibility below 0.5000 masked" in capsys.readouterr().out
    assert cli_main(base[:-1] + ["--feasibility-threshold", "0.5"]) == 2
    assert "add --open-world" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(base + ["--feasibility-threshold", "high"])
