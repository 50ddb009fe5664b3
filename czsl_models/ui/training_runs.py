"""Training runs in background threads for the Train tab: each owned by the visitor who started it, queued
fairly for the server's slots and within its caps (hosting.training_queue), its files kept by the disk budget
while it runs and forgotten once its visitor has left (hosting.budget)."""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..hosting.budget import forget_visitor, mark_in_use, release
from ..hosting.memory import release_free_memory
from ..hosting.space import max_training_runs
from ..hosting.training_queue import QueueError, TrainingQueue, training_limits
from .inputs import InputError, user_error_types
from .session import current_visitor
from .state import AppState
from .text import hide_server_paths

LOGGER = logging.getLogger(__name__)
MAX_MESSAGES = 12

@dataclass
class TrainingRun:
    """What the app knows about one training run; updated by the trainer's callbacks."""

    model: str
    dataset: str
    out: Path
    started: float = field(default_factory=time.time)
    total_steps: int = 0
    step: int = 0
    losses: list[tuple[int, float]] = field(default_factory=list)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    result: Any = None
    error: str | None = None
    ended: float | None = None
    stop_requested: bool = False
    place: int | None = None  # place in the training queue while waiting for a slot (1 = next)
    limit_note: str = ""  # why the run was shortened or stopped by this server's caps, if it was

    @property
    def running(self) -> bool:
        """True until the trainer returns or fails."""
        return self.ended is None


class _Progress:
    """The trainer's callback: records progress under the manager's lock."""

    def __init__(self, run: TrainingRun, lock: threading.Lock) -> None:
        self.run = run
        self.lock = lock

    def on_start(self, total_steps: int) -> None:
        """Remember how many steps the run has."""
        with self.lock:
            self.run.total_steps = int(total_steps)

    def on_step(self, step: int, loss: float) -> None:
        """Record one step's loss."""
        with self.lock:
            self.run.step = int(step)
            self.run.losses.append((int(step), float(loss)))

    def on_epoch(self, epoch: int, metrics: dict[str, Any]) -> None:
        """Record an epoch's loss and validation metrics."""
        with self.lock:
            self.run.epochs.append(dict(metrics, epoch=epoch))

    def on_message(self, text: str) -> None:
        """Keep the latest status lines."""
        with self.lock:
            self.run.messages = (self.run.messages + [str(text)])[-MAX_MESSAGES:]

    def on_end(self, result: Any) -> None:
        """Keep the result (the thread marks the run ended when train() returns)."""
        with self.lock:
            self.run.result = result


