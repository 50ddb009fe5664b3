"""A public Space that strangers cannot exhaust: every cost a visitor can cause is checked before it is paid
(Hub checkpoints from the Hub's metadata, models from their weights' header, images from their header, npz
members from the zip directory), what visitors leave has one disk budget and goes when their session ends,
training is shared fairly, and no visitor text renders as markup nor any message names a server path."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import struct
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from czsl_models.models.checkpoints import CheckpointError, load_model
from local_hub import LocalHub

OWNER_TOKEN = "hf_OWNER_secret_token_0123456789"


def write_safetensors(path: Path, shapes: dict[str, list[int]], with_data: bool = True) -> None:
    """A .safetensors file whose header declares these float32 shapes (zeros as data, or only the header)."""
    header, offset = {}, 0
    for name, shape in shapes.items():
        size = int(np.prod(shape)) * 4
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(offset if with_data else 0))


@pytest.fixture()
def hub(tmp_path, monkeypatch):
    """The local Hub stand-in, with the app configured as a Space whose host's HF_TOKEN is set."""
    from huggingface_hub import constants

    local = LocalHub()
    monkeypatch.setenv("SPACE_ID", "owner/czsl-demo")
    monkeypatch.setenv("HF_TOKEN", OWNER_TOKEN)
    monkeypatch.setenv("CZSL_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setattr(constants, "ENDPOINT", local.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", local.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    yield local
    local.close()


def test_a_hub_checkpoint_is_checked_from_metadata_before_anything_is_downloaded(hub, tmp_path):
    from czsl_models.hosting.confinement import download_repo

    good = tmp_path / "good"
    load_model("msci", backbone="tiny", train_states=["a", "b"], train_objects=["x"]).save_pretrained(good)
    hub.add("someone/good", good)
    folder = download_repo("someone/good")
    assert (folder / "model.safetensors").is_file() and len(hub.downloads()) == 3

    before = len(hub.downloads())
    hub.add("someone/huge", good, declared={"model.safetensors": 5_000_000_000})
    with pytest.raises(CheckpointError, match=r"5,000 MB to download; .* at most 1,000 MB"):
        download_repo("someone/huge")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text(json.dumps({"model_type": "msci", "backbone": "tiny"}))
    write_safetensors(empty / "model.safetensors", {"w": [0, 65536], "v": [2, 2]})
    hub.add("someone/empty-tensors", empty)
    with pytest.raises(CheckpointError, match=r"empty tensor of shape \(0, 65536\)"):
        download_repo("someone/empty-tensors")
    many = tmp_path / "many"
    many.mkdir()
    (many / "config.json").write_text("{}")
    write_safetensors(many / "model.safetensors", {f"w{i}": [60000, 60000] for i in range(2)}, with_data=False)
    hub.add("someone/many-parameters", many, declared={"model.safetensors": 1000})
    with pytest.raises(CheckpointError, match="declares more than 400,000,000 parameters"):
        download_repo("someone/many-parameters")
    hub.add("someone/no-weights", tmp_path / "empty", declared={})
    (tmp_path / "no-weights").mkdir()
    (tmp_path / "no-weights" / "config.json").write_text("{}")
    hub.add("someone/no-weights", tmp_path / "no-weights")
    with pytest.raises(CheckpointError, match="has no model.safetensors"):
        download_repo("someone/no-weights")
    with pytest.raises(CheckpointError, match="No model repo someone/absent"):
        download_repo("someone/absent")
    assert len(hub.downloads()) == before, "refused repos: not one file downloaded"
    assert all(OWNER_TOKEN not in headers.get("authorization", "") for _, _, headers in hub.requests)


def test_the_host_sets_the_checkpoint_size_cap(hub, tmp_path, monkeypatch):
    from czsl_models.hosting.confinement import download_repo

    good = tmp_path / "good"
    load_model("refiner", backbone="tiny").save_pretrained(good)
    hub.add("someone/good", good)
    monkeypatch.setenv("CZSL_MAX_CHECKPOINT_MB", "0.01")
    with pytest.raises(CheckpointError, match=r"at most 0 MB \(CZSL_MAX_CHECKPOINT_MB\)"):
        download_repo("someone/good")
    assert not hub.downloads()


def test_a_config_describing_a_larger_model_than_its_weights_is_refused_before_it_is_built(tmp_path, monkeypatch):
    from czsl_models.models import build_budget

    folder = tmp_path / "edited"
    load_model("msci", backbone="tiny", train_states=["a", "b"], train_objects=["x"]).save_pretrained(folder)
    assert load_model(checkpoint=folder).name == "msci"  # the honest checkpoint loads within its budget
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(dict(config, mlp_ratio=4096, gate_hidden=4096)))
    monkeypatch.setattr(build_budget, "BUILD_SLACK_BYTES", 16 << 20)  # the tiny model's budget: its size + 16 MB
    seen = []
    real = build_budget.AllocationBudget.__torch_function__

    def recording(self, func, types, args=(), kwargs=None):
        seen.append(self.used)
        return real(self, func, types, args, kwargs)

    monkeypatch.setattr(build_budget.AllocationBudget, "__torch_function__", recording)
    with pytest.raises(CheckpointError, match="describes a larger model than its weights file holds"):
        load_model(checkpoint=folder)
    budget = 2 * 4 * 200_000 + (16 << 20)
    assert max(seen) < budget + 4096 * 4096 * 4 * 4096, "refused at the first tensor past the budget"


