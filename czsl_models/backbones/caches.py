"""Bounded caches of text features and tokenised words, and content fingerprints for their keys."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any, Iterable

import torch


class TextFeatureCache:
    """LRU cache of encoded text features, bounded by total bytes; thread safe."""

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> torch.Tensor | None:
        """The cached tensor for key, or None."""
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: str, value: torch.Tensor) -> None:
        """Store value, evicting the least recently used entries beyond max_bytes."""
        size = value.element_size() * value.nelement()
        if size > self.max_bytes:
            return
        with self._lock:
            previous = self._items.pop(key, None)
            if previous is not None:
                self._bytes -= previous.element_size() * previous.nelement()
            self._items[key] = value
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self._bytes -= old.element_size() * old.nelement()

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._items.clear()
            self._bytes = 0


class BoundedDict(dict):
    """A dict forgetting its oldest entries beyond max_items (not the pinned ones it started with): the tokenizer's
    BPE cache and the word-token cache would otherwise keep every word any visitor ever typed."""

    def __init__(self, pinned: dict | None = None, max_items: int = 50_000) -> None:
        super().__init__(pinned or {})
        self.pinned = frozenset(pinned or {})
        self.max_items = max_items
        self._order: OrderedDict[Any, None] = OrderedDict()
        self._lock = threading.Lock()

    def __setitem__(self, key: Any, value: Any) -> None:
        with self._lock:
            super().__setitem__(key, value)
            if key in self.pinned:
                return
            self._order[key] = None
            self._order.move_to_end(key)
            while len(self._order) > self.max_items:
                old, _ = self._order.popitem(last=False)
                super().pop(old, None)


def tensor_fingerprint(tensors: Iterable[torch.Tensor]) -> str:
    """A short hash of tensor contents: keys the text cache on trained text parameters."""
    digest = hashlib.sha1()
    for tensor in tensors:
        data = tensor.detach().to("cpu", torch.float32).contiguous()
        digest.update(str(tuple(data.shape)).encode())
        digest.update(data.numpy().tobytes())
    return digest.hexdigest()[:16]
