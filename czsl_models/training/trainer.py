"""The trainer behind `python -m czsl_models train` and the app's Train tab.

Presets: "fast" trains the heads on backbone outputs cached once per dataset and backbone
(feature_cache.py); "paper" trains on pixels with the published augmentation and, for MSCI,
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

import json
import os
import threading
import time
import warnings
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..data.benchmarks import hub_dataset_id
from .batching import check_batch_split, epoch_batches, mix_seed, shard_batch
from .config import (
    HEADLINE_METRICS,
    RESUME_FIXED,
    TrainConfig,
    TrainError,
    check_config,
    resolve_recipe,
)
from .objective import build_optimizer, make_loss_module
from .progress import TrainCallback, TrainResult, notify
from .run_state import (
    TrainingState,
    commit_checkpoint,
    has_checkpoint,
    load_training_state,
    recover_checkpoint,
    save_training_state,
    training_state_path,
)
from .transforms import training_transform

# ------------------------------------------------------------------------------ the run


def _headline(metrics: dict[str, Any] | None) -> dict[str, float] | None:
    return None if metrics is None else {key: float(metrics[key]) for key in HEADLINE_METRICS}


class _Run:
    """One training run: set-up, the epoch loop, checkpoints and the resume state."""

    def __init__(self, config: TrainConfig, callback, stop: threading.Event | None) -> None:
        self.config = config
        self.callback = callback
        self.stop = stop
        self.out = Path(config.out).expanduser()
        self._optimizer_stepped = False  # in this process (a resumed run may end an epoch before its first step)

    # ---------------------------------------------------------------- set-up
    def _accelerator(self):
        import torch
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs

        from ..backbones import default_device

        # CZSL_DEVICE=cpu (which places the shared backbone) also keeps the heads on the CPU.
        cpu = self.config.cpu or default_device().type == "cpu"
        if cpu and torch.cuda.is_available():
            # The shared backbone follows CZSL_DEVICE; keep it with the heads on the CPU.
            os.environ["CZSL_DEVICE"] = "cpu"
        options: dict[str, Any] = {}
        precision = self.config.mixed_precision
        if precision != "auto":
            options["mixed_precision"] = precision  # asked for on this run's command line
        elif "ACCELERATE_MIXED_PRECISION" not in os.environ:
            # Nobody asked (not this run, not accelerate launch, not accelerate config): the recipe's precision
            # ("paper": float32 as released; else bf16, or fp16 where bf16 is missing) on CUDA, float32 on CPUs.
            wanted = self.recipe.mixed_precision
            options["mixed_precision"] = ("no" if cpu or wanted == "no"
                                          else "bf16" if torch.cuda.is_bf16_supported() else "fp16")
        if self.config.report_to != "none":
            options.update(log_with=self.config.report_to, project_dir=str(self.out / "logs"))
        # Some models leave parameters out of a forward (e.g. a branch unused by a batch): let DDP cope.
        handlers = [DistributedDataParallelKwargs(find_unused_parameters=True)]
        return Accelerator(cpu=cpu, kwargs_handlers=handlers, **options)

    def _start_tracking(self) -> None:
        """Open the experiment tracker (main process) with the run's settings as hyperparameters."""
        if self.config.report_to == "none":
            return
        settings = {key: value if isinstance(value, (int, float, str, bool)) else str(value)
                    for key, value in self._resolved_config().items()}
        settings["processes"] = self.accelerator.num_processes
        self.accelerator.init_trackers("czsl-models", config=settings)

    def _track(self, values: dict[str, Any], step: int) -> None:
        """Log numbers to the experiment tracker, if any (Accelerate logs on the main process only)."""
        if self.config.report_to != "none":
            self.accelerator.log({key: float(value) for key, value in values.items() if value is not None}, step=step)

    def _message(self, text: str) -> None:
        if self.accelerator.is_main_process:
            notify(self.callback, "on_message", text)

    def _resolved_config(self) -> dict[str, Any]:
        data = {f.name: getattr(self.config, f.name) for f in fields(self.config)}
        data.update({"lr": self.recipe.lr, "batch_size": self.recipe.batch_size, "epochs": self.recipe.epochs,
                     "weight_decay": self.recipe.weight_decay, "optimizer": self.recipe.optimizer,
                     "lr_step": self.recipe.lr_step, "lr_gamma": self.recipe.lr_gamma,
                     "model_options": self.recipe.model_options, "model": self.config.model.lower(),
                     "max_grad_norm": self.recipe.max_grad_norm,
                     "keep_eval_mode_after_validation": self.recipe.keep_eval_mode_after_validation})
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
        changed = [key for key in RESUME_FIXED if state.config.get(key) != current.get(key)]
        if changed:
            details = ", ".join(f"{key} {state.config.get(key)!r} -> {current.get(key)!r}" for key in changed)
            raise TrainError(f"cannot resume {self.out}: options differ from the saved run ({details})")

    # ---------------------------------------------------------------- main
    def run(self) -> "TrainResult":
        import torch

        from ..data import DatasetError, load_dataset
        from ..models.checkpoints import load_model
        from .feature_cache import CacheBuildStopped, model_trains_from_cache
        from .targets import training_targets, training_vocabulary

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

        torch.manual_seed(mix_seed("init", config.seed))
        # The backbone precision is an inference setting: training always runs the frozen backbone in float32.
        model = load_model(config.model, backbone=config.backbone, train_states=list(dataset.states),
                           train_objects=list(dataset.objects), train_pairs=[list(p) for p in dataset.train_pairs],
                           backbone_precision="float32", **self.recipe.model_options)
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
                    notify(self.callback, "on_end", result)
                return result

        optimizer, scheduler = build_optimizer(model, self.recipe)
        self.raw_optimizer, self.scheduler = optimizer, scheduler
        self.step_module, self.optimizer = accelerator.prepare(make_loss_module(model, self.vocab), optimizer)
        if loaded is not None:
            optimizer.load_state_dict(optimizer_state)
            if scheduler is not None and state.scheduler:
                scheduler.load_state_dict(state.scheduler)
            if state.scaler and accelerator.scaler is not None:
                accelerator.scaler.load_state_dict(state.scaler)
            self._message(f"Resuming {self.out} at epoch {state.epoch + 1}, step {state.global_step}.")
        elif config.resume:
            self._message(f"Nothing to resume in {self.out}; starting a new run.")

        check_batch_split(self.recipe.batch_size, len(self.train_samples), accelerator.num_processes)
        self.steps_per_epoch = len(epoch_batches(len(self.train_samples), self.recipe.batch_size, config.seed, 0,
                                                 accelerator.num_processes))
        self._start_tracking()
        if accelerator.num_processes > 1:
            self._message(f"Training on {accelerator.num_processes} processes ({accelerator.device.type}); each "
                          f"step's {self.recipe.batch_size} images are split between them.")
        stopped = False
        if accelerator.is_main_process:
            notify(self.callback, "on_start", self.steps_per_epoch * self.recipe.epochs)
        if not state.finished:
            stopped = self._epochs()
            if not stopped:
                self._finish()
        if config.report_to != "none":
            accelerator.end_training()
        result = self._result(stopped)
        if accelerator.is_main_process:
            notify(self.callback, "on_end", result)
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
        from ..data.pixels import PixelSamples, default_num_workers, pixel_batches

        backbone = self.model.backbone
        augment = self.config.preset == "paper"
        transform = training_transform(self.config.preset, backbone)
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
        self.model.train(not self._stays_in_eval_mode())
        while state.epoch < recipe.epochs:
            epoch = state.epoch
            started = time.perf_counter()
            batches = epoch_batches(len(self.train_samples), recipe.batch_size, self.config.seed, epoch, world)
            local = [shard_batch(batch, rank, world) for batch in batches[state.batch:]]
            source = (((None, batch) for batch in local) if self.from_cache else self._pixel_source(local, epoch))
            for pixels, indices in source:
                # Every step's randomness (dropout) comes from (seed, step, process): resumes are exact.
                torch.manual_seed(mix_seed("step", self.config.seed, state.global_step, rank))
                index = torch.as_tensor(indices, device=accelerator.device)
                visual = self.train_features.batch(indices, accelerator.device) if self.from_cache else None
                if pixels is not None:
                    pixels = pixels.to(accelerator.device)
                loss = self.step_module(pixels, visual, *(t[index] for t in self.targets))
                accelerator.backward(loss)
                if recipe.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(self.model.trainable_parameters(), recipe.max_grad_norm)
                self.optimizer.step()
                self._optimizer_stepped = True
                self.optimizer.zero_grad(set_to_none=True)
                self.model.training_steps += 1
                state.global_step += 1
                state.batch += 1
                loss_value = float(loss.detach())
                state.epoch_loss_sum += loss_value
                state.epoch_loss_count += 1
                if accelerator.is_main_process:
                    notify(self.callback, "on_step", state.global_step, loss_value)
                self._track({"train/loss": loss_value}, state.global_step)
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
            with warnings.catch_warnings():
                if not self._optimizer_stepped:
                    # Resumed exactly at an epoch's end: this process has not stepped the optimizer, but the
                    # schedule's position came from the saved state, so stepping it now is the right order.
                    warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
                self.scheduler.step()
        entry: dict[str, Any] = {"epoch": epoch + 1, "train_loss": state.epoch_loss_sum / max(1, state.epoch_loss_count),
                                 "lr": float(self.raw_optimizer.param_groups[0]["lr"]), "seconds": round(seconds, 3),
                                 "training_steps": state.global_step}
        best = False
        if self.accelerator.is_main_process:
            checks = self._model_checks()  # first: SVIP's checks decide how it selects patches when validated
            if checks:
                entry["checks"] = checks
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
        self._track({"train/epoch_loss": entry["train_loss"], "train/lr": entry["lr"],
                     **{f"val/{key}": value for key, value in (entry.get("validation") or {}).items()}},
                    state.global_step)
        state.epoch, state.batch = epoch + 1, 0
        state.epoch_loss_sum, state.epoch_loss_count = 0.0, 0
        self._save_state()
        if self.accelerator.is_main_process:
            notify(self.callback, "on_epoch", epoch + 1, entry)
        self.model.train(not self._stays_in_eval_mode())

    def _stays_in_eval_mode(self) -> bool:
        """Under the released MSCI quirk (Recipe.keep_eval_mode_after_validation), every epoch after the first
        validation trains in eval mode: dropout off and BatchNorm statistics frozen."""
        return self.recipe.keep_eval_mode_after_validation and self.state.epoch > 0
    def _validate(self) -> dict[str, Any] | None:
        return self._evaluate("val")

    def _model_checks(self) -> dict[str, Any]:
        """The model's own checks on the validation images (SVIP: PatchCls's agreement with its teacher,
        which decides whether PatchCls may select at inference); {} for models without any."""
        from ..data.pixels import PixelSamples, pixel_batches
        from ..models.base import CompositionModel

        model = self.model
        samples = list(self.dataset.splits["val"])
        if type(model).validation_checks is CompositionModel.validation_checks or not samples:
            return {}
        size = self.config.eval_batch_size
        batches = [list(range(start, min(start + size, len(samples)))) for start in range(0, len(samples), size)]
        source = pixel_batches(PixelSamples(self.dataset, samples, model.backbone.preprocess), batches, 0)
        return model.validation_checks(pixels for pixels, _ in source)

    def _phase_evaluable(self, phase: str) -> bool:
        """True when a split has images of seen and unseen pairs (else a message says why not)."""
        from ..evaluation import evaluation_setup

        try:
            evaluation_setup(self.dataset, phase, self.config.open_world)
        except ValueError as error:
            self._message(f"No {phase} metrics: {error}.")
            return False
        return True

    def _evaluate(self, phase: str) -> dict[str, Any] | None:
        """Metrics of the current weights on a phase, or None when the phase cannot be evaluated."""
        from ..evaluation import evaluate_model

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
                                    "dataset_hub_id": hub_dataset_id(self.dataset.name),
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
                    self._track({f"test/{key}": test[key] for key in HEADLINE_METRICS if key in test},
                                state.global_step)
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