def test_image_decode_memory_is_bounded_from_the_header_whatever_the_mode():
    from czsl_models.inputs.images import ImageError, load_image

    buffer = io.BytesIO()
    Image.new("RGBA", (7745, 7745)).save(buffer, "PNG")
    assert len(buffer.getvalue()) < 300_000  # a small upload...
    with pytest.raises(ImageError, match=r"7,745 x 7,745 pixels in RGBA and would take 240 MB to open"):
        load_image(buffer.getvalue())  # ...refused before 240 MB are decoded
    small = io.BytesIO()
    Image.new("RGBA", (300, 200)).save(small, "PNG")
    assert load_image(small.getvalue()).mode == "RGB"


def test_npz_members_are_checked_by_type_and_declared_size_before_reading(tmp_path):
    from czsl_models.hosting.safe_npz import NpzTooLarge, check_npz

    path = tmp_path / "scores.npz"
    with zipfile.ZipFile(path, "w") as archive:
        buffer = io.BytesIO()
        np.save(buffer, np.zeros(3))
        archive.writestr("scores.npy", buffer.getvalue())
        archive.writestr("padding.bin", b"\0" * 1000)
    with pytest.raises(NpzTooLarge, match="holds 'padding.bin', which is not a .npy array"):
        check_npz(path)


def _aged(folder: Path, seconds_ago: float, size: int = 1000) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data").write_bytes(b"x" * size)
    stamp = time.time() - seconds_ago
    for path in (folder / "data", folder):
        os.utime(path, (stamp, stamp))
    return folder


