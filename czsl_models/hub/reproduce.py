"""`reproduce MODEL DATASET`: from the benchmark data to a published checkpoint in one resumable command.

download (if missing, with the released feasibility file) → train with the model's published recipe
("paper" preset) → evaluate the test split closed world and open world (the released feasibility
scores and fixed threshold; each world with the released inference weights) → metrics.json with
`closed_world` and `open_world` → the model card → push, when asked, with an explicit token.
`--dry-run` prints the whole resolved recipe (every value training and evaluation will use) and stops.
Every step can be re-run: training resumes from its saved state, a finished training is not
repeated, and the evaluation is repeated only when the checkpoint changed.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

RUN_FILE = "reproduce.json"  # time spent and hardware, accumulated over resumed runs (not published)
HEADLINE_KEYS = ("best_seen", "best_unseen", "best_hm", "AUC", "attr_acc", "obj_acc")


class ReproduceError(RuntimeError):
    """A step of `reproduce` failed; the message says which and what to do."""


@dataclass
class ReproduceOptions:
    """What to reproduce and where."""

    model: str
    dataset: str
    root: str | None = None
    mirror: str | None = None
    from_files: str | None = None
    backbone: str | None = None
    epochs: int | None = None
    out: str | None = None
    push: str | None = None
    token: str | None = None
    private: bool = False
    eval_batch_size: int = 64
    num_workers: int | None = None
    mixed_precision: str = "auto"  # "auto": the recipe's (float32 as released); "bf16": the faster switch
    msci_variant: str = "released"
    dry_run: bool = False


def hardware_description() -> str:
    """The accelerator (or CPU) this process trains on, in words."""
    import torch

    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        return f"{count} × {torch.cuda.get_device_name(0)}" if count > 1 else torch.cuda.get_device_name(0)
    return f"CPU ({os.cpu_count()} cores, {platform.machine()})"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def _write_json(path: Path, document: dict[str, Any]) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(document, indent=2) + "\n")
    os.replace(temporary, path)


def _ensure_dataset(options: ReproduceOptions, log: Callable[[str], None]) -> tuple[Path, dict[str, Any]]:
    """The installed benchmark folder (downloaded when missing, with its released feasibility file) and its
    DOWNLOAD.json."""
    from ..data.benchmarks import benchmark
    from ..data.download import MIRROR_ENV, RECORD_NAME, default_root, install_benchmark
    from ..data.feasibility_files import install_feasibility
    from ..data.fetch import FetchPolicy

    bench = benchmark(options.dataset)
    root = Path(options.root).expanduser() if options.root else default_root()
    target = root / bench.folder
    policy = FetchPolicy(progress=sys.stderr.isatty())
    mirror = options.mirror if options.mirror is not None else (os.environ.get(MIRROR_ENV) or None)
    if target.is_dir() and not (target / RECORD_NAME).is_file():
        log(f"Using {target} as it is (it was not installed by `download`).")
        record: dict[str, Any] = {}
    else:
        report = install_benchmark(bench.name, root=root, mirror=mirror, from_files=options.from_files,
                                   policy=policy, log=log)
        log(report.describe(bench.title))
        record = _read_json(target / RECORD_NAME)
    install_feasibility(bench.name, target, mirror=mirror, from_files=options.from_files, policy=policy, log=log)
    return target, record


def train_config(options: ReproduceOptions, dataset_dir: Path, out: Path):
    """The TrainConfig `reproduce` trains with: the "paper" preset, resumable."""
    from ..backbones import DEFAULT_BACKBONE
    from ..training.config import TrainConfig

    return TrainConfig(model=options.model, dataset=str(dataset_dir), out=str(out),
                       backbone=options.backbone or DEFAULT_BACKBONE, preset="paper", epochs=options.epochs,
                       resume=True, eval_batch_size=options.eval_batch_size, num_workers=options.num_workers,
                       mixed_precision=options.mixed_precision, msci_variant=options.msci_variant)


def resolved_plan(options: ReproduceOptions, dataset_dir: str | Path, out: str | Path) -> dict[str, Any]:
    """Every value training and evaluation will use (what --dry-run prints), without loading anything big."""
    import inspect
    from dataclasses import asdict

    from ..data.benchmarks import benchmark
    from ..data.feasibility_files import RELEASED_FEASIBILITY, feasibility_path
    from ..models.registry import model_class
    from ..training.config import resolve_recipe

    bench = benchmark(options.dataset)
    config = train_config(options, Path(dataset_dir), Path(out))
    recipe = resolve_recipe(config, bench.name)
    signature = inspect.signature(model_class(options.model).__init__).parameters.values()
    defaults = {p.name: p.default for p in signature if p.default is not inspect.Parameter.empty}
    release = RELEASED_FEASIBILITY[bench.name]
    model_options = {**{k: v for k, v in defaults.items() if k not in ("train_states", "train_objects", "train_pairs")},
                     **recipe.model_options}
    return {
        "model": options.model, "dataset": bench.name, "dataset_dir": str(dataset_dir), "out": str(out),
        "train_config": asdict(config),
        "recipe": {**asdict(recipe), "mixed_precision_in_use": _precision_in_use(config, recipe)},
        "model_options": _resolved_model_options(options.model, model_options),
        "evaluation": {
            "phase": "test", "head_precision": "float32", "batch_size": options.eval_batch_size,
            "closed_world": {"score_weights": _weights(recipe.closed_world_test_score_weights)},
            "open_world": {"score_weights": _weights(recipe.open_world_test_score_weights),
                           "feasibility_source": f"released file {release.file_name} (sha256 {release.sha256})",
                           "feasibility_file": str(feasibility_path(dataset_dir, bench.name)),
                           "feasibility_threshold": recipe.released_feasibility_threshold,
                           "infeasible_scores": "-inf (the released test_base.py multiplies them by 0)"},
            "model_selection": "validation AUC (closed world) after every epoch",
        },
    }


def _weights(weights) -> list[float] | str:
    return list(weights) if weights is not None else "the model's (1/1/1)"


def _precision_in_use(config, recipe) -> str:
    if config.mixed_precision != "auto":
        return config.mixed_precision
    if "ACCELERATE_MIXED_PRECISION" in os.environ:
        return os.environ["ACCELERATE_MIXED_PRECISION"] + " (from accelerate)"
    return "no (float32)" if recipe.mixed_precision == "no" else "bf16 on CUDA (fp16 without bf16), float32 on CPUs"


def _train(options: ReproduceOptions, dataset_dir: Path, out: Path, stop: threading.Event | None):
    from ..training.progress import TqdmCallback
    from ..training.trainer import train

    config = train_config(options, dataset_dir, out)
    run = _read_json(out / RUN_FILE)
    started = time.monotonic()
    result = train(config, callback=TqdmCallback(), stop=stop)
    run["train_seconds"] = float(run.get("train_seconds", 0.0)) + (time.monotonic() - started)
    run["hardware"] = hardware_description()
    _write_json(out / RUN_FILE, run)
    if result.stopped or not result.finished:
        raise ReproduceError(f"training stopped before the end; run the same command again to resume {out}")
    if result.checkpoint_dir is None:
        raise ReproduceError(f"training wrote no checkpoint to {out} (no validation metrics?)")
    return config, run


def _evaluate(out: Path, dataset_dir: Path, options: ReproduceOptions, plan: dict[str, Any],
              log: Callable[[str], None]) -> dict[str, Any]:
    """Closed- and open-world test metrics of the checkpoint in out, each world with the released inference
    weights, the open world masked with the released feasibility scores at the released fixed threshold."""
    from ..data.feasibility_files import load_released_feasibility
    from ..data.sources import load_dataset
    from ..evaluation.evaluate import evaluate_model
    from ..models.checkpoints import load_model

    # as released: the whole evaluation in float32 (the trainer's float32 backbone is reused)
    model = load_model(None, checkpoint=out, backbone_precision="float32")
    model.head_precision = "float32"
    dataset = load_dataset(dataset_dir)
    kwargs = {"batch_size": options.eval_batch_size, "num_workers": options.num_workers}
    evaluation = plan["evaluation"]
    closed_weights = evaluation["closed_world"]["score_weights"]
    open_weights = evaluation["open_world"]["score_weights"]
    if isinstance(closed_weights, list):
        model.score_weights = tuple(closed_weights)
    log(f"Evaluating the test split, closed world (inference weights {list(model.score_weights)})")
    closed = evaluate_model(model, dataset, phase="test", open_world=False, **kwargs).to_dict()
    if isinstance(open_weights, list):
        model.open_world_score_weights = tuple(open_weights)
    threshold = float(evaluation["open_world"]["feasibility_threshold"])
    table = load_released_feasibility(evaluation["open_world"]["feasibility_file"], len(dataset.states),
                                      len(dataset.objects))
    log(f"Evaluating the test split, open world (released feasibility, threshold {threshold})")
    open_world = evaluate_model(model, dataset, phase="test", open_world=True, feasibility_threshold=threshold,
                                feasibility_table=table, **kwargs).to_dict()
    closed = {**{key: closed[key] for key in HEADLINE_KEYS}, "score_weights": list(model.score_weights)}
    open_world = {**{key: open_world[key] for key in HEADLINE_KEYS}, "feasibility_threshold": threshold,
                  "feasibility_source": evaluation["open_world"]["feasibility_source"],
                  "score_weights": list(model.open_world_score_weights or model.score_weights)}
    return {"closed_world": closed, "open_world": open_world, "evaluated_steps": int(model.training_steps.item())}


def reproduce(options: ReproduceOptions, log: Callable[[str], None] = lambda text: print(text, file=sys.stderr),
              stop: threading.Event | None = None) -> Path:
    """Run every step that is not done yet; returns the checkpoint folder. A set `stop` ends training after
    the current step with its state saved (the next run resumes there)."""
    from ..data.benchmarks import benchmark, hub_dataset_id
    from ..models.checkpoints import read_checkpoint_config, weights_dir
    from ..training.config import resolve_recipe
    from .reproduction_card import render_reproduction_card

    bench = benchmark(options.dataset)
    out = Path(options.out).expanduser() if options.out else weights_dir() / f"{options.model}-{bench.name}"
    dataset_dir, download_record = _ensure_dataset(options, log)
    plan = resolved_plan(options, dataset_dir, out)
    config, run = _train(options, dataset_dir, out, stop)
    metrics_path = out / "metrics.json"
    document = _read_json(metrics_path)
    steps = int(document.get("training_steps", -1))
    evaluated_with = document.get("reproduction", {}).get("evaluation")
    if (document.get("reproduction", {}).get("evaluated_steps") != steps or "open_world" not in document
            or evaluated_with != plan["evaluation"]):
        evaluation = _evaluate(out, dataset_dir, options, plan, log)
        document.update(closed_world=evaluation["closed_world"], open_world=evaluation["open_world"])
        evaluated_steps = evaluation["evaluated_steps"]
    else:
        log("The checkpoint was already evaluated; keeping its metrics.")
        evaluated_steps = document["reproduction"]["evaluated_steps"]
    checkpoint = read_checkpoint_config(out)
    recipe = resolve_recipe(config, bench.name)
    default_recipe = resolve_recipe(type(config)(model=config.model, dataset=config.dataset, out=config.out,
                                                 preset="paper"), bench.name)
    from ..models.registry import model_class

    document["reproduction"] = {
        "model": options.model, "display_name": model_class(options.model).display_name or options.model,
        "dataset": bench.name, "backbone": checkpoint.get("backbone", config.backbone), "preset": "paper",
        "recipe": {"epochs": recipe.epochs, "batch_size": recipe.batch_size, "lr": recipe.lr,
                   "weight_decay": recipe.weight_decay, "optimizer": recipe.optimizer, "lr_step": recipe.lr_step,
                   "lr_gamma": recipe.lr_gamma, "model_options": recipe.model_options,
                   "mixed_precision": plan["recipe"]["mixed_precision_in_use"],
                   "keep_eval_mode_after_validation": recipe.keep_eval_mode_after_validation,
                   "max_grad_norm": recipe.max_grad_norm},
        "evaluation": plan["evaluation"],
        "recipe_epochs": default_recipe.epochs, "epochs_overridden": recipe.epochs != default_recipe.epochs,
        "train_seconds": run.get("train_seconds", 0.0), "hardware": run.get("hardware"),
        "archives": download_record.get("archives", []), "evaluated_steps": evaluated_steps,
        "dataset_hub_id": hub_dataset_id(bench.name), "repo_id": options.push,
    }
    _write_json(metrics_path, document)
    readme = out / "README.md"
    temporary = readme.with_name(".README.md.tmp")
    temporary.write_text(render_reproduction_card(document))
    os.replace(temporary, readme)
    log(f"Checkpoint, metrics.json and model card in {out}")
    if options.push:
        from .publish import PublishError, push_checkpoint

        try:
            url = push_checkpoint(out, options.push, token=options.token, private=options.private,
                                  commit_message=f"Reproduce {options.model} on {bench.title}")
        except PublishError as error:
            raise ReproduceError(str(error)) from None
        log(f"Published to {url}")
    return out


def add_reproduce_arguments(parser) -> None:
    """Options of `reproduce`."""
    from ..data.benchmarks import BENCHMARKS

    parser.add_argument("model", choices=("msci", "refiner", "svip"), help="the model to train")
    parser.add_argument("dataset", choices=sorted(BENCHMARKS), help="the benchmark (downloaded when missing)")
    parser.add_argument("--root", default=None, help="data folder (default $CZSL_DATA_DIR, else ./data)")
    parser.add_argument("--mirror", default=None, help="fetch archives as URL/<file name> (default $CZSL_DATA_MIRROR)")
    parser.add_argument("--from-files", default=None, metavar="DIR", help="archives downloaded by hand into DIR")
    parser.add_argument("--backbone", default=None, help="OpenCLIP backbone (default: the papers' ViT-L-14-quickgelu:openai)")
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's number of epochs")
    parser.add_argument("--out", default=None, help="checkpoint folder (default weights/<model>-<dataset>)")
    parser.add_argument("--push", default=None, metavar="OWNER/NAME", help="publish the checkpoint to this Hub model repo")
    parser.add_argument("--token", default=None, help="Hugging Face token for --push (default: HF_TOKEN or the login cache)")
    parser.add_argument("--private", action="store_true", help="create the Hub repo as private")
    parser.add_argument("--eval-batch-size", type=int, default=64, help="images per evaluation batch (default 64)")
    parser.add_argument("--num-workers", type=int, default=None, help="image decoding processes (default: automatic)")
    parser.add_argument("--mixed-precision", choices=("auto", "no", "fp16", "bf16"), default="auto",
                        help="training precision (default: the recipe's, float32 as the released code; bf16 is "
                             "the faster switch, docs/parity.md)")
    parser.add_argument("--msci-variant", choices=("released", "gated"), default="released",
                        help="MSCI only: the released architecture (default) or the project's gated extension")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the whole resolved recipe (training and evaluation) as JSON and stop")


def _resolved_model_options(model: str, model_options: dict[str, Any]) -> dict[str, Any]:
    """The model's constructor values with the ones left to its defaults (None) filled in as the model fills them."""
    resolved = dict(model_options)
    for key in ("score_weights", "loss_weights"):
        if resolved.get(key) is None and key in resolved:
            resolved[key] = [1.0, 1.0, 1.0]
    if model == "msci":
        from ..models.msci import resolve_preset

        _, preset = resolve_preset(resolved.get("preset", "mit-states"))
        for key, value in (("aggregated_layers", preset.aggregated_layers), ("word_dropout", preset.word_dropout),
                           ("loss_weights", list(preset.loss_weights))):
            if model_options.get(key) is None:
                resolved[key] = value
    return resolved


