"""Training through Accelerate: mixed precision is passed only when asked (never over accelerate launch or
accelerate config), losses and metrics reach an experiment tracker, and the README's accelerate launch line
trains on 2 CPU processes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from czsl_models.training import TrainConfig, TrainError, train
from czsl_models.training.config import resolve_recipe
from czsl_models.training.trainer import _Run

ROOT = Path(__file__).resolve().parent.parent
DATASET = "synthetic:shapes?num_states=3&num_objects=3&images_per_pair=2"


def accelerator_options(monkeypatch, tmp_path, **config) -> dict:
    """The keyword arguments the trainer gives Accelerator."""
    import accelerate

    seen: dict = {}

    class Recording:
        def __init__(self, **kwargs):
            seen.update(kwargs)

    monkeypatch.setattr(accelerate, "Accelerator", Recording)
    train_config = TrainConfig(model="msci", dataset=DATASET, out=str(tmp_path / "run"), backbone="tiny", **config)
    run = _Run(train_config, None, None)
    run.recipe = resolve_recipe(train_config, "synthetic-shapes")  # the trainer resolves it before _accelerator
    run._accelerator()
    return seen


def test_mixed_precision_only_when_asked(monkeypatch, tmp_path):
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    assert accelerator_options(monkeypatch, tmp_path)["mixed_precision"] == "no"  # our default on this CPU
    assert accelerator_options(monkeypatch, tmp_path, mixed_precision="bf16")["mixed_precision"] == "bf16"
    # accelerate launch --mixed_precision (or accelerate config) sets this variable: the trainer leaves it alone.
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")
    assert "mixed_precision" not in accelerator_options(monkeypatch, tmp_path)
    assert accelerator_options(monkeypatch, tmp_path, mixed_precision="no")["mixed_precision"] == "no"
    assert "log_with" not in accelerator_options(monkeypatch, tmp_path)


def test_recipe_precision_on_a_gpu(monkeypatch, tmp_path):
    """Nobody asking, on a GPU: the paper preset trains in float32 as the released code does, the fast preset
    under bf16 autocast; an explicit --mixed-precision still wins."""
    import torch

    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    monkeypatch.setattr("czsl_models.backbones.default_device", lambda: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert accelerator_options(monkeypatch, tmp_path, preset="paper")["mixed_precision"] == "no"
    assert accelerator_options(monkeypatch, tmp_path)["mixed_precision"] == "bf16"
    assert accelerator_options(monkeypatch, tmp_path, preset="paper", mixed_precision="bf16")["mixed_precision"] == "bf16"


def test_unknown_tracker_is_refused(tmp_path):
    with pytest.raises(TrainError, match="--report-to must be one of none, tensorboard, wandb"):
        train(TrainConfig(model="msci", dataset=DATASET, out=str(tmp_path / "run"), backbone="tiny",
                          report_to="mlflow"))


def test_report_to_tensorboard_logs_losses_and_metrics(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    result = train(TrainConfig(model="msci", dataset=DATASET, out=str(out), backbone="tiny", epochs=2, lr=1e-3,
                               batch_size=6, cache_dir=str(tmp_path / "cache"), eval_batch_size=8,
                               report_to="tensorboard"))
    assert result.finished and result.training_steps == 4
    event_files = list((out / "logs").rglob("events.out.tfevents.*"))
    assert event_files
    scalars: dict[str, list] = {}
    for path in event_files:
        events = EventAccumulator(str(path.parent))
        events.Reload()
        for tag in events.Tags()["scalars"]:
            scalars[tag] = events.Scalars(tag)
    assert [event.step for event in scalars["train/loss"]] == [1, 2, 3, 4]
    assert len(scalars["train/epoch_loss"]) == 2 and "val/AUC" in scalars and "test/AUC" in scalars


def test_accelerate_launch_trains_on_two_cpu_processes(tmp_path):
    out = tmp_path / "ddp"
    readme = (ROOT / "README.md").read_text()
    line = re.search(r"^accelerate launch --multi_gpu --num_processes 2 .* --cpu .*$", readme, re.M)
    assert line, "README shows the 2-process CPU line this test runs"
    arguments = line.group(0).split()[2:]  # after "accelerate launch"
    arguments[arguments.index("--out") + 1] = str(out)
    arguments[arguments.index("--dataset") + 1] = DATASET
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "CZSL_CACHE_DIR": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", *arguments], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    from czsl_models.models.checkpoints import load_model

    assert "Training on 2 processes (cpu)" in result.stderr
    model = load_model(None, checkpoint=str(out))
    assert model.is_trained and int(model.training_steps.item()) == 2  # 12 images, 6 a step, one epoch
