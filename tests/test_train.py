"""Training, evaluation and publishing: tiny-backbone runs on synthetic shapes, exact resume,
atomic checkpoints, the feature cache, the CLI commands and `accelerate launch` with 2 processes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from czsl_models.cli import main as cli_main
from hub_cards import checked_card
from czsl_models.data import load_dataset
from czsl_models.training.feature_cache import build_feature_cache, cache_key, model_trains_from_cache
from czsl_models.evaluation import evaluate_model
from czsl_models.training.targets import training_vocabulary
from czsl_models.models.checkpoints import load_model
from czsl_models.training import TrainConfig, TrainError, epoch_batches, shard_batch, train
from czsl_models.training.run_state import COMMIT_MARKER, STAGING_NAME, commit_checkpoint, recover_checkpoint
from czsl_models.inputs.vocab import Vocabulary

ROOT = Path(__file__).resolve().parent.parent
# 3 states x 3 objects, 2 images a pair: 12 training images (2 steps of 6), 3 val and 3 test images,
# each split with seen and unseen pairs.
DATASET = "synthetic:shapes?num_states=3&num_objects=3&images_per_pair=2"
HEADLINE = ("best_seen", "best_unseen", "best_hm", "AUC")


# One feature cache for the whole module: each cache is built once, by the first run that needs it.
CACHE_ROOT = None


@pytest.fixture(scope="module", autouse=True)
def shared_cache(tmp_path_factory):
    global CACHE_ROOT
    CACHE_ROOT = tmp_path_factory.mktemp("feature-cache")
    yield CACHE_ROOT


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: these tiny runs gain nothing from two, and on a shared CPU two threads
    spin-wait on each other (10x slower measured here)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def make_config(tmp_path: Path, model: str, name: str = "run", **overrides) -> TrainConfig:
    """A 2-epoch tiny run (2 steps an epoch) with the module's feature cache."""
    values = dict(model=model, dataset=DATASET, backbone="tiny", out=str(tmp_path / name), epochs=2, lr=1e-3,
                  batch_size=6, cache_dir=str(CACHE_ROOT), eval_batch_size=8)
    values.update(overrides)
    return TrainConfig(**values)


