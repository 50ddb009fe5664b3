"""Sharing training time fairly among visitors: one run per visitor (running or waiting), first come first
served for a few slots, a visible place in line, and per-run caps on epochs and wall time on a public Space.
A run whose visitor left (closed the page) or stopped watching it for the idle limit is stopped."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

from .space import visitors_isolated

SPACE_MAX_EPOCHS = 30
SPACE_MAX_MINUTES = 30.0
SPACE_IDLE_MINUTES = 10.0
MAX_WAITING = 20  # visitors in line at once; more are told to come back later


class QueueError(ValueError):
    """The visitor cannot join the training queue now; the message says why."""


@dataclass(frozen=True)
class TrainingLimits:
    """Caps on one run: epochs, wall-clock seconds, and seconds without the visitor watching (None: no cap)."""

    max_epochs: int | None
    max_seconds: float | None
    idle_seconds: float | None


def _env_float(name: str) -> float | None:
    try:
        value = float(os.environ[name])
    except (KeyError, ValueError):
        return None
    return value if value > 0 else None


def training_limits() -> TrainingLimits:
    """The caps here: CZSL_MAX_TRAIN_EPOCHS, CZSL_MAX_TRAIN_MINUTES, CZSL_TRAIN_IDLE_MINUTES (0: no cap); where
    visitors are strangers 30 epochs, 30 minutes and 10 idle minutes unless set, locally none."""
    public = visitors_isolated()

    def setting(name: str, space_default: float) -> float | None:
        if name in os.environ:
            return _env_float(name)
        return space_default if public else None

    epochs = setting("CZSL_MAX_TRAIN_EPOCHS", SPACE_MAX_EPOCHS)
    minutes = setting("CZSL_MAX_TRAIN_MINUTES", SPACE_MAX_MINUTES)
    idle = setting("CZSL_TRAIN_IDLE_MINUTES", SPACE_IDLE_MINUTES)
    return TrainingLimits(int(epochs) if epochs else None, minutes * 60 if minutes else None,
                          idle * 60 if idle else None)


class TrainingQueue:
    """Who trains now and who waits, in order; thread safe. Visitors are the ids of hosting.current_visitor."""

    def __init__(self, slots: int, max_waiting: int = MAX_WAITING) -> None:
        self.slots = max(1, slots)
        self.max_waiting = max_waiting
        self._running: set[str] = set()
        self._waiting: list[str] = []
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def check(self, visitor: str) -> None:
        """Raise QueueError when the visitor may not ask for a run now (theirs runs or waits, or the line is full)."""
        with self._lock:
            self._check(visitor)

    def _check(self, visitor: str) -> None:
        if visitor in self._running:
            raise QueueError("Your training run is still going on. Wait for it to end, or press Stop.")
        if visitor in self._waiting:
            raise QueueError("Your training run is already waiting for its turn; press Stop to leave the queue.")
        if len(self._running) >= self.slots and len(self._waiting) >= self.max_waiting:
            raise QueueError(f"The training queue is full ({len(self._waiting)} runs waiting); try again later.")

    def request(self, visitor: str) -> int:
        """0 when the visitor's run may start now (it takes a slot), else their place in line (1 = next)."""
        with self._lock:
            self._check(visitor)
            self._seen[visitor] = time.monotonic()
            if len(self._running) < self.slots and not self._waiting:
                self._running.add(visitor)
                return 0
            self._waiting.append(visitor)
            return len(self._waiting)

    def finished(self, visitor: str) -> str | None:
        """Free the visitor's slot; returns the next visitor in line, who now holds it (None: nobody waits)."""
        with self._lock:
            self._running.discard(visitor)
            if self._waiting and len(self._running) < self.slots:
                following = self._waiting.pop(0)
                self._running.add(following)
                return following
            return None

    def leave(self, visitor: str) -> bool:
        """Take the visitor out of the line; True when they were waiting."""
        with self._lock:
            self._seen.pop(visitor, None)
            if visitor in self._waiting:
                self._waiting.remove(visitor)
                return True
            return False

    def place(self, visitor: str) -> int | None:
        """The visitor's place in line (1 = next), or None when they are not waiting."""
        with self._lock:
            return self._waiting.index(visitor) + 1 if visitor in self._waiting else None

    def seen(self, visitor: str) -> None:
        """The visitor is watching (their page polled the status)."""
        with self._lock:
            if visitor in self._running or visitor in self._waiting:
                self._seen[visitor] = time.monotonic()

    def idle(self, idle_seconds: float) -> list[str]:
        """Visitors running or waiting who have not been seen for idle_seconds."""
        now = time.monotonic()
        with self._lock:
            return [visitor for visitor in [*self._running, *self._waiting]
                    if now - self._seen.get(visitor, now) > idle_seconds]
