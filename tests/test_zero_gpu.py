"""On ZeroGPU, Evaluate asks for the GPU time its work needs (photos x candidate pairs, through the `spaces`
package's duration callable), refuses work no call may have before asking, and reports its progress."""

from __future__ import annotations

import sys
import types

import pytest

from czsl_models.hosting.space import GPU_SECONDS_MAX, evaluate_gpu_seconds
from czsl_models.ui.inputs import InputError

SHAPES = "synthetic:shapes?images_per_pair=2"


def test_the_duration_grows_with_photos_and_pairs_and_has_a_floor():
    assert evaluate_gpu_seconds([(10, 10)]) == 30
    closed = evaluate_gpu_seconds([(13_000, 1_962)])  # MIT-States' closed-world test split
    assert 60 < closed < GPU_SECONDS_MAX
    assert evaluate_gpu_seconds([(13_000, 28_175)]) > GPU_SECONDS_MAX  # its open world: more than one call
    assert evaluate_gpu_seconds([(13_000, 1_962), (10_000, 1_962)]) > closed  # a validation pass adds its own


def test_gpu_function_hands_a_duration_callable_to_spaces(monkeypatch):
    from czsl_models.ui.state import gpu_function

    asked = []

    def fake_gpu(duration):
        asked.append(duration)
        return lambda function: function

    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=fake_gpu))

    def seconds(photos: int) -> int:
        return photos // 10

    @gpu_function(duration=seconds)
    def work(photos: int) -> int:
        return photos

    assert work(5) == 5 and asked == [seconds]


def test_evaluate_sizes_its_gpu_call_from_the_dataset(tiny_backbone):
    from czsl_models.data import load_dataset
    from czsl_models.ui.evaluate import evaluation_gpu_seconds, evaluation_passes
    from czsl_models.ui.state import AppState

    dataset = load_dataset(SHAPES)
    closed = evaluation_passes(SHAPES, "test", False, False)
    assert closed == [(len(dataset.splits["test"]), len(dataset.candidate_pairs("test")))]
    opened = evaluation_passes(SHAPES, "test", True, True)
    assert opened[0][0] == len(dataset.splits["val"]) and opened[1][1] == len(dataset.states) * len(dataset.objects)
    state = AppState(tiny_backbone)
    # The callable takes metrics_of_model's own arguments, as spaces.GPU passes them.
    assert evaluation_gpu_seconds(state, "msci", "", SHAPES, "test", True, True, None) == evaluate_gpu_seconds(opened)


def test_on_zero_gpu_work_beyond_one_call_is_refused_before_the_gpu_is_asked(monkeypatch):
    from czsl_models.hosting import space
    from czsl_models.ui.evaluate import check_fits_zero_gpu

    check_fits_zero_gpu(SHAPES, "test", True, True)  # not on ZeroGPU: nothing to refuse
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    check_fits_zero_gpu(SHAPES, "test", False, False)  # a small split fits
    monkeypatch.setattr(space, "EVALUATE_SECONDS_PER_PHOTO", 1000.0)
    with pytest.raises(InputError, match=r"needs about \d+ s of GPU time, more than this Space may borrow"):
        check_fits_zero_gpu(SHAPES, "test", False, False)


def test_evaluate_reports_its_progress_in_photos(tiny_backbone):
    from czsl_models.data import load_dataset
    from czsl_models.ui.evaluate import metrics_of_model
    from czsl_models.ui.state import AppState

    reports = []

    def progress(fraction, desc=None, unit=None):
        reports.append((fraction, desc, unit))

    metrics, _ = metrics_of_model(AppState(tiny_backbone), "clip", "", SHAPES, "test", False, False, progress)
    photos = len(load_dataset(SHAPES).splits["test"])
    assert reports and reports[-1][0] == (photos, photos) and reports[-1][2] == "photos"
    assert all(desc.endswith("scoring the photos") for _, desc, _ in reports) and 0.0 <= metrics["AUC"] <= 1.0
