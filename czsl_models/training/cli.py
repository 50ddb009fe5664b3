"""The train command: `python -m czsl_models train`."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from ..backbones import DEFAULT_BACKBONE
from .config import MIXED_PRECISION_CHOICES, PRESETS, REPORT_TO_CHOICES, TrainConfig
from .progress import TqdmCallback, TrainResult
from .trainer import train


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
                        help="auto (default): what accelerate launch or accelerate config set, else the recipe's: "
                             "float32 under the paper preset (as released), bf16/fp16 on CUDA under fast; none on CPU")
    parser.add_argument("--msci-variant", choices=("released", "gated"), default="released",
                        help="MSCI: the released architecture (default) or the project's gated extension")
    parser.add_argument("--keep-eval-mode-after-validation", action=argparse.BooleanOptionalAction, default=None,
                        help="train every epoch after the first validation in eval mode (dropout off, BatchNorm "
                             "frozen), as the released MSCI train_base.py does (default: the recipe's; on for "
                             "MSCI's paper preset)")
    parser.add_argument("--report-to", choices=REPORT_TO_CHOICES, default="none",
                        help="log losses and metrics to an experiment tracker (files in OUT/logs; default none)")
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
                         cpu=args.cpu, save_every_steps=args.save_every, report_to=args.report_to,
                         msci_variant=args.msci_variant,
                         keep_eval_mode_after_validation=args.keep_eval_mode_after_validation)
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
        result = train(config, callback=TqdmCallback(), stop=stop)  # refusals reach the command line's one-line handler
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