class TrainingManager:
    """Training runs in background threads, each with its own model instance and owned by the visitor who
    started it: only that visitor sees or stops it. At most max_training_runs() go on at once."""

    def __init__(self, state: AppState, max_runs: int | None = None) -> None:
        self.state = state
        self.max_runs = max_runs if max_runs is not None else max_training_runs()
        self._lock = threading.Lock()
        self._runs: dict[str, TrainingRun] = {}
        self._stops: dict[str, threading.Event] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._pending: dict[str, tuple[Any, Path]] = {}  # queued runs: (config, dataset folder)
        self._gone: set[str] = set()  # visitors whose session ended: their files go when their run ends
        self.limits = training_limits()
        self.queue = TrainingQueue(self.max_runs)
        if self.limits.idle_seconds:
            threading.Thread(target=self._watch_idle, daemon=True, name="train-idle-watch").start()

    def check_free(self, visitor: str | None = None) -> None:
        """Raise InputError when the visitor could not ask for a run now (theirs runs or waits, or the line is full)."""
        try:
            self.queue.check(current_visitor() if visitor is None else visitor)
        except QueueError as error:
            raise InputError(str(error)) from None

    def start(self, model: str, spec: str, dataset_name: str, preset: str, epochs: int, lr: float | None,
              visitor: str | None = None) -> TrainingRun:
        """Start the visitor's run into a new checkpoint folder now, or queue it for the next free slot; within
        this server's caps on epochs and time (hosting.training_queue)."""
        from ..training.config import TrainConfig, check_config

        visitor = current_visitor() if visitor is None else visitor
        note = ""
        if self.limits.max_epochs and epochs > self.limits.max_epochs:
            note = f"This server trains at most {self.limits.max_epochs} epochs per run, so this run has {self.limits.max_epochs}."
            epochs = self.limits.max_epochs
        safe_name = re.sub(r"[^A-Za-z0-9._-]+", "-", dataset_name).strip("-.")[:40] or "dataset"
        out = self.state.visitor_weights(visitor) / f"{model}-{safe_name}-{time.strftime('%Y%m%d-%H%M%S')}"
        config = TrainConfig(model=model, dataset=spec, out=str(out), backbone=self.state.backbone_spec,
                             preset=preset, epochs=epochs, lr=lr, cpu=self.state.backbone.device.type == "cpu")
        check_config(config)
        run = TrainingRun(model=model, dataset=dataset_name, out=out, limit_note=note)
        with self._lock:
            try:
                place = self.queue.request(visitor)
            except QueueError as error:
                raise InputError(str(error)) from None
            self._runs[visitor], self._stops[visitor] = run, threading.Event()
            self._pending[visitor] = (config, Path(spec))
            run.place = place or None
        mark_in_use([out, Path(spec)])  # kept by the disk budget while it trains
        if not place:
            self._launch(visitor)
        return run

    def _launch(self, visitor: str) -> None:
        with self._lock:
            config, dataset = self._pending.pop(visitor)
            run, stop = self._runs[visitor], self._stops[visitor]
            run.place, run.started = None, time.time()
            thread = threading.Thread(target=self._work, args=(visitor, config, run, stop, dataset), daemon=True,
                                      name=f"train-{run.model}")
            self._threads[visitor] = thread
        thread.start()

    def _work(self, visitor: str, config: Any, run: TrainingRun, stop: threading.Event, dataset: Path) -> None:
        from ..training import train

        timer = None
        if self.limits.max_seconds:  # the wall-time cap: stopped like Stop, keeping the best epoch so far
            timer = threading.Timer(self.limits.max_seconds, self._cap, args=(run, stop,
                                    f"Stopped at this server's limit of {duration_words(self.limits.max_seconds)} per run."))
            timer.daemon = True
            timer.start()
        try:
            train(config, callback=_Progress(run, self._lock), stop=stop)
        except user_error_types() + (ValueError,) as error:
            with self._lock:
                run.error = hide_server_paths(str(error))
        except Exception as error:  # keep the app alive; the trace goes to the server log
            LOGGER.exception("Training failed")
            with self._lock:
                run.error = f"something went wrong ({type(error).__name__}); the details are in the server log"
        finally:
            if timer is not None:
                timer.cancel()
            with self._lock:
                run.ended = time.time()
            release([run.out, dataset])
            if visitor in self._gone:
                forget_visitor(visitor)
            following = self.queue.finished(visitor)
            if following is not None:
                self._launch(following)
            else:
                release_free_memory()  # the run's tensors are gone; give their pages back

    def _cap(self, run: TrainingRun, stop: threading.Event, note: str) -> None:
        with self._lock:
            if run.running:
                run.limit_note, run.stop_requested = note, True
                stop.set()

    def _watch_idle(self) -> None:
        """Stop the runs (and queued requests) of visitors who stopped watching for the idle limit."""
        while self.limits.idle_seconds:
            time.sleep(min(30.0, self.limits.idle_seconds / 4))
            for visitor in self.queue.idle(self.limits.idle_seconds):
                self.leave(visitor, f"Stopped: nobody watched this run for {duration_words(self.limits.idle_seconds)}.")

    def leave(self, visitor: str, note: str = "Stopped: its visitor left.") -> None:
        """The visitor's session ended (or went idle): stop their run, drop their place in line."""
        if note.endswith("left."):
            self._gone.add(visitor)
        if self.queue.leave(visitor):
            with self._lock:
                _, dataset = self._pending.pop(visitor, (None, Path()))
                run = self._runs.get(visitor)
                if run is not None:
                    run.place, run.ended, run.limit_note = None, time.time(), note
                    release([run.out, dataset])
            return
        run = self._runs.get(visitor)
        if run is not None and run.running:
            self._cap(run, self._stops[visitor], note)

    def seen(self, visitor: str) -> None:
        """The visitor's page asked for their run's status (they are watching)."""
        self.queue.seen(visitor)

    def stop(self, visitor: str | None = None) -> bool:
        """Ask the visitor's run (None: every run, for shutdown) to stop after its step, or take it out of the
        queue; False when none runs or waits."""
        for waiting in [visitor] if visitor is not None else list(self._pending):
            if self.queue.place(waiting) is not None:
                self.leave(waiting, "Left the queue before it started; nothing was trained.")
                if visitor is not None:
                    return True
        with self._lock:
            keys = list(self._runs) if visitor is None else [visitor]
            stopped = False
            for key in keys:
                run = self._runs.get(key)
                if run is not None and run.running:
                    run.stop_requested = True
                    self._stops[key].set()
                    stopped = True
            return stopped

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for every run's thread (for tests and shutdown); True when all ended."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in list(self._threads.values()):
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads.values())

    def snapshot(self, visitor: str | None = None) -> TrainingRun | None:
        """A copy of the visitor's latest run, safe to read without the lock."""
        visitor = current_visitor() if visitor is None else visitor
        with self._lock:
            run = self._runs.get(visitor)
            if run is None:
                return None
            return dataclasses.replace(run, losses=list(run.losses), epochs=[dict(e) for e in run.epochs],
                                       messages=list(run.messages), place=self.queue.place(visitor))


def remaining_seconds(run: TrainingRun) -> float | None:
    """Estimated seconds until a running run ends, from its pace so far (None before the first step)."""
    if not run.total_steps or not run.step:
        return None
    elapsed = time.time() - run.started
    return elapsed / run.step * (run.total_steps - run.step)


# ------------------------------------------------------------------ views of a run
def duration_words(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"
