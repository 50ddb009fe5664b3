"""Progress of a run: the callback protocol, the tqdm callback, epoch lines and the run's result."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

# ------------------------------------------------------------------------------ progress


@runtime_checkable
class TrainCallback(Protocol):
    """Progress of a run (only the main process calls it). An optional `on_message(text)` also
    receives status lines (caching features, resuming, stopping)."""

    def on_start(self, total_steps: int) -> None:
        """The run starts (or resumes); total_steps counts every optimiser step of every epoch."""

    def on_step(self, step: int, loss: float) -> None:
        """An optimiser step ended; step is the global step number (1-based)."""

    def on_epoch(self, epoch: int, metrics: dict[str, Any]) -> None:
        """An epoch ended (1-based). metrics: epoch, train_loss (mean over its steps), lr, seconds (its
        steps only), training_steps, validation (best_seen, best_unseen, best_hm, AUC, attr_acc,
        obj_acc; None without a usable validation split) and best (True when it was saved)."""

    def on_end(self, result: "TrainResult") -> None:
        """The run ended (finished or stopped)."""


class TqdmCallback:
    """The CLI's progress: one bar over all steps, one line per epoch."""

    def __init__(self) -> None:
        self.bar = None

    def on_start(self, total_steps: int) -> None:
        """Open the bar."""
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total_steps, unit="step", dynamic_ncols=True)

    def on_step(self, step: int, loss: float) -> None:
        """Advance the bar to `step`."""
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            self.bar.update(step - self.bar.n)

    def on_epoch(self, epoch: int, metrics: dict[str, Any]) -> None:
        """Print the epoch's loss and validation metrics."""
        self.on_message(format_epoch_line(epoch, metrics))

    def on_message(self, text: str) -> None:
        """Print a status line without breaking the bar."""
        from tqdm.auto import tqdm

        tqdm.write(text, file=sys.stderr)

    def on_end(self, result: "TrainResult") -> None:
        """Close the bar."""
        if self.bar is not None:
            self.bar.close()


def format_epoch_line(epoch: int, metrics: dict[str, Any]) -> str:
    """One line: epoch, train loss and the validation headline metrics."""
    text = f"epoch {epoch}: train loss {metrics['train_loss']:.4f}"
    validation = metrics.get("validation")
    if validation:
        text += (f" | val S {100 * validation['best_seen']:.2f} U {100 * validation['best_unseen']:.2f} "
                 f"HM {100 * validation['best_hm']:.2f} AUC {100 * validation['AUC']:.2f}")
    agreement = (metrics.get("checks") or {}).get("patchcls_agreement")
    if agreement is not None:
        text += (f" | PatchCls agrees with the teacher on {100 * agreement:.0f}% of replaced patches "
                 f"(selects: {metrics['checks'].get('selection', '?')})")
    if metrics.get("best"):
        text += "  (best so far, saved)"
    return text


def notify(callback, name: str, *args) -> None:
    method = getattr(callback, name, None) if callback is not None else None
    if method is not None:
        method(*args)


@dataclass
class TrainResult:
    """Outcome of a run."""

    checkpoint_dir: Path | None  # the output folder when it holds a checkpoint, else None
    history: list[dict[str, Any]]  # one entry per finished epoch
    best_epoch: int | None
    validation: dict[str, Any] | None  # validation metrics of the selected checkpoint
    test: dict[str, Any] | None  # test metrics of the selected checkpoint (finished runs)
    training_steps: int
    stopped: bool  # True when a stop request ended the run early (resume with resume=True)
    finished: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        data = asdict(self)
        data["checkpoint_dir"] = str(self.checkpoint_dir) if self.checkpoint_dir is not None else None
        return data