def folder_digest(folder: Path) -> dict[str, str]:
    """Content hash of every file under a folder."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset():
    return load_dataset(DATASET)


class Recorder:
    """A callback that records what the trainer reports and can request a stop at a given step."""

    def __init__(self, stop_at: int | None = None, stop: threading.Event | None = None) -> None:
        self.total = None
        self.steps: list[tuple[int, float]] = []
        self.epochs: list[tuple[int, dict]] = []
        self.ended = None
        self.stop_at, self.stop = stop_at, stop

    def on_start(self, total_steps):
        self.total = total_steps

    def on_step(self, step, loss):
        self.steps.append((step, loss))
        if self.stop_at is not None and step == self.stop_at:
            self.stop.set()

    def on_epoch(self, epoch, metrics):
        self.epochs.append((epoch, metrics))

    def on_end(self, result):
        self.ended = result


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """trained(model) -> (result, output folder, recorder) of the module's one 2-epoch fast run of that
    model; later tests read these folders and never change them."""
    runs = {}

    def get(model_name: str):
        if model_name not in runs:
            folder = tmp_path_factory.mktemp(f"trained-{model_name}")
            recorder = Recorder()
            result = train(make_config(folder, model_name), callback=recorder)
            runs[model_name] = (result, folder / "run", recorder)
        return runs[model_name]

    return get


@pytest.mark.parametrize("model_name", ["msci", "refiner", "svip"])
def test_two_epochs_learn_save_and_load(trained, dataset, model_name, example_images):
    """Each model trains 2 epochs: the loss falls, metrics.json holds S/U/HM/AUC, the folder loads and predicts."""
    result, out, recorder = trained(model_name)
    assert result.finished and not result.stopped
    assert result.checkpoint_dir == out
    assert recorder.total == 4 and [s for s, _ in recorder.steps] == [1, 2, 3, 4]
    assert [e for e, _ in recorder.epochs] == [1, 2] and recorder.ended is result
    losses = [entry["train_loss"] for entry in result.history]
    assert losses[1] < losses[0], losses
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["phase"] == "test" and metrics["model"] == model_name
    for key in HEADLINE:
        assert 0.0 <= metrics[key] <= 1.0 and 0.0 <= metrics["validation"][key] <= 1.0
    card = (out / "README.md").read_text()
    # The checkpoint is the best validation epoch: 2 or 4 steps.
    assert metrics["training_steps"] == 2 * metrics["epoch"]
    assert "Best HM" in card and "circle" in card and f"Optimisation steps: {metrics['training_steps']}" in card
    hub_card = checked_card(card, model_name, base_model=None)  # the tiny test backbone lives on no Hub repo
    assert hub_card.data.datasets is None  # synthetic shapes: no Hub dataset
    measured = {result.metric_type: result.metric_value for result in hub_card.data.eval_results}
    assert measured == {key.lower(): round(100 * metrics[key], 2) for key in HEADLINE}
    assert {result.dataset_split for result in hub_card.data.eval_results} == {"test"}
    loaded = load_model(model_name, checkpoint=out)
    assert loaded.is_trained and int(loaded.training_steps) == metrics["training_steps"]
    assert loaded.train_pairs == [list(pair) for pair in dataset.train_pairs]
    vocab = Vocabulary.build(dataset.states, dataset.objects)
    trained = loaded.predict(example_images[:2], vocab, top_k=3)
    untrained = load_model(model_name, backbone="tiny").predict(example_images[:2], vocab, top_k=3)
    assert len(trained[0].ranking) == 3 and np.isfinite(trained[0].scores).all()
    assert not np.allclose(trained[0].scores, untrained[0].scores)
    # The saved metrics are the loaded checkpoint's: evaluating it again (from pixels) agrees.
    again = evaluate_model(loaded, dataset, phase="test", batch_size=3).to_dict()
    for key in HEADLINE:
        assert again[key] == pytest.approx(metrics[key], abs=1e-6)


@pytest.mark.parametrize("preset,stop_at", [("fast", 3), ("paper", 1)])
def test_stopped_and_resumed_run_matches_uninterrupted(tmp_path, trained, preset, stop_at):
    """Stop mid-run (MSCI in the second epoch on the cached path, with its StepLR schedule; Refiner in
    the first epoch, before any checkpoint, on the pixel path with augmentation), resume, and end with
    bit-identical weights, the same losses and the same metrics as a run that never stopped."""
    if preset == "fast":
        model_name = "msci"
        straight, straight_out, _ = trained(model_name)
    else:
        model_name = "refiner"
        straight = train(make_config(tmp_path, model_name, "straight", preset=preset))
        straight_out = tmp_path / "straight"
    stop = threading.Event()
    first = train(make_config(tmp_path, model_name, "resumed", preset=preset), callback=Recorder(stop_at, stop), stop=stop)
    assert first.stopped and not first.finished and first.training_steps == stop_at
    assert (first.checkpoint_dir is None) == (stop_at <= 2)  # no checkpoint before the first epoch ends
    with pytest.raises(TrainError, match="--resume"):
        train(make_config(tmp_path, model_name, "resumed", preset=preset))
    recorder = Recorder()
    resumed = train(make_config(tmp_path, model_name, "resumed", preset=preset, resume=True), callback=recorder)
    assert resumed.finished and resumed.training_steps == 4
    assert [step for step, _ in recorder.steps] == list(range(stop_at + 1, 5))  # continued, not restarted
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in straight.history]
    for relative in ("model.safetensors", "training_state/model.safetensors"):
        expected = load_file(str(straight_out / relative))
        actual = load_file(str(tmp_path / "resumed" / relative))
        assert expected.keys() == actual.keys()
        for key in expected:
            assert torch.equal(expected[key], actual[key]), (relative, key)
    assert resumed.test == straight.test
    assert resumed.to_dict()["checkpoint_dir"] == str(tmp_path / "resumed")


def test_crashed_run_resumes_from_periodic_state(tmp_path, trained):
    """A run that dies mid-epoch (here: an exception at step 3) resumes from the state saved every step
    and ends with the weights of the run that never stopped."""
    class Crash(Recorder):
        def on_step(self, step, loss):
            if step == 3:
                raise RuntimeError("simulated crash")

    config = make_config(tmp_path, "msci", save_every_steps=1)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(config, callback=Crash())
    config.resume = True
    recorder = Recorder()
    resumed = train(config, callback=recorder)
    assert [step for step, _ in recorder.steps] == [3, 4]  # it went on from the state saved after step 2
    _, straight_out, _ = trained("msci")
    expected = load_file(str(straight_out / "training_state" / "model.safetensors"))
    actual = load_file(str(tmp_path / "run" / "training_state" / "model.safetensors"))
    assert all(torch.equal(expected[key], actual[key]) for key in expected)
    assert resumed.finished and resumed.training_steps == 4


def test_resume_refuses_changed_options_and_finished_run_is_a_no_op(trained):
    _, out, _ = trained("refiner")
    before = folder_digest(out)
    with pytest.raises(TrainError, match="lr"):
        train(make_config(out.parent, "refiner", lr=5e-4, resume=True))
    again = train(make_config(out.parent, "refiner", resume=True))
    assert again.finished and again.training_steps == 4 and len(again.history) == 2
    assert folder_digest(out) == before


def test_user_errors_are_one_line_exit_2(tmp_path, capsys):
    cases = [
        ["train", "--model", "refiner", "--dataset", str(tmp_path / "missing"), "--backbone", "tiny", "--out", str(tmp_path / "o")],
        ["train", "--model", "clip", "--dataset", DATASET, "--backbone", "tiny", "--out", str(tmp_path / "o")],
        ["train", "--model", "refiner", "--dataset", DATASET, "--backbone", "tiny", "--out", str(tmp_path / "o"), "--epochs", "0"],
        ["evaluate", "--model", "clip", "--dataset", str(tmp_path / "missing"), "--backbone", "tiny"],
        ["push", str(tmp_path), "someone/model"],
    ]
    for argv in cases:
        assert cli_main(argv) == 2, argv
        error = capsys.readouterr().err.strip()
        assert error.startswith("error: ") and "\n" not in error, (argv, error)
    assert not (tmp_path / "o").exists()


def test_checkpoint_commit_is_atomic(tmp_path):
    """A commit interrupted before its marker is rolled back; one interrupted after it is completed."""
    out = tmp_path / "ckpt"

    def writer(text):
        def write(folder):
            for name in ("config.json", "model.safetensors", "metrics.json", "README.md"):
                (folder / name).write_text(f"{text} {name}")
        return write

    commit_checkpoint(out, writer("old"))
    staging = out / STAGING_NAME
    staging.mkdir()
    writer("half")(staging)
    recover_checkpoint(out)  # no marker: the old checkpoint stays
    assert (out / "model.safetensors").read_text() == "old model.safetensors" and not staging.exists()
    staging.mkdir()
    writer("new")(staging)
    (staging / COMMIT_MARKER).write_text("ready")
    os.replace(staging / "config.json", out / "config.json")  # the crash came after the first rename
    recover_checkpoint(out)
    assert {p.name: p.read_text() for p in out.iterdir()} == {
        name: f"new {name}" for name in ("config.json", "model.safetensors", "metrics.json", "README.md")}


def test_feature_cache_is_reused_keyed_and_close_to_pixels(tmp_path, dataset):
    """The cache is built once, keyed by images and dtype, and float16 features score like pixels."""
    model = load_model("msci", backbone="tiny", train_states=dataset.states, train_objects=dataset.objects,
                       train_pairs=[list(p) for p in dataset.train_pairs])
    assert model_trains_from_cache(model)
    assert not model_trains_from_cache(load_model("msci", backbone="tiny", use_adapters=True))
    assert not model_trains_from_cache(load_model("svip", backbone="tiny"))
    samples = dataset.splits["val"]
    calls = []
    features = build_feature_cache(model, dataset, samples, cache_root=tmp_path, progress=lambda d, t: calls.append(d))
    assert calls[-1] == len(samples)
    again = build_feature_cache(model, dataset, samples, cache_root=tmp_path, progress=lambda d, t: calls.append(-1))
    assert -1 not in calls and again.path == features.path
    assert cache_key(model, dataset, samples, "float32") != cache_key(model, dataset, samples, "float16")
    assert cache_key(model, dataset, samples[:-1], "float16") != cache_key(model, dataset, samples, "float16")
    # A stop request during a cache build ends the run before any step and keeps no cache.
    stop = threading.Event()
    stop.set()
    stopped = train(make_config(tmp_path, "msci", cache_dir=str(tmp_path / "fresh-cache")), stop=stop)
    assert stopped.stopped and stopped.training_steps == 0 and stopped.checkpoint_dir is None
    assert not any((tmp_path / "fresh-cache").rglob("meta.json"))
    # Give the zero-initialised residuals weight so the cached tokens matter, then compare scores.
    torch.manual_seed(0)
    with torch.no_grad():
        model.local_scale.normal_(0, 1)
        model.global_scale.normal_(0, 1)
    model.eval()
    model.head_precision = "float32"  # what is measured is the float16 storage, not the head's arithmetic
    vocab = training_vocabulary(dataset)
    pixels = model.backbone.preprocess_images([dataset.load_image(s) for s in samples])
    with torch.no_grad():
        direct = model.pair_scores(model(pixels, vocab), vocab)
        cached = model.pair_scores(model(None, vocab, visual=features.batch(range(len(samples)), "cpu")), vocab)
    assert (direct - cached).abs().max() < 5e-3  # scores are 100 x cosine; float16 tokens moved them by 3e-4
    assert not torch.equal(direct, cached)


def test_evaluate_command_zero_shot_and_checkpoint(trained, capsys, dataset):
    """`evaluate` without checkpoint is the CLIP zero-shot baseline (an untrained MSCI scores the same);
    with a checkpoint it reports that model; the open world scores every pair."""
    base = ["evaluate", "--dataset", DATASET, "--backbone", "tiny", "--json", "--batch-size", "3"]
    assert cli_main(base + ["--model", "clip"]) == 0
    clip = json.loads(capsys.readouterr().out)
    assert cli_main(base + ["--model", "msci", "--head-precision", "bfloat16"]) == 0
    msci = json.loads(capsys.readouterr().out)
    assert clip["trained"] is False and clip["images"] == 3
    assert clip["head_precision"] is None and msci["head_precision"] == "bfloat16"
    for key in HEADLINE:
        assert msci[key] == pytest.approx(clip[key], abs=1e-9)
    _, out, _ = trained("refiner")
    assert cli_main(["evaluate", "--checkpoint", str(out), "--dataset", DATASET, "--open-world"]) == 0
    text = capsys.readouterr().out
    assert "Refiner" in text and "open world" in text and "AUC" in text and "trained" in text


def test_push_fails_cleanly_offline_or_unreachable_and_changes_nothing(trained, capsys, monkeypatch):
    from huggingface_hub import constants

    _, out, _ = trained("refiner")
    before = folder_digest(out)
    command = ["push", str(out), "someone/czsl-test"]
    monkeypatch.setenv("HF_TOKEN", "hf_dummy")
    assert cli_main(command) == 2  # the test session runs with HF_HUB_OFFLINE=1
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "HF_HUB_OFFLINE" in error and "\n" not in error
    # Online, with the Hub unreachable (a closed local port): one clear line too.
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    assert cli_main(command) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: could not publish to someone/czsl-test") and "\n" not in error
    # Online without any token.
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setenv("HF_HOME", str(out.parent / "empty-hf-home"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(out.parent / "empty-hf-home" / "token"))
    assert cli_main(command) == 2
    assert "no Hugging Face token" in capsys.readouterr().err
    assert folder_digest(out) == before


def test_push_publishes_a_card_with_complete_hub_metadata(trained, monkeypatch):
    """push uploads the checkpoint files and a README whose metadata lacks nothing, even when the folder's own card
    (written by an older version) had no metadata; the folder itself is not changed."""
    import shutil

    import huggingface_hub
    from huggingface_hub import constants

    _, out, _ = trained("msci")
    folder = out.parent / "msci-old-card"
    shutil.copytree(out, folder)
    (folder / "README.md").write_text("# an msci checkpoint\n\nWritten before cards carried Hub metadata.\n")
    before = folder_digest(folder)
    commits = []

    class RecordingApi:
        def __init__(self, token=None):
            self.token = token

        def create_repo(self, repo_id, **kwargs):
            return f"https://huggingface.co/{repo_id}"

        def create_commit(self, repo_id, operations, **kwargs):
            commits.append({op.path_in_repo: op.path_or_fileobj for op in operations})

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    for source in (out, folder):
        assert cli_main(["push", str(source), "someone/msci-shapes", "--token", "hf_x"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for commit in commits:
        assert set(commit) == {"config.json", "model.safetensors", "metrics.json", "README.md"}
        card = checked_card(commit["README.md"].decode(), "msci", base_model=None)
        assert {r.metric_type: r.metric_value for r in card.data.eval_results}["best_hm"] == round(
            100 * metrics["best_hm"], 2)
    assert "Written before cards carried Hub metadata." in commits[1]["README.md"].decode()
    assert commits[0]["README.md"].decode() == (out / "README.md").read_text()  # a complete card goes up as it is
    assert folder_digest(folder) == before


def test_a_card_names_the_backbones_hub_repo_as_base_model_and_hub_datasets_only():
    from czsl_models.models.card import checkpoint_card_data

    document = {"phase": "test", "dataset": "cgqa", "dataset_hub_id": "nihalnayak/cgqa", "open_world": False,
                "best_seen": 0.4, "best_unseen": 0.3, "best_hm": 0.25, "AUC": 0.1}
    data = checkpoint_card_data("svip", "ViT-L-14-quickgelu:openai", document)
    card = checked_card("---\n" + data.to_yaml() + "\n---\n# card\n", "svip",
                        base_model="timm/vit_large_patch14_clip_224.openai")
    assert card.data.datasets == ["nihalnayak/cgqa"]
    assert {r.dataset_type for r in card.data.eval_results} == {"nihalnayak/cgqa"}
    without_hub_copy = checkpoint_card_data("msci", "ViT-B-32:openai", {**document, "dataset": "mit-states",
                                                                         "dataset_hub_id": None})
    assert without_hub_copy.datasets is None and without_hub_copy.base_model == "timm/vit_base_patch32_clip_224.openai"


def test_epoch_order_and_shards():
    """Batches depend on (seed, epoch) only; shards split a global batch and never come out empty."""
    first = epoch_batches(10, 4, seed=1, epoch=0)
    assert first == epoch_batches(10, 4, seed=1, epoch=0) != epoch_batches(10, 4, seed=1, epoch=1)
    assert sorted(i for batch in first for i in batch) == list(range(10)) and [len(b) for b in first] == [4, 4, 2]
    # A final batch of one image joins the one before it (BatchNorm cannot train on one image).
    merged = epoch_batches(9, 4, seed=1, epoch=0)
    assert [len(b) for b in merged] == [4, 5] and sorted(i for batch in merged for i in batch) == list(range(9))
    assert [len(b) for b in epoch_batches(1, 4, seed=1, epoch=0)] == [1]  # nothing to merge with
    assert shard_batch([5, 6, 7], 0, 2) == [5, 7] and shard_batch([5, 6, 7], 1, 2) == [6]
    assert shard_batch([9], 1, 2) == [9]


def test_no_process_gets_one_image():
    """With BatchNorm in train mode, no step may hand a process a batch of one image: a final batch too small
    for two images per process joins the one before it, and a batch size below that is refused."""
    from czsl_models.training.batching import check_batch_split

    for world in (1, 2, 3, 4):
        for batch_size in range(2 * world, 2 * world + 7):
            for images in range(2 * world, 60):
                check_batch_split(batch_size, images, world)
                batches = epoch_batches(images, batch_size, seed=3, epoch=1, processes=world)
                assert sorted(i for batch in batches for i in batch) == list(range(images))
                shards = [shard_batch(batch, rank, world) for batch in batches for rank in range(world)]
                assert min(len(shard) for shard in shards) >= 2, (world, batch_size, images)
    assert [len(b) for b in epoch_batches(11, 4, seed=1, epoch=0, processes=2)] == [4, 7]  # 3 left: one process 1
    for batch_size, images in ((3, 40), (8, 3)):
        with pytest.raises(TrainError, match="at least 4 images per step"):
            check_batch_split(batch_size, images, 2)


def test_accelerate_launch_two_processes(tmp_path):
    """`accelerate launch --num_processes 2 --cpu` runs the same training to the end."""
    out = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "CZSL_DEVICE": "cpu", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--cpu", "-m", "czsl_models", "train",
               "--model", "refiner", "--dataset", DATASET, "--backbone", "tiny", "--out", str(out), "--epochs", "2",
               "--lr", "1e-3", "--batch-size", "6", "--cache-dir", str(CACHE_ROOT), "--json"]
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    result = json.loads(finished.stdout[finished.stdout.index("{"):])
    assert result["finished"] and result["training_steps"] == 4 and len(result["history"]) == 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert all(key in metrics for key in HEADLINE)
    assert load_model("refiner", checkpoint=out).is_trained


def test_cache_speed_benchmark_quick(capsys):
    """benchmarks/train_cache_speed.py --quick: on the same data, the cached path trains to the same
    losses (float32 cache) and its epochs are faster than encoding every image again."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_cache_speed", ROOT / "benchmarks" / "train_cache_speed.py")
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    numbers = benchmark.main(["--quick", "--epochs", "2"])
    assert numbers["loss_gap"] < 1e-4
    assert numbers["ratio_cpu"] > 1.0
    assert "ratio (uncached / fast)" in capsys.readouterr().out