def print_dry_run(options: ReproduceOptions) -> None:
    """Print every value `reproduce` would use, downloading and training nothing."""
    from ..data.benchmarks import benchmark
    from ..data.download import default_root
    from ..models.checkpoints import weights_dir

    bench = benchmark(options.dataset)
    root = Path(options.root).expanduser() if options.root else default_root()
    out = Path(options.out).expanduser() if options.out else weights_dir() / f"{options.model}-{bench.name}"
    print(json.dumps(resolved_plan(options, root / bench.folder, out), indent=2, default=str))


def run_reproduce_command(args) -> int:
    """Run `reproduce`; errors print one line."""
    from ..data.dataset import DatasetError
    from ..models.checkpoints import CheckpointError
    from ..training.config import TrainError

    import accelerate  # noqa: F401  (the [train] extra: missing, the command stops here, before any download)

    options = ReproduceOptions(**{key: getattr(args, key) for key in ReproduceOptions.__dataclass_fields__})
    if options.dry_run:
        print_dry_run(options)
        return 0
    stop, previous = threading.Event(), None
    if threading.current_thread() is threading.main_thread():
        def request_stop(signum, frame):
            if stop.is_set():  # a second Ctrl-C aborts at once
                raise KeyboardInterrupt
            stop.set()
            print("\nStopping after this step (Ctrl-C again to abort); run the same command to resume...",
                  file=sys.stderr)

        previous = signal.signal(signal.SIGINT, request_stop)
    try:
        out = reproduce(options, stop=stop)
    except (ReproduceError, DatasetError, TrainError, CheckpointError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 130 if stop.is_set() else 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    document = _read_json(out / "metrics.json")
    for world in ("closed_world", "open_world"):
        metrics = document.get(world, {})
        print(f"{world.replace('_', ' ')}: " + ", ".join(f"{key} {100 * metrics[key]:.1f}" for key in HEADLINE_KEYS[:4]))
    print(f"checkpoint: {out}")
    return 0
