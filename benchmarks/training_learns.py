"""Does training with the defaults improve the task? Test AUC of MSCI, Refiner and SVIP on the built-in
shapes, untrained (the start the default run trains from: the CLIP baseline for Refiner and SVIP, the released
start, lambda = 0.1, for MSCI) and after one default training run, with the run's time.

The defaults are what the app's Train tab and `python -m czsl_models train` use: the "fast" preset and
the recipe for `synthetic:shapes` (czsl_models.training.config.resolve_recipe). Times depend on the machine and
on what else runs on it, so the 1-minute load average is printed with every run.

    python benchmarks/training_learns.py                    # all three models, tiny backbone
    python benchmarks/training_learns.py --models msci      # one model
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from czsl_models.data import load_dataset  # noqa: E402
from czsl_models.evaluation import evaluate_model  # noqa: E402
from czsl_models.models.checkpoints import load_model  # noqa: E402
from czsl_models.training import TrainConfig, train  # noqa: E402
from czsl_models.training.config import resolve_recipe  # noqa: E402

MODELS = ("msci", "refiner", "svip")
DATASET = "synthetic:shapes"


def untrained_auc(model_name: str, backbone: str, dataset_spec: str, seed: int = 0) -> float:
    """Test AUC of the model the default run starts from, untrained (the recipe's model options: for MSCI the
    released variant, whose start is not the CLIP baseline; the others start as the CLIP baseline)."""
    dataset = load_dataset(dataset_spec)
    options = resolve_recipe(TrainConfig(model=model_name, dataset=dataset_spec, out="-"), dataset.name).model_options
    torch.manual_seed(seed)
    model = load_model(model_name, backbone=backbone, train_states=list(dataset.states),
                       train_objects=list(dataset.objects), train_pairs=[list(p) for p in dataset.train_pairs],
                       **options)
    return float(evaluate_model(model, dataset, phase="test").AUC)


def clip_baseline_auc(backbone: str, dataset_spec: str) -> float:
    """Test AUC of the `clip` baseline."""
    return float(evaluate_model(load_model("clip", backbone=backbone), load_dataset(dataset_spec), phase="test").AUC)


def train_with_defaults(model_name: str, backbone: str, dataset_spec: str, seed: int = 0) -> dict:
    """One default training run: test and validation AUC of the selected epoch, seconds, load."""
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        config = TrainConfig(model=model_name, dataset=dataset_spec, out=str(Path(folder) / "run"), backbone=backbone,
                             seed=seed, cache_dir=str(Path(folder) / "cache"), cpu=True)
        started = time.perf_counter()
        result = train(config)
        seconds = time.perf_counter() - started
    return {
        "model": model_name, "seconds": round(seconds, 1), "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2), "epochs": len(result.history), "best_epoch": result.best_epoch,
        "steps": result.training_steps, "val_auc": result.validation["AUC"] if result.validation else None,
        "test_auc": result.test["AUC"] if result.test else None,
        "val_auc_by_epoch": [None if e.get("validation") is None else round(e["validation"]["AUC"], 4)
                             for e in result.history],
    }


def main(argv: list[str] | None = None) -> list[dict]:
    """Print untrained vs trained test AUC per model; returns the rows."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated, from msci, refiner, svip")
    parser.add_argument("--backbone", default="tiny")
    parser.add_argument("--dataset", default=DATASET)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    baseline = clip_baseline_auc(args.backbone, args.dataset)
    print(f"clip baseline test AUC {100 * baseline:5.2f}", flush=True)
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        row = train_with_defaults(name, args.backbone, args.dataset, args.seed)
        row["untrained_test_auc"] = untrained_auc(name, args.backbone, args.dataset, args.seed)
        row["clip_baseline_test_auc"] = baseline
        rows.append(row)
        print(f"{name:<8} test AUC untrained {100 * row['untrained_test_auc']:5.2f} -> trained {100 * row['test_auc']:5.2f} "
              f"(val {100 * row['val_auc']:5.2f}, best epoch {row['best_epoch']}/{row['epochs']}, {row['steps']} steps) "
              f"in {row['seconds']:.0f} s, load {row['load_before']:.1f} -> {row['load_after']:.1f} "
              f"on {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads", flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
