"""Training, evaluation and publishing: the trainer behind `python -m czsl_models train | evaluate |
push` and the app's Train tab.

Presets: "fast" trains the heads on backbone outputs cached once per dataset and backbone
(features_cache.py); "paper" trains on pixels with the published augmentation and, for MSCI,
the vision adapters. Models that need pixels (SVIP) train on pixels under either preset.

Runs are reproducible and resumable: the data order of an epoch comes from (seed, epoch), the
augmentation of an image from (seed, epoch, image) and the random state of every step (dropout)
from (seed, step, process), so a run stopped at any step and resumed from its saved state ends
with the same weights as one that never stopped, without saving random generator states.
Batches are global: `batch_size` images per optimiser step, split across processes under
`accelerate launch`, so the hyper-parameters mean the same on any number of GPUs. The main process
validates, writes checkpoints and the resume state; on several machines, put --out on a shared
file system so every process finds the state when resuming.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

from ..backbone import DEFAULT_BACKBONE
from ..evaluation.evaluate import evaluate_model  # re-exported: the app's evaluation entry point
from .run_state import (
    TrainingState, commit_checkpoint, has_checkpoint, load_training_state, recover_checkpoint, save_training_state,
    training_state_path,
)

PRESETS = ("fast", "paper")
HEADLINE_METRICS = ("best_seen", "best_unseen", "best_hm", "AUC", "attr_acc", "obj_acc")
MIXED_PRECISION_CHOICES = ("auto", "no", "fp16", "bf16")


class TrainError(ValueError):
    """A training run cannot start or continue; the message says why and what to do."""


# ------------------------------------------------------------------------------ configuration


@dataclass
class TrainConfig:
    """Everything a training run needs; None means "the recipe's value" (see resolve_recipe)."""

    model: str
    dataset: str
    out: str
    backbone: str = DEFAULT_BACKBONE
    preset: str = "fast"
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    weight_decay: float | None = None
    optimizer: str | None = None  # "adam" or "adamw"
    seed: int = 0
    open_world: bool = False  # validation (model selection) and test metrics in the open world
    resume: bool = False
    num_workers: int | None = None  # image decoding processes; None: automatic
    eval_batch_size: int = 64
    cache_dir: str | None = None  # feature cache root; None: $CZSL_CACHE_DIR or ~/.cache/czsl_models/features
    cache_dtype: str = "float16"
    use_feature_cache: bool = True  # False: the fast preset reads pixels every epoch (no disk cache)
    mixed_precision: str = "auto"  # "auto": bf16 (or fp16) on CUDA, none on CPU
    cpu: bool = False
    save_every_steps: int = 0  # also save the resume state every N steps (0: at epoch ends only)
    test_at_end: bool = True  # evaluate the selected checkpoint on the test split at the end


# Fields that must not change when a run is resumed (they change the result).
_RESUME_FIXED = ("model", "dataset", "backbone", "preset", "lr", "batch_size", "weight_decay", "optimizer", "seed",
                 "open_world", "cache_dtype", "use_feature_cache", "lr_step", "lr_gamma", "model_options")


@dataclass(frozen=True)
class Recipe:
    """Resolved optimisation settings and model options of a run."""

    epochs: int
    lr: float
    batch_size: int
    weight_decay: float
    optimizer: str
    lr_step: int  # StepLR period in epochs (0: constant learning rate)
    lr_gamma: float
    model_options: dict[str, Any] = field(default_factory=dict)


# Troika's published recipe, which docs/models.md gives Refiner; SVIP publishes none for CZSL and gets the same.
# (epochs, lr, batch size) per recognised dataset.
_TROIKA = {"mit-states": (10, 1e-4, 64), "ut-zappos": (15, 5e-4, 128), "cgqa": (15, 3.125e-6, 16)}
_DEFAULT_RECIPE = (10, 1e-4, 64)
_CGQA_LOSS_WEIGHTS = [1.0, 0.1, 0.1]


def recognised_dataset(name: str) -> str | None:
    """'mit-states', 'ut-zappos' or 'cgqa' when a dataset name is one of the published benchmarks."""
    key = "".join(ch for ch in name.lower() if ch.isalnum())
    if "mitstates" in key or key == "mit":
        return "mit-states"
    if "zappos" in key:
        return "ut-zappos"
    if "cgqa" in key:
        return "cgqa"
    return None


def resolve_recipe(config: TrainConfig, dataset_name: str) -> Recipe:
    """The published recipe of the model on a recognised dataset (else sensible defaults), with the
    config's explicit values taking precedence."""
    from ..models.msci import resolve_preset

    known = recognised_dataset(dataset_name)
    options: dict[str, Any] = {}
    if config.model == "msci":
        preset_name, values = resolve_preset(known or "mit-states")
        options["preset"] = preset_name
        if config.preset == "paper":
            options["use_adapters"] = True
        epochs, lr, batch = values.epochs, values.learning_rate, values.batch_size
        weight_decay, optimizer, lr_step, lr_gamma = values.weight_decay, values.optimizer, values.lr_step_epochs, values.lr_gamma
    else:
        epochs, lr, batch = _TROIKA.get(known, _DEFAULT_RECIPE) if known else _DEFAULT_RECIPE
        weight_decay, optimizer, lr_step, lr_gamma = 1e-5, "adam", 0, 1.0
        if known == "cgqa":
            options["loss_weights"] = list(_CGQA_LOSS_WEIGHTS)
    return Recipe(
        epochs=int(config.epochs if config.epochs is not None else epochs),
        lr=float(config.lr if config.lr is not None else lr),
        batch_size=int(config.batch_size if config.batch_size is not None else batch),
        weight_decay=float(config.weight_decay if config.weight_decay is not None else weight_decay),
        optimizer=(config.optimizer or optimizer).lower(),
        lr_step=lr_step, lr_gamma=lr_gamma, model_options=options,
    )


