"""The evaluate and metrics commands: `python -m czsl_models evaluate | metrics`."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from ..inputs.arguments import print_error
from .metrics import StreamingEvaluator, format_metrics_table
from .score_files import load_metrics_inputs

# ------------------------------------------------------------------------------ CLI: evaluate


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `evaluate`."""
    from ..backbones.precision import add_backbone_precision_argument, add_head_precision_argument

    parser.add_argument("--model", default=None, help="clip, msci, refiner or svip (default: the checkpoint's, else clip)")
    parser.add_argument("--checkpoint", default=None,
                        help="a checkpoint folder or Hub repo id (default: none, the untrained zero-shot model)")
    parser.add_argument("--dataset", required=True, help="a dataset folder or synthetic:shapes")
    parser.add_argument("--backbone", default=None, help="backbone for a model without checkpoint (default ViT-L-14-quickgelu:openai)")
    parser.add_argument("--phase", choices=("test", "val"), default="test", help="split to evaluate (default test)")
    parser.add_argument("--open-world", action="store_true", help="score every state x object pair")
    parser.add_argument("--feasibility-threshold", type=_feasibility_threshold, default=None, metavar="T|val",
                        help="open world: mask unseen pairs whose CLIP-text (CompCos) feasibility is below T, or below the "
                             "threshold with the best validation AUC ('val'); `reproduce` uses the released files")
    parser.add_argument("--batch-size", type=int, default=32, help="images per batch (default 32)")
    parser.add_argument("--num-workers", type=int, default=None, help="image decoding processes (default: automatic)")
    add_head_precision_argument(parser)
    add_backbone_precision_argument(parser)
    parser.add_argument("--json", action="store_true", help="print every metric and the curve as JSON")


# What this command masks with; `reproduce` uses the released feasibility files of the benchmarks instead.
CLIP_TEXT_FEASIBILITY = "CLIP-text feasibility (CompCos on the model's own state and object text features)"


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
    from ..data import load_dataset
    from ..models.checkpoints import load_model, read_checkpoint_config, resolve_checkpoint
    from .evaluate import choose_feasibility_threshold, evaluate_model
    from .metrics import CZSLMetrics

    if args.batch_size < 1:
        return print_error("--batch-size must be at least 1")
    if args.feasibility_threshold is not None and not args.open_world:
        return print_error("--feasibility-threshold applies to the open world: add --open-world")
    threshold, tried = args.feasibility_threshold, None
    try:
        name = args.model
        if name is None:
            name = read_checkpoint_config(resolve_checkpoint(args.checkpoint))["model_type"] if args.checkpoint else "clip"
        model = load_model(name, checkpoint=args.checkpoint, backbone=args.backbone,
                           backbone_precision=args.backbone_precision)
        model.head_precision = args.head_precision
        dataset = load_dataset(args.dataset)
        if threshold == "val":
            threshold, tried = choose_feasibility_threshold(model, dataset, batch_size=args.batch_size,
                                                            num_workers=args.num_workers)
        metrics: CZSLMetrics = evaluate_model(model, dataset, phase=args.phase, open_world=args.open_world,
                                              batch_size=args.batch_size, num_workers=args.num_workers,
                                              feasibility_threshold=threshold)
    except ValueError as error:  # the split cannot be evaluated (no images, no unseen pairs); bad names or files
        return print_error(str(error))
    world = "open world" if args.open_world else "closed world"
    if threshold is not None:
        world += (f", unseen pairs with CLIP-text feasibility below {threshold:.4f} masked"
                  + (" (chosen on val)" if tried else ""))
    if args.json:
        document = {"model": model.name, "checkpoint": args.checkpoint, "backbone": model.backbone.name,
                    "trained": model.is_trained, "dataset": dataset.name, "phase": args.phase,
                    "open_world": args.open_world, "images": len(dataset.splits[args.phase]),
                    "backbone_precision": model.backbone.precision,
                    "head_precision": model.head_precision_in_use(), "feasibility_threshold": threshold,
                    "feasibility_source": None if threshold is None else CLIP_TEXT_FEASIBILITY,
                    "val_auc_by_threshold": None if tried is None else [[t, auc] for t, auc in tried.items()],
                    **metrics.to_dict()}
        print(json.dumps(document, indent=2))
        return 0
    status = ("trained" if model.is_trained else "untrained: the CLIP zero-shot baseline"
              if model.untrained_equals_baseline else "untrained: its numbers mean nothing yet")
    print(f"{model.display_name} ({status}), backbone {model.backbone.name} ({model.backbone.precision})")
    print(f"{dataset.name}, {args.phase} split, {len(dataset.splits[args.phase])} images, {world}")
    print(format_metrics_table(metrics))
    return 0


def add_metrics_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m czsl_models metrics``."""
    parser.add_argument(
        "scores_file",
        metavar="SCORES.npz",
        type=Path,
        help="npz with scores [N,P], pairs [P,2] (state, object), labels [N], seen [P]; optional "
        "candidates [P] (closed world; absent = open world) and feasibility [P] with threshold",
    )
    parser.add_argument("--json", action="store_true", help="print every metric and the curve as JSON")


def run_metrics_command(args: argparse.Namespace) -> int:
    """Compute and print the CZSL metrics of a scores file; 0 on success, 2 on bad input."""
    try:
        inputs = load_metrics_inputs(Path(args.scores_file))
        evaluator = StreamingEvaluator(
            inputs["pair_states"],
            inputs["pair_objects"],
            inputs["seen"],
            inputs["candidates"],
            inputs["feasibility"],
            inputs["threshold"],
        )
        evaluator.update(inputs["scores"], inputs["labels"])
        metrics = evaluator.compute()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(metrics.to_dict(), indent=2))
        return 0
    labels = inputs["labels"]
    num_unseen_images = int((~evaluator.seen[labels]).sum())
    world = "closed world" if inputs["candidates"] is not None else "open world"
    if inputs["feasibility"] is not None:
        world += f", feasibility threshold {inputs['threshold']:g}"
    print(
        f"{evaluator.num_images} images ({evaluator.num_images - num_unseen_images} of seen pairs, "
        f"{num_unseen_images} of unseen pairs); {evaluator.num_candidate_pairs} of {evaluator.num_pairs} "
        f"pairs can be predicted ({world})"
    )
    print(format_metrics_table(metrics))
    return 0
