"""Concurrent visitors' predictions sharing backbone passes: requests for the same model, words and options that
arrive within a few milliseconds of each other are answered by one `model.predict` call over all their photos."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Hashable

from PIL import Image

from ..inputs.vocab import Vocabulary
from ..models.base import CompositionModel, Prediction

BATCH_WAIT_ENV = "CZSL_PREDICT_BATCH_WAIT_MS"
DEFAULT_WAIT_MS = 5.0
MAX_BATCH = 8  # photos per shared pass: bounds memory and the wait of the last one


@dataclass
class _Group:
    """Photos gathered for one shared pass, and what it returned."""

    vocab: Vocabulary
    images: list[Image.Image] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    results: list[Prediction] | None = None
    error: BaseException | None = None


def batch_wait_seconds() -> float:
    """How long the first request of a batch waits for others ($CZSL_PREDICT_BATCH_WAIT_MS, default 5; 0: off)."""
    try:
        return max(0.0, float(os.environ.get(BATCH_WAIT_ENV, DEFAULT_WAIT_MS))) / 1000
    except ValueError:
        return DEFAULT_WAIT_MS / 1000


class MicroBatcher:
    """Gathers concurrent single-photo predictions into shared `model.predict` calls (thread-safe)."""

    def __init__(self, wait_seconds: float | None = None, max_batch: int = MAX_BATCH) -> None:
        self.wait_seconds = batch_wait_seconds() if wait_seconds is None else max(0.0, wait_seconds)
        self.max_batch = max(1, int(max_batch))
        self._open: dict[Hashable, _Group] = {}
        self._lock = threading.Lock()
        self.passes = 0  # shared predict calls run so far (for tests and benchmarks)

    def predict(self, model: CompositionModel, image: Image.Image, vocab: Vocabulary, words: Hashable,
                top_k: int = 5, bias: float = 0.0) -> Prediction:
        """The prediction for one photo; `words` identifies the vocabulary (requests with equal words share a pass)."""
        if self.wait_seconds <= 0 or self.max_batch == 1:
            self.passes += 1
            return model.predict(image, vocab, top_k=top_k, bias=bias)[0]
        key = (id(model), words, int(top_k), float(bias))
        with self._lock:
            group = self._open.get(key)
            leader = group is None
            if leader:
                group = self._open[key] = _Group(vocab)
            index = len(group.images)
            group.images.append(image)
            if len(group.images) >= self.max_batch:
                self._open.pop(key, None)  # full: later requests start a new batch
        if not leader:
            group.done.wait()
        else:
            time.sleep(self.wait_seconds)
            with self._lock:
                if self._open.get(key) is group:
                    self._open.pop(key)
            try:
                group.results = model.predict(group.images, group.vocab, top_k=top_k, bias=bias)
                self.passes += 1
            except BaseException as error:  # every waiting visitor gets the same error, and no one waits forever
                group.error = error
            finally:
                group.done.set()
        if group.error is not None:
            raise group.error
        return group.results[index]