def check_config(config: TrainConfig) -> None:
    """Raise TrainError for options that cannot work."""
    from ..registry import CheckpointError, model_class

    if config.preset not in PRESETS:
        raise TrainError(f"unknown preset {config.preset!r}; choose fast or paper")
    try:
        cls = model_class(config.model)
    except CheckpointError as error:
        raise TrainError(str(error)) from None
    if cls.name == "clip":
        raise TrainError("the clip baseline has nothing to train; choose msci, refiner or svip")
    for name, value, low in (("epochs", config.epochs, 1), ("batch size", config.batch_size, 1),
                             ("eval batch size", config.eval_batch_size, 1)):
        if value is not None and value < low:
            raise TrainError(f"{name} must be at least {low}, not {value}")
    if config.lr is not None and not (config.lr > 0 and math.isfinite(config.lr)):
        raise TrainError(f"learning rate must be a positive number, not {config.lr}")
    if config.weight_decay is not None and config.weight_decay < 0:
        raise TrainError(f"weight decay must be >= 0, not {config.weight_decay}")
    if config.optimizer is not None and config.optimizer.lower() not in ("adam", "adamw"):
        raise TrainError(f"unknown optimizer {config.optimizer!r}; choose adam or adamw")
    if config.mixed_precision not in MIXED_PRECISION_CHOICES:
        raise TrainError(f"mixed precision must be one of {', '.join(MIXED_PRECISION_CHOICES)}")
    if config.cache_dtype not in ("float16", "float32"):
        raise TrainError("cache dtype must be float16 or float32")
    if config.save_every_steps < 0:
        raise TrainError("save_every_steps must be >= 0")


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
    if metrics.get("best"):
        text += "  (best so far, saved)"
    return text


def _notify(callback, name: str, *args) -> None:
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


# ------------------------------------------------------------------------------ data order


