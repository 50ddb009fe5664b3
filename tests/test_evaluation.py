"""The streaming CZSL evaluator against a direct full-matrix implementation of the reference."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from czsl_models.evaluation import metrics as evaluation
from czsl_models.evaluation import CZSLMetrics, StreamingEvaluator, evaluate_scores
from czsl_models.evaluation.cli import add_metrics_arguments, run_metrics_command


def reference_metrics(
    scores: np.ndarray,
    labels: np.ndarray,
    pair_states: np.ndarray,
    pair_objects: np.ndarray,
    seen: np.ndarray,
    keep: np.ndarray,
) -> dict:
    """ExplainableML/czsl ``Evaluator`` written out on the full matrix, one biased copy per bias."""
    rows = np.arange(scores.shape[0])
    masked = np.where(keep, scores, -np.inf).astype(scores.dtype)

    def predict(bias) -> np.ndarray:
        biased = masked.copy()
        biased[:, ~seen] += bias  # in the scores' dtype, like a float32 tensor += bias
        return biased.argmax(axis=1)

    unseen_rows = ~seen[labels]
    unseen_match_at_max = (predict(1e3) == labels)[unseen_rows]
    true_scores = scores[rows, labels][unseen_rows]
    max_seen_scores = masked[unseen_rows][:, seen].max(axis=1)
    gaps = (max_seen_scores - true_scores)[unseen_match_at_max] - 1e-4
    gaps = np.sort(gaps)
    bias_list = list(gaps[:: max(len(gaps) // 20, 1)])

    seen_accuracy, unseen_accuracy = [], []
    for bias in bias_list + [1e3]:
        match = predict(bias) == labels
        seen_accuracy.append(match[~unseen_rows].mean())
        unseen_accuracy.append(match[unseen_rows].mean())
    seen_accuracy, unseen_accuracy = np.array(seen_accuracy), np.array(unseen_accuracy)
    with np.errstate(divide="ignore"):  # scipy.stats.hmean's formula: a zero accuracy gives 0
        harmonic = 1 / np.mean(1 / np.stack([seen_accuracy, unseen_accuracy]), axis=0)
    best = int(np.argmax(harmonic))
    unbiased = masked.argmax(axis=1)
    return {
        "best_seen": seen_accuracy.max(),
        "best_unseen": unseen_accuracy.max(),
        "best_hm": harmonic[best],
        "AUC": np.sum(np.diff(unseen_accuracy) * (seen_accuracy[1:] + seen_accuracy[:-1]) / 2),
        "attr_acc": (pair_states[unbiased] == pair_states[labels]).mean(),
        "obj_acc": (pair_objects[unbiased] == pair_objects[labels]).mean(),
        "biasterm": [float(bias) for bias in bias_list] + [1e3],
        "seen_curve": list(seen_accuracy),
        "unseen_curve": list(unseen_accuracy),
        "best_hm_bias": (bias_list + [1e3])[best],
    }


def assert_matches(metrics: CZSLMetrics, expected: dict) -> None:
    got = metrics.to_dict()
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert np.allclose(got[key], value, rtol=0, atol=1e-6), (key, got[key], value)


def make_grid(num_states: int, num_objects: int) -> tuple[np.ndarray, np.ndarray]:
    pair_states, pair_objects = np.divmod(np.arange(num_states * num_objects), num_objects)
    return pair_states, pair_objects


def test_hand_computed_example():
    # Pairs: 0 (s0, o0) seen, 1 (s0, o1) seen, 2 (s1, o0) unseen, 3 (s1, o1) unseen.
    # At b = 1e3 every image predicts its best unseen pair: 2, 2, 2, 3 -> unseen images 2 and 3 are
    # right; their gaps are 0.7 - 0.4 = 0.3 and 0.6 - 0.5 = 0.1, so biases 0.0999, 0.2999, 1e3.
    # b = 0.0999: predictions 0, 1, 0, 1 -> seen 2/2, unseen 0/2.
    # b = 0.2999: image 1 flips to pair 2 (0.6 + 0.2999 > 0.8), image 3 to pair 3 -> seen 1/2, unseen 1/2.
    # b = 1e3: seen 0/2, unseen 2/2. HM = (0, 0.5, 0): best 0.5 at b = 0.2999.
    # AUC = 0.5 * (1 + 0.5) / 2 + 0.5 * (0.5 + 0) / 2 = 0.5.
    # Unbiased top-1: 0, 1, 0, 1 against truth 0, 1, 2, 3 -> states 2/4 right, objects 4/4.
    scores = np.array(
        [[0.9, 0.1, 0.5, 0.2], [0.3, 0.8, 0.6, 0.1], [0.7, 0.2, 0.4, 0.1], [0.1, 0.6, 0.3, 0.5]]
    )
    labels = np.array([0, 1, 2, 3])
    pair_states, pair_objects = make_grid(2, 2)
    seen = np.array([True, True, False, False])
    metrics = evaluate_scores(scores, labels, pair_states, pair_objects, seen)
    assert metrics.biasterm == [(0.6 - 0.5) - 1e-4, (0.7 - 0.4) - 1e-4, 1e3]
    assert metrics.seen_curve == pytest.approx([1.0, 0.5, 0.0])
    assert metrics.unseen_curve == pytest.approx([0.0, 0.5, 1.0])
    assert (metrics.best_seen, metrics.best_unseen) == (1.0, 1.0)
    assert metrics.best_hm == pytest.approx(0.5)
    assert metrics.best_hm_bias == pytest.approx(0.2999)
    assert metrics.AUC == pytest.approx(0.5)
    assert (metrics.attr_acc, metrics.obj_acc) == (0.5, 1.0)
    assert_matches(metrics, reference_metrics(scores, labels, pair_states, pair_objects, seen, np.ones(4, bool)))


def test_float32_bias_rounding_and_first_index_ties():
    # In float32, 1e3 + 0.30000 and 1e3 + 0.30001 round to the same number, so at b = 1e3 the
    # reference predicts the first of the two unseen pairs (2), not the higher score (3).
    scores = np.array(
        [[0.9, 0.1, 0.30000, 0.30001], [0.2, 0.5, 0.4, 0.1], [0.5, 0.5, 0.1, 0.0], [0.1, 0.3, 0.3, 0.2]],
        dtype=np.float32,
    )
    labels = np.array([3, 2, 1, 0])
    pair_states, pair_objects = make_grid(2, 2)
    seen = np.array([True, True, False, False])
    metrics = evaluate_scores(scores, labels, pair_states, pair_objects, seen)
    assert metrics.unseen_curve[-1] == 0.5  # image 0 (truth 3) loses the rounded tie to pair 2
    # Unbiased top-1: 0, 1, then image 2 ties 0.5/0.5 between seen pairs 0 and 1 -> pair 0, and
    # image 3 ties seen pair 1 and unseen pair 2 at 0.3 -> pair 1 (lower index). Against truths
    # 3, 2, 1, 0 the states (s0 s0 s0 s0 vs s1 s1 s0 s0) are right for images 2 and 3, no object is.
    assert metrics.attr_acc == 0.5
    assert metrics.obj_acc == 0.0
    expected = reference_metrics(scores, labels, pair_states, pair_objects, seen, np.ones(4, bool))
    assert_matches(metrics, expected)
    # The same numbers in float64 do not collide: image 0 becomes right at b = 1e3.
    assert evaluate_scores(scores.astype(np.float64), labels, pair_states, pair_objects, seen).unseen_curve[-1] == 1.0


def random_case(rng: np.random.Generator, kind: str) -> tuple:
    num_states, num_objects = int(rng.integers(2, 9)), int(rng.integers(2, 12))
    pair_states, pair_objects = make_grid(num_states, num_objects)
    num_pairs = pair_states.shape[0]
    seen = rng.random(num_pairs) < rng.uniform(0.1, 0.9)
    seen[rng.choice(num_pairs, 2, replace=False)] = [True, False]
    keep = np.ones(num_pairs, dtype=bool)
    candidates = feasibility = threshold = None
    if kind == "closed":
        candidates = rng.random(num_pairs) < 0.7
        candidates[np.flatnonzero(seen)[0]] = candidates[np.flatnonzero(~seen)[0]] = True
        keep = candidates
    elif kind in ("open", "open, infeasible truths"):
        feasibility = rng.uniform(-1, 1, num_pairs)
        threshold = float(rng.uniform(-0.5, 0.3))
        feasibility[np.flatnonzero(~seen)[0]] = threshold  # exactly at the threshold is feasible
        keep = seen | (feasibility >= threshold)
    num_images = int(rng.integers(2, 150))
    kept_seen, kept_unseen = np.flatnonzero(keep & seen), np.flatnonzero(keep & ~seen)
    if kind == "open, infeasible truths":  # images of masked unseen pairs too: misses at every bias
        kept_unseen = np.flatnonzero(~seen)
    labels = np.where(
        rng.random(num_images) < rng.uniform(0.2, 0.8),
        rng.choice(kept_seen, num_images),
        rng.choice(kept_unseen, num_images),
    )
    labels[:2] = [kept_seen[0], kept_unseen[0]]
    style = rng.choice(["normal64", "uniform32", "integer32", "integer64", "offset32"])
    scale = 1.0
    if style == "normal64":
        scores = rng.standard_normal((num_images, num_pairs)) * rng.uniform(0.1, 30)
    elif style == "uniform32":  # float32 steps are 6e-5 near 1e3: unseen scores + 1e3 collide
        scale = float(rng.choice([1.0, 1e-3]))
        scores = rng.random((num_images, num_pairs), dtype=np.float32) * np.float32(scale)
    elif style == "offset32":  # float32 steps are 5e-4 near 4096: score + (gap - 1e-4) ties the seen score
        scores = np.float32(4096) + rng.integers(0, 4, (num_images, num_pairs)).astype(np.float32)
    else:  # ties everywhere, between seen and unseen pairs too
        scores = rng.integers(0, 4, (num_images, num_pairs)).astype(np.float32 if style == "integer32" else np.float64)
    boost = rng.integers(0, 2, num_images) if style in ("offset32", "integer32") else rng.uniform(0, 1.5, num_images)
    scores[np.arange(num_images), labels] += (boost * scale).astype(scores.dtype)
    if candidates is not None:  # masked columns may hold anything, even NaN
        scores[:, ~candidates] = np.nan
    args = (scores, labels, pair_states, pair_objects, seen, candidates, feasibility, threshold)
    return args, keep


@pytest.mark.parametrize("kind", ["all", "closed", "open", "open, infeasible truths"])
def test_random_matrices_match_reference(kind):
    rng = np.random.default_rng({"all": 1, "closed": 2, "open": 3, "open, infeasible truths": 5}[kind])
    for _ in range(120):
        args, keep = random_case(rng, kind)
        scores, labels, pair_states, pair_objects, seen = args[:5]
        expected = reference_metrics(scores, labels, pair_states, pair_objects, seen, keep)
        assert_matches(evaluate_scores(*args), expected)


def test_chunked_updates_equal_one_shot(monkeypatch):
    rng = np.random.default_rng(4)
    for kind in ["all", "closed", "open", "open, infeasible truths"] * 5:
        args, _ = random_case(rng, kind)
        scores, labels, pair_states, pair_objects, seen, candidates, feasibility, threshold = args
        one_shot = evaluate_scores(*args).to_dict()
        # Tiny internal blocks as well as uneven caller chunks, with torch tensors for some.
        monkeypatch.setattr(evaluation, "BLOCK_ELEMENTS", int(rng.integers(1, 200)))
        evaluator = StreamingEvaluator(pair_states, pair_objects, seen, candidates, feasibility, threshold)
        bounds = np.unique(np.r_[0, rng.integers(0, len(labels), 4), len(labels)])
        for index, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:])):
            chunk = scores[start:stop]
            evaluator.update(torch.from_numpy(chunk) if index % 2 else chunk, labels[start:stop])
        assert evaluator.num_images == len(labels)
        assert evaluator.compute().to_dict() == one_shot
        monkeypatch.undo()


def test_torch_half_precision_is_evaluated_in_float32():
    rng = np.random.default_rng(5)
    scores = rng.standard_normal((40, 6)).astype(np.float16)
    labels = np.arange(40) % 6
    pair_states, pair_objects = make_grid(2, 3)
    seen = np.array([True, False, True, False, True, False])
    from_torch = evaluate_scores(torch.from_numpy(scores), torch.from_numpy(labels), pair_states, pair_objects, seen)
    from_float32 = evaluate_scores(scores.astype(np.float32), labels, pair_states, pair_objects, seen)
    assert from_torch == from_float32


@pytest.fixture
def small_problem():
    pair_states, pair_objects = make_grid(2, 2)
    seen = np.array([True, True, False, False])
    scores = np.random.default_rng(6).random((4, 4))
    return scores, np.array([0, 1, 2, 3]), pair_states, pair_objects, seen


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s, l: (s[:, :3], l), r"scores must have shape \(n, 4\)"),
        (lambda s, l: (s, l[:3]), "4 rows but labels have 3"),
        (lambda s, l: (s, l + 1), "label 4 is out of range"),
        (lambda s, l: (s, l - 1), "label -1 is out of range"),
        (lambda s, l: (s, l.astype(float)), "labels must hold integers"),
        (lambda s, l: (np.where(np.eye(4, dtype=bool), np.nan, s), l), "finite at every candidate"),
        (lambda s, l: (s, np.array([0, 1, 0, 1])), r"both seen and unseen pairs \(got 4 seen, 0 unseen\)"),
        (lambda s, l: (s, np.array([2, 3, 2, 3])), r"\(got 0 seen, 4 unseen\)"),
    ],
)
def test_bad_inputs_raise_clear_errors(small_problem, change, message):
    scores, labels, pair_states, pair_objects, seen = small_problem
    scores, labels = change(scores, labels)
    with pytest.raises(ValueError, match=message):
        evaluate_scores(scores, labels, pair_states, pair_objects, seen)


def test_masked_true_pairs_and_bad_masks_raise(small_problem):
    scores, labels, pair_states, pair_objects, seen = small_problem
    with pytest.raises(ValueError, match=r"true pair 3 .* is not a candidate pair"):
        evaluate_scores(scores, labels, pair_states, pair_objects, seen, candidates=np.array([1, 1, 1, 0], bool))
    feasibility = np.array([0.0, 0.0, 0.5, 0.1])
    # An infeasible true pair is a miss at every bias, even where its score is the highest of all.
    rows = np.array([0, 1, 3])  # two seen images and one of unseen pair 3
    boosted = scores[rows].copy()
    boosted[2, 3] = 1e6
    plain = evaluate_scores(boosted, labels[rows], pair_states, pair_objects, seen)
    masked = evaluate_scores(boosted, labels[rows], pair_states, pair_objects, seen, feasibility=feasibility, threshold=0.2)
    assert plain.unseen_curve[-1] == 1.0 and max(masked.unseen_curve) == 0.0
    with pytest.raises(ValueError, match="feasibility and threshold must be given together"):
        StreamingEvaluator(pair_states, pair_objects, seen, feasibility=feasibility)
    with pytest.raises(ValueError, match=r"at least one seen and one unseen pair \(got 2 seen, 0 unseen\)"):
        StreamingEvaluator(pair_states, pair_objects, seen, candidates=seen)
    with pytest.raises(ValueError, match=r"seen must have shape \(4,\)"):
        StreamingEvaluator(pair_states, pair_objects, seen[:3])
    with pytest.raises(ValueError, match="no images were given"):
        StreamingEvaluator(pair_states, pair_objects, seen).compute()


def write_scores_file(path, rng, candidates: bool = True) -> dict:
    pair_names = np.array([[state, obj] for state in ("sliced", "wet", "old") for obj in ("apple", "dog")])
    seen = np.array([True, False, True, True, False, False])
    # Open world: pair 4 (old apple) is unseen and below the threshold, so no image shows it.
    labels = np.array([0, 1, 2, 3, 4, 5] * 5 if candidates else [0, 1, 2, 3, 5, 2] * 5)
    scores = rng.standard_normal((30, 6)).astype(np.float32)
    scores[np.arange(30), labels] += 1.0
    arrays = {"scores": scores, "pairs": pair_names, "labels": labels, "seen": seen}
    if candidates:
        arrays["candidates"] = np.ones(6, dtype=bool)
    else:
        arrays["feasibility"] = np.array([1.0, 0.9, 1.0, 1.0, 0.5, 0.7], dtype=np.float32)
        arrays["threshold"] = np.array(0.6)
    np.savez(path, **arrays)
    return arrays


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    add_metrics_arguments(parser)
    code = run_metrics_command(parser.parse_args(list(argv)))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("closed_world", [True, False])
def test_cli_prints_table_and_json(tmp_path, capsys, closed_world):
    arrays = write_scores_file(tmp_path / "scores.npz", np.random.default_rng(7), candidates=closed_world)
    # States are named, so their ids follow sorted names: old 0, sliced 1, wet 2 (apple 0, dog 1).
    expected = evaluate_scores(
        arrays["scores"],
        arrays["labels"],
        np.array([1, 1, 2, 2, 0, 0]),
        np.array([0, 1, 0, 1, 0, 1]),
        arrays["seen"],
        arrays.get("candidates"),
        arrays.get("feasibility"),
        float(arrays["threshold"]) if "threshold" in arrays else None,
    )
    code, out, err = run_cli(capsys, str(tmp_path / "scores.npz"))
    assert (code, err) == (0, "")
    assert ("closed world" if closed_world else "open world, feasibility threshold 0.6") in out
    assert "5 of 6 pairs" in out if not closed_world else "6 of 6 pairs" in out
    for name, value in [("best seen", expected.best_seen), ("AUC", expected.AUC), ("state acc", expected.attr_acc)]:
        assert f"{name:<12} {value:>8.4f}" in out
    code, out, err = run_cli(capsys, str(tmp_path / "scores.npz"), "--json")
    assert (code, err) == (0, "")
    assert json.loads(out) == expected.to_dict()


def test_cli_rejects_bad_files_with_one_line(tmp_path, capsys):
    rng = np.random.default_rng(8)
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 not really a zip archive")
    (tmp_path / "text.npz").write_text("scores")
    np.save(tmp_path / "single.npy", np.zeros(3))
    np.savez(tmp_path / "missing.npz", scores=np.zeros((2, 2)), labels=np.zeros(2, int))
    np.savez(tmp_path / "pickled.npz", scores=np.zeros((2, 2)), pairs=np.array([["a", 1]], dtype=object),
             labels=np.zeros(2, int), seen=np.ones(2, bool))
    arrays = write_scores_file(tmp_path / "good.npz", rng)
    np.savez(tmp_path / "label.npz", **{**arrays, "labels": arrays["labels"] + 6})
    cases = {
        "absent.npz": "no such file",
        "corrupt.npz": "not a readable .npz archive",
        "text.npz": "not an .npz archive",
        "single.npy": "single .npy array",
        "missing.npz": "missing array(s) pairs, seen",
        "pickled.npz": "an array cannot be read",
        "label.npz": "out of range",
    }
    for name, message in cases.items():
        code, out, err = run_cli(capsys, str(tmp_path / name), "--json")
        assert code == 2 and out == "", name
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, (name, err)
