"""Command line: python -m czsl_models predict | models | app | metrics | train | evaluate | push."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Callable, Sequence

from .backbones.precision import add_backbone_precision_argument, add_head_precision_argument
from .inputs.arguments import finite_float, positive_int
from .inputs.presets import DEFAULT_OBJECTS, DEFAULT_STATES

# Subcommands that live next to the code they drive: (module, add_arguments, run, help).
_DELEGATED = {
    "metrics": ("evaluation.cli", "add_metrics_arguments", "run_metrics_command",
                "CZSL metrics (seen, unseen, HM, AUC) of a saved score matrix"),
    "train": ("training.cli", "add_train_arguments", "run_train_command", "train a model on a dataset"),
    "evaluate": ("evaluation.cli", "add_evaluate_arguments", "run_evaluate_command", "evaluate a model on a dataset"),
    "download": ("data.download", "add_download_arguments", "run_download_command",
                 "download a benchmark (mit-states, ut-zappos, cgqa), check it and install it under the data folder"),
    "reproduce": ("hub.reproduce", "add_reproduce_arguments", "run_reproduce_command",
                  "download, train with the paper's recipe, evaluate, write the model card and optionally publish"),
    "push": ("hub.cli", "add_push_arguments", "run_push_command", "publish a checkpoint folder to the Hugging Face Hub"),
}


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean the user asked for something impossible: printed as one line, no traceback."""
    from .backbones import BackboneError
    from .data import DatasetError
    from .inputs.images import ImageError
    from .models.checkpoints import CheckpointError
    from .training import TrainError
    from .inputs.vocab import VocabularyError

    return (BackboneError, ImageError, CheckpointError, VocabularyError, DatasetError, TrainError)


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `predict`."""
    parser.add_argument("image", nargs="+",
                        help="photo(s) to recognise; with --output also folders (searched recursively) and zip files")
    parser.add_argument("--model", default=None,
                        help="clip, msci, refiner or svip (default: the checkpoint's model, else clip)")
    parser.add_argument("--states", default=DEFAULT_STATES, help="states, comma separated")
    parser.add_argument("--objects", default=DEFAULT_OBJECTS, help="objects, comma separated")
    parser.add_argument("--pairs", default=None,
                        help="closed world: a file with one 'state object' pair a line (default: all states x objects)")
    parser.add_argument("--backbone", default=None,
                        help="OpenCLIP backbone: ARCH:TAG, hf-hub:org/repo, a local folder, or tiny "
                             "(default: ViT-L-14-quickgelu:openai, or the checkpoint's own)")
    parser.add_argument("--checkpoint", default=None, help="a checkpoint folder, a folder name in weights/, or a Hub repo id")
    parser.add_argument("--revision", default=None, help="with a Hub repo id: the branch, tag or commit (default main)")
    parser.add_argument("--top-k", type=positive_int, default=5, help="how many compositions to show (default 5)")
    parser.add_argument("--bias", type=finite_float, default=0.0,
                        help="calibration bias added to unseen pairs (needs seen pairs)")
    add_head_precision_argument(parser)
    add_backbone_precision_argument(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--output", default=None,
                        help="write one row per photo and rank to this .csv or .jsonl file instead of printing; photos "
                             "that cannot be read become rows with an error and never stop the run")
    parser.add_argument("--batch-size", type=int, default=16,
                        help="photos per backbone pass (default 16); memory grows with it, not with the photo count")


def run_predict_command(args: argparse.Namespace) -> int:
    """Rank compositions for each image and print them."""
    from pathlib import Path

    from .inputs.images import load_image
    from .models.checkpoints import load_model
    from .inputs.vocab import Vocabulary

    pairs = None
    if args.pairs:
        pairs_path = Path(args.pairs)
        if not pairs_path.is_file():
            raise_user_error(f"pair file {args.pairs} does not exist")
        pairs = pairs_path.read_text()
    if args.revision and not args.checkpoint:
        raise_user_error("--revision needs --checkpoint (a Hub repo id)")
    if args.output is not None:
        return run_batch_prediction(args, pairs)
    for path in args.image:
        if Path(path).is_dir() or Path(path).suffix.lower() == ".zip":
            raise_user_error(f"{path} is a folder or zip: add --output preds.csv (or .jsonl) to predict all its photos")
    images = [load_image(path) for path in args.image]
    model = load_model(args.model, checkpoint=args.checkpoint, backbone=args.backbone, revision=args.revision,
                       backbone_precision=args.backbone_precision)
    model.head_precision = args.head_precision
    vocab = Vocabulary.build(args.states, args.objects, pairs=pairs,
                             seen_pairs=[tuple(p) for p in model.train_pairs] if model.train_pairs else None)
    predictions = model.predict(images, vocab, top_k=args.top_k, bias=args.bias, batch_size=args.batch_size)
    if args.json:
        documents = [prediction.to_dict() for prediction in predictions]
        precision = model.head_precision_in_use()
        for path, document in zip(args.image, documents):
            document["image"] = path
            if precision:
                document["head_precision"] = precision
        print(json.dumps(documents[0] if len(documents) == 1 else documents, indent=2))
        return 0
    for path, prediction in zip(args.image, predictions):
        print(_format_prediction(path, prediction, model.display_name))
    return 0


def run_batch_prediction(args: argparse.Namespace, pairs: str | None) -> int:
    """predict --output: stream every photo under the given paths into a CSV or JSON lines file."""
    from .inference.batch import output_kind, summary_lines, write_predictions
    from .models.checkpoints import load_model
    from .inputs.vocab import Vocabulary

    try:
        output_kind(args.output)
    except ValueError as error:
        raise_user_error(str(error))
    if args.batch_size < 1:
        raise_user_error("--batch-size must be at least 1")
    model = load_model(args.model, checkpoint=args.checkpoint, backbone=args.backbone, revision=args.revision,
                       backbone_precision=args.backbone_precision)
    model.head_precision = args.head_precision
    vocab = Vocabulary.build(args.states, args.objects, pairs=pairs,
                             seen_pairs=[tuple(p) for p in model.train_pairs] if model.train_pairs else None)
    checkpoint = f"{args.checkpoint}@{args.revision}" if args.checkpoint and args.revision else args.checkpoint or ""
    summary = write_predictions(model, args.image, vocab, args.output, checkpoint=checkpoint,
                                batch_size=args.batch_size, top_k=args.top_k, bias=args.bias)
    for line in summary_lines(summary, args.output):
        print(line, file=sys.stderr)
    return 0 if summary.predicted else 2


def run_app_command(app_args: Sequence[str]) -> int:
    """Start the Gradio app (with its API and MCP server) and serve until interrupted; app_args are its own
    options (czsl_models/ui/launch.py), so `app --help` lists them."""
    from .ui.launch import main as launch_app

    launch_app(list(app_args), prog="czsl-models app")
    return 0


def _format_prediction(path: str, prediction, display_name: str) -> str:
    if prediction.model == "clip":
        status = "zero-shot baseline"
    else:
        status = ("trained" if prediction.trained else "untrained: scores equal the CLIP baseline"
                  if prediction.untrained_equals_baseline else "untrained: its scores mean nothing yet")
    lines = [f"{path}  [{display_name or prediction.model}, backbone {prediction.backbone}, {status}]"]
    width = max(len(f"{r.state} {r.object}") for r in prediction.ranking)
    for rank, item in enumerate(prediction.ranking, start=1):
        seen = "" if item.seen is None else ("  seen" if item.seen else "  unseen")
        lines.append(f"  {rank:>2}. {item.state + ' ' + item.object:<{width}}  {item.score:8.3f}{seen}")
    lines.append("  states:  " + ", ".join(f"{n} {p:.2f}" for n, p in prediction.states[:5]))
    lines.append("  objects: " + ", ".join(f"{n} {p:.2f}" for n, p in prediction.objects[:5]))
    return "\n".join(lines)


def add_models_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `models`."""
    parser.add_argument("--weights-dir", default=None, help="folder of local checkpoints (default: weights/)")