def _mix_seed(*parts: Any) -> int:
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def epoch_batches(num_images: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The global batches of an epoch: a permutation drawn from (seed, epoch), cut into batches."""
    import torch

    generator = torch.Generator().manual_seed(_mix_seed("order", seed, epoch))
    order = torch.randperm(num_images, generator=generator).tolist()
    return [order[start:start + batch_size] for start in range(0, num_images, batch_size)]


def shard_batch(batch: Sequence[int], rank: int, world: int) -> list[int]:
    """This process's part of a global batch; a batch smaller than the number of processes is
    completed by wrapping around it, so no process ever gets an empty batch."""
    items = list(batch)
    while len(items) < world:
        items += list(batch)[: world - len(items)]
    return items[rank::world]


# ------------------------------------------------------------------------------ the run


def _make_loss_module(model, vocab):
    """The model and its loss as one module returning the loss tensor (what DDP wraps)."""
    from torch import nn

    class LossModule(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixels, visual, pair_targets, state_targets, object_targets):
            logits = self.model(pixels, vocab, visual=visual)
            loss, _ = self.model.loss(logits, pair_targets, state_targets, object_targets)
            return loss

    return LossModule()


def _headline(metrics: dict[str, Any] | None) -> dict[str, float] | None:
    return None if metrics is None else {key: float(metrics[key]) for key in HEADLINE_METRICS}


class _Run:
    """One training run: set-up, the epoch loop, checkpoints and the resume state."""

    def __init__(self, config: TrainConfig, callback, stop: threading.Event | None) -> None:
        self.config = config
        self.callback = callback
        self.stop = stop
        self.out = Path(config.out).expanduser()

    # ---------------------------------------------------------------- set-up
    def _accelerator(self):
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs

        import torch

        from ..backbone import default_device

        # CZSL_DEVICE=cpu (which places the shared backbone) also keeps the heads on the CPU.
        cpu = self.config.cpu or default_device().type == "cpu"
        if cpu and torch.cuda.is_available():
            # The shared backbone follows CZSL_DEVICE; keep it with the heads on the CPU.
            os.environ["CZSL_DEVICE"] = "cpu"
        precision = self.config.mixed_precision
        if precision == "auto":
            precision = "no" if cpu else ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
        # Some models leave parameters out of a forward (e.g. a branch unused by a batch): let DDP cope.
        handlers = [DistributedDataParallelKwargs(find_unused_parameters=True)]
        return Accelerator(cpu=cpu, mixed_precision=precision, kwargs_handlers=handlers)

    def _message(self, text: str) -> None:
        if self.accelerator.is_main_process:
            _notify(self.callback, "on_message", text)

    def _resolved_config(self) -> dict[str, Any]:
        data = {f.name: getattr(self.config, f.name) for f in fields(self.config)}
        data.update({"lr": self.recipe.lr, "batch_size": self.recipe.batch_size, "epochs": self.recipe.epochs,
                     "weight_decay": self.recipe.weight_decay, "optimizer": self.recipe.optimizer,
                     "lr_step": self.recipe.lr_step, "lr_gamma": self.recipe.lr_gamma,
                     "model_options": self.recipe.model_options, "model": self.config.model.lower()})
        return data

    def _prepare_output(self) -> TrainingState | None:
        """Check the output folder; the saved state when resuming, else None."""
        if self.out.exists() and not self.out.is_dir():
            raise TrainError(f"{self.out} is a file; --out must be a folder")
        saved = None
        if self.out.is_dir():
            recover_checkpoint(self.out)
            saved = training_state_path(self.out)
            if not self.config.resume and (saved is not None or has_checkpoint(self.out)):
                raise TrainError(f"{self.out} already holds a training run; pass --resume to continue it "
                                 f"or choose another output folder")
            if self.config.resume and saved is None and has_checkpoint(self.out):
                raise TrainError(f"{self.out} holds a checkpoint but no training state to resume from; "
                                 f"choose another output folder")
        return saved

    def _check_resumable(self, state: TrainingState) -> None:
        current = self._resolved_config()
        changed = [key for key in _RESUME_FIXED if state.config.get(key) != current.get(key)]
        if changed:
            details = ", ".join(f"{key} {state.config.get(key)!r} -> {current.get(key)!r}" for key in changed)
            raise TrainError(f"cannot resume {self.out}: options differ from the saved run ({details})")

    # ---------------------------------------------------------------- main
    def run(self) -> "TrainResult":
        import torch

        from ..data.dataset import DatasetError, load_dataset
        from .feature_cache import CacheBuildStopped, model_trains_from_cache
        from ..evaluation.evaluate import training_targets, training_vocabulary
        from ..registry import load_model

        config = self.config
        check_config(config)
        try:
            self.dataset = load_dataset(config.dataset)
        except DatasetError as error:
            raise TrainError(f"cannot load dataset {config.dataset}: {error}") from None
        dataset = self.dataset
        if not dataset.splits["train"]:
            raise TrainError(f"{dataset.name} has no training images")
        self.recipe = resolve_recipe(config, dataset.name)
        self.accelerator = accelerator = self._accelerator()
        saved_path = self._prepare_output() if accelerator.is_main_process else training_state_path(self.out)
        accelerator.wait_for_everyone()
        if config.resume and saved_path is None:
            saved_path = training_state_path(self.out)

        torch.manual_seed(_mix_seed("init", config.seed))
        model = load_model(config.model, backbone=config.backbone, train_states=list(dataset.states),
                           train_objects=list(dataset.objects), train_pairs=[list(p) for p in dataset.train_pairs],
                           **self.recipe.model_options)
        model.to(accelerator.device)
        self.model = model
        if model.num_trainable_parameters() == 0:
            raise TrainError(f"{config.model} has no trainable parameters")
        self.vocab = training_vocabulary(dataset)
        model.prompts.check_lengths(self.vocab)
        self.train_samples = list(dataset.splits["train"])
        self.targets = [t.to(accelerator.device) for t in training_targets(dataset, self.vocab, self.train_samples)]

        state = TrainingState(config=self._resolved_config())
        loaded = load_training_state(self.out) if config.resume and saved_path is not None else None
        if loaded is not None:
            state, model_state, optimizer_state = loaded
            self._check_resumable(state)
            state.config = self._resolved_config()  # epochs may grow on resume
            if state.epoch < self.recipe.epochs:
                state.finished = False
            model.load_state_dict(model_state)
        self.state = state

        self.from_cache = config.preset == "fast" and config.use_feature_cache and model_trains_from_cache(model)
        if config.preset == "fast" and config.use_feature_cache and not self.from_cache:
            self._message(f"{model.display_name} trains on pixels (its training pass needs them); nothing is cached.")
        self.train_features = None
        self.eval_features: dict[str, Any] = {}
        self.evaluable = {phase: self._phase_evaluable(phase) for phase in ("val", "test")}
        if self.from_cache:
            # Every process builds (or waits for) every cache now: later evaluations run on the main process only.
            try:
                self.train_features = self._features("train", self.train_samples)
                for phase in ("val", "test"):
                    if self.evaluable[phase] and (phase == "val" or config.test_at_end):
                        self.eval_features[phase] = self._features(phase, list(dataset.splits[phase]))
            except CacheBuildStopped:
                self._message("Stopped while caching backbone outputs; nothing was trained.")
                result = self._result(stopped=True)
                if accelerator.is_main_process:
                    _notify(self.callback, "on_end", result)
                return result

        optimizer_class = torch.optim.AdamW if self.recipe.optimizer == "adamw" else torch.optim.Adam
        optimizer = optimizer_class(model.trainable_parameters(), lr=self.recipe.lr, weight_decay=self.recipe.weight_decay)
        scheduler = (torch.optim.lr_scheduler.StepLR(optimizer, self.recipe.lr_step, self.recipe.lr_gamma)
                     if self.recipe.lr_step > 0 else None)
        self.raw_optimizer, self.scheduler = optimizer, scheduler
        self.step_module, self.optimizer = accelerator.prepare(_make_loss_module(model, self.vocab), optimizer)
        if loaded is not None:
            optimizer.load_state_dict(optimizer_state)
            if scheduler is not None and state.scheduler:
                scheduler.load_state_dict(state.scheduler)
            if state.scaler and accelerator.scaler is not None:
                accelerator.scaler.load_state_dict(state.scaler)
            self._message(f"Resuming {self.out} at epoch {state.epoch + 1}, step {state.global_step}.")
        elif config.resume:
            self._message(f"Nothing to resume in {self.out}; starting a new run.")

        self.steps_per_epoch = math.ceil(len(self.train_samples) / self.recipe.batch_size)
        stopped = False
        if accelerator.is_main_process:
            _notify(self.callback, "on_start", self.steps_per_epoch * self.recipe.epochs)
        if not state.finished:
            stopped = self._epochs()
            if not stopped:
                self._finish()
        result = self._result(stopped)
        if accelerator.is_main_process:
            _notify(self.callback, "on_end", result)
        accelerator.wait_for_everyone()
        return result

    def _features(self, phase: str, samples):
        """Cached backbone outputs of a split (each machine's first process builds them, the others wait;
        two machines sharing a cache folder both build, and the atomic rename keeps one)."""
        from .feature_cache import build_feature_cache

        if not samples:
            return None
        accelerator = self.accelerator
        reported = [-1]

        def progress(done: int, total: int) -> None:
            tenth = done * 10 // total
            if tenth != reported[0]:
                reported[0] = tenth
                self._message(f"Caching backbone outputs of the {phase} images: {done}/{total}")

        with accelerator.local_main_process_first():
            return build_feature_cache(self.model, self.dataset, samples, cache_root=self.config.cache_dir,
                                       dtype=self.config.cache_dtype, batch_size=self.config.eval_batch_size,
                                       progress=progress if accelerator.is_local_main_process else None, stop=self.stop)

    # ---------------------------------------------------------------- epochs
    def _pixel_source(self, batches: list[list[int]], epoch: int):
        from ..evaluation.evaluate import PixelSamples, default_num_workers, pixel_batches, training_augmentation

        backbone = self.model.backbone
        augment = self.config.preset == "paper"
        transform = training_augmentation(backbone) if augment else backbone.preprocess
        samples = PixelSamples(self.dataset, self.train_samples, transform, augment=augment, seed=self.config.seed)
        workers = (self.config.num_workers if self.config.num_workers is not None
                   else default_num_workers(len(self.train_samples), self.accelerator.device))
        keyed = [[(epoch, index) for index in batch] for batch in batches]
        return pixel_batches(samples, keyed, workers)

    def _should_stop(self) -> bool:
        import torch

        requested = self.stop is not None and self.stop.is_set()
        if self.accelerator.num_processes == 1:
            return requested
        flag = torch.tensor([1.0 if requested else 0.0], device=self.accelerator.device)
        return bool(self.accelerator.reduce(flag, reduction="sum").item() > 0)

    def _epochs(self) -> bool:
        """Run the remaining epochs; True when a stop request ended them early."""
        import torch

        accelerator, state, recipe = self.accelerator, self.state, self.recipe
        rank, world = accelerator.process_index, accelerator.num_processes
        self.model.train()
        while state.epoch < recipe.epochs:
            epoch = state.epoch
            started = time.perf_counter()
            batches = epoch_batches(len(self.train_samples), recipe.batch_size, self.config.seed, epoch)
            local = [shard_batch(batch, rank, world) for batch in batches[state.batch:]]
            source = (((None, batch) for batch in local) if self.from_cache else self._pixel_source(local, epoch))
            for pixels, indices in source:
                # Every step's randomness (dropout) comes from (seed, step, process): resumes are exact.
                torch.manual_seed(_mix_seed("step", self.config.seed, state.global_step, rank))
                index = torch.as_tensor(indices, device=accelerator.device)
                visual = self.train_features.batch(indices, accelerator.device) if self.from_cache else None
                if pixels is not None:
                    pixels = pixels.to(accelerator.device)
                loss = self.step_module(pixels, visual, *(t[index] for t in self.targets))
                accelerator.backward(loss)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.model.training_steps += 1
                state.global_step += 1
                state.batch += 1
                loss_value = float(loss.detach())
                state.epoch_loss_sum += loss_value
                state.epoch_loss_count += 1
                if accelerator.is_main_process:
                    _notify(self.callback, "on_step", state.global_step, loss_value)
                if self._should_stop():
                    self._save_state()
                    self._message(f"Stopped at step {state.global_step}; the best checkpoint so far is kept. "
                                  f"Resume with --resume.")
                    return True
                every = self.config.save_every_steps
                if every and state.global_step % every == 0 and state.batch < len(batches):
                    self._save_state()
            self._end_epoch(epoch, time.perf_counter() - started)
        return False

    def _end_epoch(self, epoch: int, seconds: float) -> None:
        state = self.state
        if self.scheduler is not None:
            self.scheduler.step()
        entry: dict[str, Any] = {"epoch": epoch + 1, "train_loss": state.epoch_loss_sum / max(1, state.epoch_loss_count),
                                 "lr": float(self.raw_optimizer.param_groups[0]["lr"]), "seconds": round(seconds, 3),
                                 "training_steps": state.global_step}
        best = False
        if self.accelerator.is_main_process:
            metrics = self._validate()
            entry["validation"] = _headline(metrics)
            score = None if metrics is None else float(metrics["AUC"])
            # Selection on validation AUC; without a usable validation split the last epoch is kept.
            best = score is None or state.best_score is None or score > state.best_score
            if best:
                state.best_score, state.best_epoch, state.best_metrics = score, epoch + 1, metrics
                self._commit(metrics, phase="val")
            entry["best"] = best
        state.history.append(entry)
        state.epoch, state.batch = epoch + 1, 0
        state.epoch_loss_sum, state.epoch_loss_count = 0.0, 0
        self._save_state()
        if self.accelerator.is_main_process:
            _notify(self.callback, "on_epoch", epoch + 1, entry)
        self.model.train()

    def _validate(self) -> dict[str, Any] | None:
        return self._evaluate("val")

    def _phase_evaluable(self, phase: str) -> bool:
        """True when a split has images of seen and unseen pairs (else a message says why not)."""
        from ..evaluation.evaluate import evaluation_setup

        try:
            evaluation_setup(self.dataset, phase, self.config.open_world)
        except ValueError as error:
            self._message(f"No {phase} metrics: {error}.")
            return False
        return True

    def _evaluate(self, phase: str) -> dict[str, Any] | None:
        """Metrics of the current weights on a phase, or None when the phase cannot be evaluated."""
        from ..evaluation.evaluate import evaluate_model

        if not self.evaluable[phase]:
            return None
        metrics = evaluate_model(self.model, self.dataset, phase=phase, open_world=self.config.open_world,
                                 batch_size=self.config.eval_batch_size, features=self.eval_features.get(phase),
                                 num_workers=self.config.num_workers)
        return metrics.to_dict()

    # ---------------------------------------------------------------- saving
    def _metrics_document(self, metrics: dict[str, Any] | None, phase: str) -> dict[str, Any]:
        state = self.state
        document: dict[str, Any] = {"phase": phase if metrics is not None else None,
                                    "open_world": self.config.open_world, "dataset": self.dataset.name,
                                    "model": self.config.model, "preset": self.config.preset,
                                    "epoch": state.best_epoch, "training_steps": int(self.model.training_steps.item())}
        if metrics is not None:
            document.update(metrics)
        if phase == "test" and state.best_metrics is not None:
            document["validation"] = state.best_metrics
        return document

    def _commit(self, metrics: dict[str, Any] | None, phase: str) -> None:
        document = self._metrics_document(metrics, phase)
        model = self.model

        def write(folder: Path) -> None:
            model.save_pretrained(folder, model_card_kwargs={"metrics": document if metrics is not None else None})
            (folder / "metrics.json").write_text(json.dumps(document, indent=2))

        commit_checkpoint(self.out, write)

    def _save_state(self) -> None:
        """Save the resume state (main process; every process waits for it)."""
        accelerator = self.accelerator
        if accelerator.is_main_process:
            state = self.state
            if self.scheduler is not None:
                state.scheduler = self.scheduler.state_dict()
            state.scaler = accelerator.scaler.state_dict() if accelerator.scaler is not None else None
            save_training_state(self.out, state, self.model.state_dict(), self.raw_optimizer.state_dict())
        accelerator.wait_for_everyone()

    def _finish(self) -> None:
        """Evaluate the selected checkpoint on the test split and record it; mark the run finished."""
        from safetensors.torch import load_file

        state = self.state
        if self.accelerator.is_main_process:
            if self.config.test_at_end and (self.out / "model.safetensors").is_file():
                last = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                self.model.load_state_dict(load_file(str(self.out / "model.safetensors")))
                test = self._evaluate("test")
                if test is not None:
                    self._commit(test, phase="test")
                self.model.load_state_dict(last)
        state.finished = True
        self._save_state()

    def _result(self, stopped: bool) -> TrainResult:
        state = self.state
        test = None
        metrics_path = self.out / "metrics.json"
        if metrics_path.is_file():
            document = json.loads(metrics_path.read_text())
            if document.get("phase") == "test":
                test = {key: document[key] for key in HEADLINE_METRICS}
        return TrainResult(
            checkpoint_dir=self.out if has_checkpoint(self.out) else None,
            history=list(state.history), best_epoch=state.best_epoch,
            validation=_headline(state.best_metrics), test=test,
            training_steps=int(state.global_step), stopped=stopped, finished=bool(state.finished),
        )


def train(config: TrainConfig, callback: TrainCallback | None = None, stop: threading.Event | None = None) -> TrainResult:
    """Train a model on a dataset into config.out (a loadable checkpoint), resumable with config.resume.

    A set `stop` event ends the run after the current step: the resume state is saved and the
    best checkpoint so far is kept."""
    return _Run(config, callback, stop).run()


# ------------------------------------------------------------------------------ CLI: train


def _print_error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _user_errors() -> tuple[type[BaseException], ...]:
    from ..backbone import BackboneError
    from ..data.dataset import DatasetError
    from ..registry import CheckpointError
    from ..vocab import VocabularyError

    return (TrainError, DatasetError, BackboneError, CheckpointError, VocabularyError)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `train`."""
    parser.add_argument("--model", required=True, help="msci, refiner or svip")
    parser.add_argument("--dataset", required=True,
                        help="a dataset folder (czsl layout or '<state> <object>' image folders) or synthetic:shapes")
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE,
                        help=f"OpenCLIP backbone: ARCH:TAG, hf-hub:org/repo, a local folder, or tiny (default {DEFAULT_BACKBONE})")
    parser.add_argument("--out", required=True, help="output folder: becomes a loadable checkpoint")
    parser.add_argument("--preset", choices=PRESETS, default="fast",
                        help="fast: heads on cached backbone outputs (default); paper: pixels, augmentation, MSCI adapters")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: the published recipe, else 10)")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: the published recipe)")
    parser.add_argument("--batch-size", type=int, default=None, help="images per optimiser step, over all processes")
    parser.add_argument("--weight-decay", type=float, default=None, help="weight decay (default 1e-5)")
    parser.add_argument("--optimizer", choices=("adam", "adamw"), default=None, help="optimizer (default: the recipe's)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (data order, initialisation, dropout)")
    parser.add_argument("--open-world", action="store_true", help="select and report on open-world metrics")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    parser.add_argument("--num-workers", type=int, default=None, help="image decoding processes (default: automatic)")
    parser.add_argument("--cache-dir", default=None, help="feature cache folder (default $CZSL_CACHE_DIR or ~/.cache/czsl_models/features)")
    parser.add_argument("--cache-dtype", choices=("float16", "float32"), default="float16",
                        help="storage type of cached token features (default float16)")
    parser.add_argument("--no-cache", action="store_true",
                        help="fast preset without the feature cache: encode images every epoch (no disk used)")
    parser.add_argument("--mixed-precision", choices=MIXED_PRECISION_CHOICES, default="auto",
                        help="auto: bf16/fp16 on CUDA, none on CPU")
    parser.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is present")
    parser.add_argument("--save-every", type=int, default=0, metavar="STEPS",
                        help="also save the resume state every STEPS steps (default: at epoch ends)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run_train_command(args: argparse.Namespace) -> int:
    """Train from the command line; Ctrl-C stops cleanly after the current step (resume with --resume)."""
    config = TrainConfig(model=args.model.lower(), dataset=args.dataset, out=args.out, backbone=args.backbone,
                         preset=args.preset, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                         weight_decay=args.weight_decay, optimizer=args.optimizer, seed=args.seed,
                         open_world=args.open_world, resume=args.resume, num_workers=args.num_workers,
                         cache_dir=args.cache_dir, cache_dtype=args.cache_dtype,
                         use_feature_cache=not args.no_cache, mixed_precision=args.mixed_precision,
                         cpu=args.cpu, save_every_steps=args.save_every)
    stop = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        def request_stop(signum, frame):
            if stop.is_set():  # a second Ctrl-C aborts at once
                raise KeyboardInterrupt
            stop.set()
            print("\nStopping after this step (Ctrl-C again to abort)...", file=sys.stderr)

        previous = signal.signal(signal.SIGINT, request_stop)
    try:
        result = train(config, callback=TqdmCallback(), stop=stop)
    except _user_errors() as error:
        return _print_error(str(error))
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    from accelerate import PartialState

    if not PartialState().is_main_process:
        return 0
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(format_train_summary(result))
    return 130 if result.stopped else 0


def format_train_summary(result: TrainResult) -> str:
    """Human-readable end-of-run summary."""
    lines = []
    if result.checkpoint_dir is None:
        lines.append("No checkpoint yet (stopped before the first epoch ended).")
    else:
        lines.append(f"Checkpoint: {result.checkpoint_dir} (best epoch {result.best_epoch} of {len(result.history)}; "
                     f"{result.training_steps} steps run)")
    for label, metrics in (("validation", result.validation), ("test", result.test)):
        if metrics:
            lines.append(f"  {label:<10} S {100 * metrics['best_seen']:.2f}  U {100 * metrics['best_unseen']:.2f}  "
                         f"HM {100 * metrics['best_hm']:.2f}  AUC {100 * metrics['AUC']:.2f}")
    if result.stopped:
        lines.append("Stopped early; continue with the same command plus --resume.")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ CLI: evaluate


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `evaluate`."""
    from ..cli import add_head_precision_argument

    parser.add_argument("--model", default=None, help="clip, msci, refiner or svip (default: the checkpoint's, else clip)")
    parser.add_argument("--checkpoint", default=None,
                        help="a checkpoint folder or Hub repo id (default: none, the untrained zero-shot model)")
    parser.add_argument("--dataset", required=True, help="a dataset folder or synthetic:shapes")
    parser.add_argument("--backbone", default=None, help="backbone for a model without checkpoint (default ViT-L-14-quickgelu:openai)")
    parser.add_argument("--phase", choices=("test", "val"), default="test", help="split to evaluate (default test)")
    parser.add_argument("--open-world", action="store_true", help="score every state x object pair")
    parser.add_argument("--feasibility-threshold", type=_feasibility_threshold, default=None, metavar="T|val",
                        help="open world: mask unseen pairs whose CompCos feasibility is below T, or below the "
                             "threshold with the best validation AUC ('val')")
    parser.add_argument("--batch-size", type=int, default=32, help="images per batch (default 32)")
    parser.add_argument("--num-workers", type=int, default=None, help="image decoding processes (default: automatic)")
    add_head_precision_argument(parser)
    parser.add_argument("--json", action="store_true", help="print every metric and the curve as JSON")


def _feasibility_threshold(text: str) -> float | str:
    """A number, or 'val' (choose on the validation split)."""
    if text.strip().lower() == "val":
        return "val"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'val', not {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"the threshold must be finite, not {text!r}")
    return value


def run_evaluate_command(args: argparse.Namespace) -> int:
    """Evaluate a model (trained or zero-shot) on a dataset split and print the CZSL metrics."""
    from ..data.dataset import load_dataset
    from ..evaluation.metrics import CZSLMetrics, format_metrics_table
    from ..evaluation.evaluate import choose_feasibility_threshold, evaluate_model
    from ..registry import load_model, read_checkpoint_config, resolve_checkpoint

    if args.batch_size < 1:
        return _print_error("--batch-size must be at least 1")
    if args.feasibility_threshold is not None and not args.open_world:
        return _print_error("--feasibility-threshold applies to the open world: add --open-world")
    threshold, tried = args.feasibility_threshold, None
    try:
        name = args.model
        if name is None:
            name = read_checkpoint_config(resolve_checkpoint(args.checkpoint))["model_type"] if args.checkpoint else "clip"
        model = load_model(name, checkpoint=args.checkpoint, backbone=args.backbone)
        model.head_precision = args.head_precision
        dataset = load_dataset(args.dataset)
        if threshold == "val":
            threshold, tried = choose_feasibility_threshold(model, dataset, batch_size=args.batch_size,
                                                            num_workers=args.num_workers)
        metrics: CZSLMetrics = evaluate_model(model, dataset, phase=args.phase, open_world=args.open_world,
                                              batch_size=args.batch_size, num_workers=args.num_workers,
                                              feasibility_threshold=threshold)
    except _user_errors() as error:
        return _print_error(str(error))
    except ValueError as error:  # the split cannot be evaluated (no images, no unseen pairs)
        return _print_error(str(error))
    world = "open world" if args.open_world else "closed world"
    if threshold is not None:
        world += f", unseen pairs with feasibility below {threshold:.4f} masked" + (" (chosen on val)" if tried else "")
    if args.json:
        document = {"model": model.name, "checkpoint": args.checkpoint, "backbone": model.backbone.name,
                    "trained": model.is_trained, "dataset": dataset.name, "phase": args.phase,
                    "open_world": args.open_world, "images": len(dataset.splits[args.phase]),
                    "head_precision": model.head_precision_in_use(), "feasibility_threshold": threshold,
                    "val_auc_by_threshold": None if tried is None else [[t, auc] for t, auc in tried.items()],
                    **metrics.to_dict()}
        print(json.dumps(document, indent=2))
        return 0
    status = "trained" if model.is_trained else "untrained: the CLIP zero-shot baseline"
    print(f"{model.display_name} ({status}), backbone {model.backbone.name}")
    print(f"{dataset.name}, {args.phase} split, {len(dataset.splits[args.phase])} images, {world}")
    print(format_metrics_table(metrics))
    return 0


# ------------------------------------------------------------------------------ CLI: push


def add_push_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `push`."""
    parser.add_argument("directory", metavar="DIR", help="a checkpoint folder (config.json, model.safetensors, ...)")
    parser.add_argument("repo_id", metavar="REPO_ID", help="the Hub model repo, owner/name (created if needed)")
    parser.add_argument("--token", default=None, help="Hugging Face token (default: HF_TOKEN or the login cache)")
    parser.add_argument("--private", action="store_true", help="create the repo as private")
    parser.add_argument("--message", default=None, help="commit message")


def run_push_command(args: argparse.Namespace) -> int:
    """Publish a checkpoint folder to the Hugging Face Hub; the local folder is never changed."""
    from ..hub.publish import PublishError, push_checkpoint
    from ..registry import CheckpointError

    try:
        url = push_checkpoint(args.directory, args.repo_id, token=args.token, private=args.private,
                              commit_message=args.message)
    except (PublishError, CheckpointError) as error:
        return _print_error(str(error))
    print(f"Published {args.directory} to {url}")
    return 0
