"""`reproduce MODEL DATASET`: from the benchmark data to a published checkpoint in one resumable command.

download (if missing) → train with the model's published recipe ("paper" preset) → evaluate the
test split closed world and open world (feasibility threshold chosen on validation) → metrics.json
with `closed_world` and `open_world` → the model card → push, when asked, with an explicit token.
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
    """The installed benchmark folder (downloaded when missing) and its DOWNLOAD.json."""
    from ..data.benchmarks import benchmark
    from ..data.download import RECORD_NAME, default_root, install_benchmark
    from ..data.fetch import FetchPolicy

    bench = benchmark(options.dataset)
    root = Path(options.root).expanduser() if options.root else default_root()
    target = root / bench.folder
    if target.is_dir() and not (target / RECORD_NAME).is_file():
        log(f"Using {target} as it is (it was not installed by `download`).")
        return target, {}
    report = install_benchmark(bench.name, root=root, mirror=options.mirror, from_files=options.from_files,
                               policy=FetchPolicy(progress=sys.stderr.isatty()), log=log)
    log(report.describe(bench.title))
    return target, _read_json(target / RECORD_NAME)


def _train(options: ReproduceOptions, dataset_dir: Path, out: Path, stop: threading.Event | None):
    from ..backbones import DEFAULT_BACKBONE
    from ..training.config import TrainConfig
    from ..training.progress import TqdmCallback
    from ..training.trainer import train

    config = TrainConfig(model=options.model, dataset=str(dataset_dir), out=str(out),
                         backbone=options.backbone or DEFAULT_BACKBONE, preset="paper", epochs=options.epochs,
                         resume=True, eval_batch_size=options.eval_batch_size, num_workers=options.num_workers)
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


def _evaluate(out: Path, dataset_dir: Path, options: ReproduceOptions, log: Callable[[str], None]) -> dict[str, Any]:
    """Closed- and open-world test metrics of the checkpoint in out, the threshold chosen on validation."""
    from ..data.sources import load_dataset
    from ..evaluation.evaluate import choose_feasibility_threshold, evaluate_model
    from ..models.checkpoints import load_model

    model = load_model(None, checkpoint=out)
    dataset = load_dataset(dataset_dir)
    kwargs = {"batch_size": options.eval_batch_size, "num_workers": options.num_workers}
    log("Evaluating the test split, closed world")
    closed = evaluate_model(model, dataset, phase="test", open_world=False, **kwargs).to_dict()
    log("Choosing the open-world feasibility threshold on the validation split")
    threshold, tried = choose_feasibility_threshold(model, dataset, **kwargs)
    log("Evaluating the test split, open world")
    open_world = evaluate_model(model, dataset, phase="test", open_world=True, feasibility_threshold=threshold,
                                **kwargs).to_dict()
    closed = {key: closed[key] for key in HEADLINE_KEYS}
    open_world = {**{key: open_world[key] for key in HEADLINE_KEYS}, "feasibility_threshold": float(threshold),
                  "val_auc_by_threshold": [[float(t), float(a)] for t, a in tried.items()]}
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
    config, run = _train(options, dataset_dir, out, stop)
    metrics_path = out / "metrics.json"
    document = _read_json(metrics_path)
    steps = int(document.get("training_steps", -1))
    if document.get("reproduction", {}).get("evaluated_steps") != steps or "open_world" not in document:
        evaluation = _evaluate(out, dataset_dir, options, log)
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
                   "lr_gamma": recipe.lr_gamma, "model_options": recipe.model_options},
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


def run_reproduce_command(args) -> int:
    """Run `reproduce`; errors print one line."""
    from ..data.dataset import DatasetError
    from ..models.checkpoints import CheckpointError
    from ..training.config import TrainError

    import accelerate  # noqa: F401  (the [train] extra: missing, the command stops here, before any download)

    options = ReproduceOptions(**{key: getattr(args, key) for key in ReproduceOptions.__dataclass_fields__})
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
