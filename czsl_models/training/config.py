"""What a training run is asked to do (TrainConfig) and the recipe it resolves to per model and dataset."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..backbones import DEFAULT_BACKBONE

PRESETS = ("fast", "paper")
HEADLINE_METRICS = ("best_seen", "best_unseen", "best_hm", "AUC", "attr_acc", "obj_acc")
MIXED_PRECISION_CHOICES = ("auto", "no", "fp16", "bf16")
REPORT_TO_CHOICES = ("none", "tensorboard", "wandb")  # experiment trackers, through Accelerate


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
    mixed_precision: str = "auto"  # "auto": what accelerate launch / accelerate config set, else the recipe's
    msci_variant: str = "released"  # MSCI only: "released" (the released architecture) or "gated" (the extension)
    keep_eval_mode_after_validation: bool | None = None  # None: the recipe's (the released MSCI quirk, see Recipe)
    report_to: str = "none"  # an experiment tracker (REPORT_TO_CHOICES); logs go to <out>/logs
    cpu: bool = False
    save_every_steps: int = 0  # also save the resume state every N steps (0: at epoch ends only)
    test_at_end: bool = True  # evaluate the selected checkpoint on the test split at the end


# Fields that must not change when a run is resumed (they change the result).
RESUME_FIXED = ("model", "dataset", "backbone", "preset", "lr", "batch_size", "weight_decay", "optimizer", "seed",
                 "open_world", "cache_dtype", "use_feature_cache", "lr_step", "lr_gamma", "model_options",
                 "max_grad_norm", "keep_eval_mode_after_validation")


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
    # Precision of the training computation on a GPU when nobody asks for another one: "no" (float32, as the
    # released MSCI code runs CLIP: its clip_modules build the model in float32 and never autocast) or "bf16"
    # (bfloat16 autocast, fp16 where bf16 is missing: the project's faster choice). CPUs train in float32.
    mixed_precision: str = "bf16"
    # The released MSCI train_base.py calls model.train() once, before the epoch loop, and its evaluate() calls
    # model.eval() without switching back: from the second epoch on, the published models trained with dropout
    # off and BatchNorm statistics frozen. True reproduces that quirk; False puts the model back in train mode.
    keep_eval_mode_after_validation: bool = False
    max_grad_norm: float = 0.0  # clip the gradients' global norm to this before each step (0: no clipping)
    # Inference weights (pair, state, object) for the test evaluation of `reproduce`, per world; None: the model's.
    closed_world_test_score_weights: tuple[float, float, float] | None = None
    open_world_test_score_weights: tuple[float, float, float] | None = None
    # Open-world evaluation of `reproduce` on a benchmark: the released feasibility file's fixed threshold.
    released_feasibility_threshold: float | None = None


# Troika's published recipe, which docs/models.md gives Refiner; SVIP publishes none for CZSL and gets the same.
# (epochs, lr, batch size) per recognised dataset.
_TROIKA = {"mit-states": (10, 1e-4, 64), "ut-zappos": (15, 5e-4, 128), "cgqa": (15, 3.125e-6, 16)}
_DEFAULT_RECIPE = (10, 1e-4, 64)
_TROIKA_LR_STEP = (5, 0.5)  # StepLR(step 5 epochs, gamma 0.5)
_CGQA_LOSS_WEIGHTS = [1.0, 0.1, 0.1]
SHAPES = "synthetic-shapes"
# The built-in synthetic shapes on a CPU: (epochs, lr, batch size) chosen so that each model's test AUC
# rises from the untrained ~0 to >= 0.2 within a few minutes on 2 cores with the tiny test backbone
# (benchmarks/training_learns.py, README "Training"). A constant learning rate: the runs are short.
_SHAPES_RECIPE = {"msci": (15, 5e-3, 32), "refiner": (15, 3e-3, 32), "svip": (15, 3e-3, 32)}
# The fixed open-world feasibility thresholds of the released MSCI/Troika configs (config/msci/*-ow.yml), used
# with the released feasibility files (czsl_models.data.feasibility_files).
RELEASED_THRESHOLDS = {"ut-zappos": 0.4631293780949651, "mit-states": 0.36183673469387756, "cgqa": 0.4061361697255348}
MSCI_VARIANTS = ("released", "gated")


def recognised_dataset(name: str) -> str | None:
    """'mit-states', 'ut-zappos' or 'cgqa' when a dataset name is one of the published benchmarks, and
    'synthetic-shapes' for the built-in shapes (which have a recipe of their own)."""
    key = "".join(ch for ch in name.lower() if ch.isalnum())
    if key.startswith("syntheticshapes"):
        return SHAPES
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
    benchmark = known if known in RELEASED_THRESHOLDS else None
    options: dict[str, Any] = {}
    extra: dict[str, Any] = {"released_feasibility_threshold": RELEASED_THRESHOLDS.get(benchmark)}
    if config.preset == "paper":
        extra["mixed_precision"] = "no"  # the released code trains CLIP in float32
    if config.model == "msci":
        preset_name, values = resolve_preset(benchmark or "mit-states")
        options["preset"] = preset_name
        options["variant"] = config.msci_variant
        if config.preset == "paper":
            options["use_adapters"] = True
            # The released open-world configs' inference weights (used on full open-world vocabularies only).
            options["open_world_score_weights"] = list(values.open_world_score_weights)
            extra["keep_eval_mode_after_validation"] = config.msci_variant == "released"
        if benchmark:
            extra["closed_world_test_score_weights"] = tuple(values.closed_world_test_score_weights)
            extra["open_world_test_score_weights"] = tuple(values.open_world_score_weights)
        epochs, lr, batch = values.epochs, values.learning_rate, values.batch_size
        weight_decay, optimizer, lr_step, lr_gamma = values.weight_decay, values.optimizer, values.lr_step_epochs, values.lr_gamma
    else:
        epochs, lr, batch = _TROIKA.get(known, _DEFAULT_RECIPE) if known else _DEFAULT_RECIPE
        weight_decay, optimizer = 1e-5, "adam"
        lr_step, lr_gamma = _TROIKA_LR_STEP
        if known == "cgqa":
            options["loss_weights"] = list(_CGQA_LOSS_WEIGHTS)
        if config.model == "svip":
            extra["max_grad_norm"] = 1.0  # SVIP's main.py clips the gradient norm at 1 before every step
        if config.model == "svip" and config.preset == "fast":
            # Learning SVIP's context embedding backpropagates through the whole ViT every step (~4x the
            # cost); "fast" trains everything else from cached backbone outputs, "paper" the full model.
            options["train_context"] = False
    if known == SHAPES and config.preset == "fast":
        epochs, lr, batch = _SHAPES_RECIPE.get(config.model, _SHAPES_RECIPE["msci"])
        lr_step, lr_gamma = 0, 1.0
        if config.model == "msci":
            # The released word dropout (0.3) regularises hundreds of real words; on the shapes' 13 it
            # slows learning (measured, tiny backbone: with it and lr 3e-3, test AUC 0.19 after 15 epochs;
            # without it and lr 5e-3, 0.30 at the epoch chosen on validation).
            options["word_dropout"] = 0.0
    return Recipe(
        epochs=int(config.epochs if config.epochs is not None else epochs),
        lr=float(config.lr if config.lr is not None else lr),
        batch_size=int(config.batch_size if config.batch_size is not None else batch),
        weight_decay=float(config.weight_decay if config.weight_decay is not None else weight_decay),
        optimizer=(config.optimizer or optimizer).lower(),
        lr_step=lr_step, lr_gamma=lr_gamma, model_options=options,
        **{**extra, **({} if config.keep_eval_mode_after_validation is None
                       else {"keep_eval_mode_after_validation": bool(config.keep_eval_mode_after_validation)})},
    )


def check_config(config: TrainConfig) -> None:
    """Raise TrainError for options that cannot work."""
    from ..models.checkpoints import CheckpointError
    from ..models.registry import model_class

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
    if config.msci_variant not in MSCI_VARIANTS:
        raise TrainError(f"unknown MSCI variant {config.msci_variant!r}; choose {' or '.join(MSCI_VARIANTS)}")
    if config.mixed_precision not in MIXED_PRECISION_CHOICES:
        raise TrainError(f"mixed precision must be one of {', '.join(MIXED_PRECISION_CHOICES)}")
    check_tracker(config.report_to)
    if config.cache_dtype not in ("float16", "float32"):
        raise TrainError("cache dtype must be float16 or float32")
    if config.save_every_steps < 0:
        raise TrainError("save_every_steps must be >= 0")


def check_tracker(report_to: str) -> None:
    """Raise TrainError when an experiment tracker is unknown or its package is missing."""
    if report_to not in REPORT_TO_CHOICES:
        raise TrainError(f"--report-to must be one of {', '.join(REPORT_TO_CHOICES)}, not {report_to!r}")
    if report_to == "none":
        return
    from accelerate.utils import is_tensorboard_available, is_wandb_available

    available = is_tensorboard_available() if report_to == "tensorboard" else is_wandb_available()
    if not available:
        raise TrainError(f"--report-to {report_to} needs the {report_to} package: pip install {report_to}")