def run_models_command(args: argparse.Namespace) -> int:
    """List the models and the local checkpoints."""
    from .models.checkpoints import list_local_checkpoints
    from .models.registry import list_models, model_class

    print("Models:")
    for name in list_models():
        cls = model_class(name)
        print(f"  {name:<8} {cls.summary}")
    checkpoints = list_local_checkpoints(args.weights_dir)
    print("Local checkpoints:" if checkpoints else "Local checkpoints: none (train one, or pass a Hub repo id).")
    for info in checkpoints:
        print(f"  {info.path}  {info.model_type}, backbone {info.backbone}, {info.states} states x {info.objects} objects")
    return 0


# A package that only an extra installs -> that extra (pyproject.toml [project.optional-dependencies]).
EXTRA_OF_PACKAGE = {"gradio": "app", "mcp": "app", "matplotlib": "app", "accelerate": "train",
                    "tensorboard": "tensorboard"}


def missing_extra_message(error: ModuleNotFoundError) -> str | None:
    """The one line that names the extra to install when `error` is a package of an extra, else None."""
    package = (error.name or "").split(".")[0]
    extra = EXTRA_OF_PACKAGE.get(package)
    if extra is None:
        return None
    return f"{package} is not installed; this command needs the [{extra}] extra: pip install 'czsl-models[{extra}]'"


class UserError(Exception):
    """A problem with what the user asked for; printed without a traceback."""


def raise_user_error(message: str) -> None:
    """Stop the command with a one-line message."""
    raise UserError(message)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="python -m czsl_models",
                                     description="Compositional zero-shot recognition (MSCI, Refiner, SVIP on OpenCLIP).")
    commands = parser.add_subparsers(dest="command", required=True)
    local: dict[str, tuple[Callable, Callable, str]] = {
        "predict": (add_predict_arguments, run_predict_command, "rank state-object compositions in photos"),
        "models": (add_models_arguments, run_models_command, "list models and local checkpoints"),
    }
    # Listed for --help; main() hands `app ...` to the app's own parser before this one sees its options.
    commands.add_parser("app", help="start the app (its API and MCP server too); app --help lists its options")
    for name, (add, run, help_text) in local.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        add(sub)
        sub.set_defaults(run=run)
    for name, (module_name, add_name, run_name, help_text) in _DELEGATED.items():
        full_name = f"{__package__}.{module_name}"
        try:
            module = importlib.import_module(full_name)
        except ModuleNotFoundError as error:
            if error.name != full_name:
                raise
            continue
        sub = commands.add_parser(name, help=help_text, description=help_text)
        getattr(module, add_name)(sub)
        sub.set_defaults(run=getattr(module, run_name))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; user errors print one line on stderr and exit with status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["app"]:
            return run_app_command(argv[1:])
        args = build_parser().parse_args(argv)
        return int(args.run(args) or 0)
    except ModuleNotFoundError as error:
        message = missing_extra_message(error)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2
    except (UserError, *user_errors()) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
