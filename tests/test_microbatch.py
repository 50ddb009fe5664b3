"""Concurrent predictions share backbone passes and each visitor gets their own photo's answer."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from czsl_models import load_model
from czsl_models.inference.microbatch import MicroBatcher
from czsl_models.inputs.vocab import Vocabulary

WORDS = ("sliced, whole, old", "apple, clock, cat")


def _concurrently(batcher, model, images, words=WORDS):
    results, errors = [None] * len(images), []
    start = threading.Barrier(len(images))

    def one(index):
        start.wait()
        try:
            results[index] = batcher.predict(model, images[index], Vocabulary.build(*words), words, top_k=3)
        except BaseException as error:  # noqa: BLE001 - collected for the assertion
            errors.append(error)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(images))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results, errors


def test_concurrent_requests_share_passes_and_keep_their_own_answers(example_images):
    model = load_model("msci", backbone="tiny")
    images = example_images[:6]
    alone = [model.predict(image, Vocabulary.build(*WORDS), top_k=3)[0] for image in images]
    batcher = MicroBatcher(wait_seconds=0.2, max_batch=4)
    results, errors = _concurrently(batcher, model, images)
    assert not errors
    assert batcher.passes < len(images)  # at most 4 a pass: 6 photos in 2 passes
    for mine, reference in zip(results, alone):
        np.testing.assert_allclose(mine.scores, reference.scores, rtol=1e-4, atol=1e-4)
        assert [(r.state, r.object) for r in mine.ranking] == [(r.state, r.object) for r in reference.ranking]


def test_a_failing_shared_pass_fails_every_waiting_request_and_blocks_no_one(example_images, monkeypatch):
    model = load_model("clip", backbone="tiny")

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(model, "predict", broken)
    results, errors = _concurrently(MicroBatcher(wait_seconds=0.1), model, example_images[:3])
    assert len(errors) == 3 and all("out of memory" in str(error) for error in errors)


def test_different_words_never_share_a_pass(example_images):
    model = load_model("clip", backbone="tiny")
    batcher = MicroBatcher(wait_seconds=0.1)
    first = batcher.predict(model, example_images[0], Vocabulary.build(*WORDS), WORDS)
    other = ("wet, dry", "dog, coin")
    second = batcher.predict(model, example_images[0], Vocabulary.build(*other), other)
    assert {r.object for r in first.ranking} <= {"apple", "clock", "cat"}
    assert {r.object for r in second.ranking} <= {"dog", "coin"}


@pytest.mark.parametrize("wait", [0.0])
def test_no_wait_means_no_batching(example_images, wait):
    batcher = MicroBatcher(wait_seconds=wait)
    model = load_model("clip", backbone="tiny")
    batcher.predict(model, example_images[0], Vocabulary.build(*WORDS), WORDS)
    assert batcher.passes == 1