def test_one_disk_budget_prunes_visitors_leftovers_least_recently_used_first(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from czsl_models.hosting import budget

    monkeypatch.setenv("CZSL_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("CZSL_DATA_DIR", str(tmp_path / "uploads"))
    monkeypatch.setenv("CZSL_CACHE_DIR", str(tmp_path / "features"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    host_checkpoint = _aged(tmp_path / "weights" / "host-model", 9000)
    oldest = _aged(tmp_path / "weights" / ".visitors" / "v1" / "msci-run", 5000)
    upload = _aged(tmp_path / "uploads" / "v2" / "fruit", 4000)
    features = _aged(tmp_path / "features" / "abc", 3000)
    repo = _aged(tmp_path / "hub" / "models--someone--msci" / "snapshots" / "1", 2000).parent.parent
    (repo / "snapshots" / "1" / "config.json").write_text('{"model_type": "msci"}')
    for path in (repo / "snapshots" / "1", repo / "snapshots", repo):
        os.utime(path, (time.time() - 2000,) * 2)
    backbone = _aged(tmp_path / "hub" / "models--laion--clip" / "snapshots" / "1", 9000)
    fresh = _aged(tmp_path / "weights" / ".visitors" / "v3" / "new-run", 10)

    assert {entry.path for entry in budget.visitor_leftovers()} == {oldest, upload, features, repo, fresh}
    deleted = budget.keep_disk_budget(max_bytes=2500)
    assert deleted == [oldest, upload, features]  # oldest first, until the rest fit
    assert repo.is_dir() and fresh.is_dir() and host_checkpoint.is_dir() and backbone.is_dir()
    budget.mark_in_use([repo])
    assert budget.keep_disk_budget(max_bytes=0) == []  # in use, or used in the last two minutes: kept
    budget.release([repo])
    assert budget.keep_disk_budget(max_bytes=0) == [repo]


def test_the_disk_budget_is_host_settable_with_a_default_on_a_space(monkeypatch):
    from czsl_models.hosting.budget import disk_budget_bytes

    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.delenv("CZSL_DISK_BUDGET_GB", raising=False)
    assert disk_budget_bytes() is None  # locally, the person at the machine owns every file
    monkeypatch.setenv("SPACE_ID", "owner/demo")
    assert disk_budget_bytes() == 20_000_000_000
    monkeypatch.setenv("CZSL_DISK_BUDGET_GB", "2.5")
    assert disk_budget_bytes() == 2_500_000_000


def test_a_visitors_files_go_when_their_session_ends_unless_a_run_still_uses_them(tmp_path, monkeypatch):
    from czsl_models.hosting import budget

    monkeypatch.setenv("SPACE_ID", "owner/demo")
    monkeypatch.setenv("CZSL_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("CZSL_DATA_DIR", str(tmp_path / "uploads"))
    run = _aged(tmp_path / "weights" / ".visitors" / "v1" / "run", 0)
    upload = _aged(tmp_path / "uploads" / "v1" / "zip", 0)
    other = _aged(tmp_path / "uploads" / "v2" / "zip", 0)
    budget.mark_in_use([run])
    assert budget.forget_visitor("v1") == [tmp_path / "uploads" / "v1"]
    assert run.is_dir() and not upload.exists() and other.is_dir()
    budget.release([run])
    assert budget.forget_visitor("v1") == [tmp_path / "weights" / ".visitors" / "v1"]
    assert budget.forget_visitor("") == []  # the host's files never


def test_the_training_queue_is_fair_and_visible():
    from czsl_models.hosting.training_queue import QueueError, TrainingQueue

    queue = TrainingQueue(slots=1, max_waiting=2)
    assert queue.request("a") == 0
    assert queue.request("b") == 1 and queue.request("c") == 2
    with pytest.raises(QueueError, match="still going on"):
        queue.request("a")
    with pytest.raises(QueueError, match="already waiting"):
        queue.request("b")
    with pytest.raises(QueueError, match="queue is full"):
        queue.request("d")
    assert queue.leave("b") and queue.place("c") == 1
    assert queue.finished("a") == "c" and queue.place("c") is None
    assert queue.finished("c") is None and queue.request("d") == 0
    queue._seen["d"] -= 100
    assert queue.idle(50) == ["d"]


def test_training_caps_are_host_settable_and_on_by_default_on_a_space(monkeypatch):
    from czsl_models.hosting.training_queue import TrainingLimits, training_limits

    for name in ("SPACE_ID", "CZSL_MAX_TRAIN_EPOCHS", "CZSL_MAX_TRAIN_MINUTES", "CZSL_TRAIN_IDLE_MINUTES"):
        monkeypatch.delenv(name, raising=False)
    assert training_limits() == TrainingLimits(None, None, None)
    monkeypatch.setenv("SPACE_ID", "owner/demo")
    assert training_limits() == TrainingLimits(30, 1800.0, 600.0)
    monkeypatch.setenv("CZSL_MAX_TRAIN_EPOCHS", "5")
    monkeypatch.setenv("CZSL_MAX_TRAIN_MINUTES", "0")
    assert training_limits() == TrainingLimits(5, None, 600.0)


def test_runs_queue_with_a_place_are_capped_and_stop_when_their_visitor_leaves(tiny_backbone, tmp_path, monkeypatch):
    from czsl_models.ui.state import AppState
    from czsl_models.ui.train import progress_html
    from czsl_models.ui.training_runs import TrainingManager

    monkeypatch.setenv("SPACE_ID", "owner/demo")
    monkeypatch.setenv("CZSL_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("CZSL_CACHE_DIR", str(tmp_path / "features"))
    monkeypatch.setenv("CZSL_MAX_TRAIN_EPOCHS", "1000")  # far more than 3 s of training on any machine
    monkeypatch.setenv("CZSL_MAX_TRAIN_MINUTES", str(3 / 60))  # 3 seconds
    manager = TrainingManager(AppState(tiny_backbone), max_runs=1)
    spec = "synthetic:shapes?images_per_pair=5"
    first = manager.start("msci", spec, "shapes", "fast", 5000, None, visitor="a")
    assert "at most 1000 epochs per run" in first.limit_note
    manager.limits = dataclasses.replace(manager.limits, max_seconds=None)  # the next runs: only leaving stops them
    second = manager.start("refiner", spec, "shapes", "fast", 1, None, visitor="b")
    assert second.place == 1 and second.running
    assert "you are next (number 1 in the queue)" in progress_html(manager.snapshot("b"))
    third = manager.start("svip", spec, "shapes", "fast", 1, None, visitor="c")
    assert manager.snapshot("c").place == 2
    manager.leave("c")  # closed the page while waiting
    assert not manager.snapshot("c").running and manager.queue.place("c") is None
    deadline = time.monotonic() + 240
    while manager.snapshot("a").running and time.monotonic() < deadline:
        time.sleep(0.5)
    ended = manager.snapshot("a")
    assert not ended.running and "limit of 3 s per run" in ended.limit_note, ended
    assert manager.snapshot("b").place is None  # its turn came by itself
    manager.leave("b")
    assert manager.wait(timeout=240)
    assert "visitor left" in manager.snapshot("b").limit_note
    assert "Stopped: its visitor left." in progress_html(manager.snapshot("c")) and third.ended


def test_visitor_text_never_renders_as_markup_and_messages_name_no_server_path(tmp_path):
    from czsl_models.data import DatasetError, import_zip
    from czsl_models.models.base import RankedPair
    from czsl_models.ui.compare import inputs_summary
    from czsl_models.ui.differences import comparison_headline
    from czsl_models.ui.text import escape_html, hide_server_paths

    line = inputs_summary(None, "[click](http://evil.example) **bold**", "<img src=x>")
    assert "[click](" not in line and "**bold**" not in line and "<img" not in line
    prediction = SimpleNamespace(ranking=[RankedPair(state="[x](http://e)", object="**y**", score=1.0)])
    headline = comparison_headline({"clip": prediction, "msci": prediction}, ["clip", "msci"], {})
    assert "[x](" not in headline and "\\*\\*y\\*\\*" in headline
    assert escape_html("it's <b>") == "it's &lt;b&gt;"  # one layer: no &#x27; for anyone
    assert hide_server_paths("cannot read /srv/app/runs/x.zip, see https://hf.co/a/b") == \
        "cannot read x.zip, see https://hf.co/a/b"
    not_zip = tmp_path / "deep" / "folder" / "upload.zip"
    not_zip.parent.mkdir(parents=True)
    not_zip.write_bytes(b"not a zip")
    with pytest.raises(DatasetError) as error:
        import_zip(not_zip, tmp_path / "out")
    assert str(tmp_path) not in str(error.value) and "upload.zip" in str(error.value)


def test_checkpoint_menus_offer_names_not_server_paths_on_a_space(tiny_backbone, tmp_path, monkeypatch):
    from czsl_models.ui.state import AppState

    monkeypatch.setenv("CZSL_WEIGHTS_DIR", str(tmp_path / "weights"))
    model = load_model("msci", backbone="tiny")
    model.training_steps += 1
    model.save_pretrained(tmp_path / "weights" / "msci-host")
    state = AppState(tiny_backbone, weights=tmp_path / "weights")
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert state.checkpoint_choices("msci")[1][1] == str(tmp_path / "weights" / "msci-host")
    monkeypatch.setenv("SPACE_ID", "owner/demo")
    value = state.checkpoint_choices("msci")[1][1]
    assert value == "msci-host"
    assert state.get_model("msci", value).training_steps == 1
