"""The app hosted for strangers: the real app is started as a Space would start it (SPACE_ID set, the owner's
HF_TOKEN in the environment) with all Hub traffic pointed at a local recorder of request headers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
OWNER_TOKEN = "hf_OWNER_secret_token_0123456789"
VISITOR_TOKEN = "hf_visitor_own_token_9876543210"
SLOW = {"timeout": 120}  # the machine is shared; a busy app answers late, not wrongly


class Recorder:
    """A local stand-in for the Hub: remembers every request's headers and answers 401, except the few OpenID
    routes a Space's sign-in uses, where it plays Hugging Face's login and hands out the visitor's token."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode(errors="replace") if length else ""
                recorder.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
                status, answer = recorder.openid_answer(self.path, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _answer

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def openid_answer(self, path: str, body: str) -> tuple[int, dict]:
        """The provider's discovery document, and a token for the one-time code `code-<token>` (the visitor's)."""
        if path == "/.well-known/openid-configuration":
            return 200, {"issuer": self.url, "authorization_endpoint": f"{self.url}/oauth/authorize",
                         "token_endpoint": f"{self.url}/oauth/token", "userinfo_endpoint": f"{self.url}/oauth/userinfo",
                         "jwks_uri": f"{self.url}/oauth/jwks"}
        if path == "/oauth/token":
            code = urllib.parse.parse_qs(body).get("code", [""])[0]
            if code.startswith("code-"):
                return 200, {"access_token": code[len("code-"):], "token_type": "bearer", "expires_in": 3600,
                             "scope": "openid profile write-repos"}
        return 401, {"error": "Invalid credentials"}

    def tokens_seen(self) -> set[str]:
        """Every Authorization header value the recorder received."""
        return {headers.get("authorization", "") for _, _, headers in self.requests}


def sign_in(url: str, token: str) -> dict[str, str]:
    """Sign in to the app as a browser does (its login route, then the provider's redirect back with a code);
    returns the headers that carry the signed-in session cookie."""
    import httpx

    with httpx.Client(base_url=url, follow_redirects=False, timeout=60) as browser:
        to_provider = browser.get("login/huggingface")
        assert to_provider.status_code in (302, 307), to_provider.text
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(to_provider.headers["location"]).query)
        back = urllib.parse.urlsplit(query["redirect_uri"][0])
        params = {**urllib.parse.parse_qs(back.query), "code": f"code-{token}", "state": query["state"][0]}
        callback = browser.get(back.path, params=params, headers={"Cookie": f"session={to_provider.cookies['session']}"})
        assert callback.status_code in (302, 307) and "session" in callback.cookies, callback.text
        return {"Cookie": f"session={callback.cookies['session']}"}


def _make_host_checkpoint(weights: Path) -> Path:
    from czsl_models.models.checkpoints import load_model

    folder = weights / "msci-host-shapes"
    load_model("msci", backbone="tiny").save_pretrained(folder)
    return folder


def start_space(tmp: Path, recorder: Recorder, backbone: str = "tiny", unset: tuple[str, ...] = (),
                **extra_env: str) -> tuple[subprocess.Popen, str]:
    """The real app in its own process, configured as a Space; returns (process, url) once it serves. `unset`
    names settings left to the app (e.g. the folders, for persistent storage to choose)."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key not in ("HF_HUB_OFFLINE", "SYSTEM")}
    env.update(SPACE_ID="owner/czsl-demo", HF_TOKEN=OWNER_TOKEN, HF_ENDPOINT=recorder.url, HF_HOME=str(tmp / "hf"),
               CZSL_WEIGHTS_DIR=str(tmp / "weights"), CZSL_DATA_DIR=str(tmp / "datasets"),
               CZSL_CACHE_DIR=str(tmp / "cache"), CZSL_DEVICE="cpu", HF_HUB_DISABLE_TELEMETRY="1")
    env.update(extra_env)
    env = {key: value for key, value in env.items() if key not in unset}
    log = open(tmp / f"app-{port}.log", "w")
    process = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--backbone", backbone, "--host", "127.0.0.1",
                                "--port", str(port)], env=env, cwd=tmp, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError((tmp / f"app-{port}.log").read_text()[-3000:])
        try:
            with urllib.request.urlopen(url, timeout=5):
                return process, url
        except OSError:
            time.sleep(1)
    process.kill()
    raise AssertionError("the app did not start in time")


@pytest.fixture(scope="module")
def recorder():
    """The recording stand-in for the Hub."""
    hub = Recorder()
    yield hub
    hub.server.shutdown()


@pytest.fixture(scope="module")
def space(tmp_path_factory, recorder):
    """The app as a Space without sign-in configured: (url, root folder)."""
    tmp = tmp_path_factory.mktemp("space")
    _make_host_checkpoint(tmp / "weights")
    process, url = start_space(tmp, recorder)
    yield url, tmp
    process.terminate()
    process.wait(30)


@pytest.fixture(scope="module")
def oauth_space(tmp_path_factory, recorder):
    """The app as a Space whose README turned on Hugging Face sign-in (the variables Spaces set): (url, root)."""
    tmp = tmp_path_factory.mktemp("oauth-space")
    _make_host_checkpoint(tmp / "weights")
    process, url = start_space(tmp, recorder, SYSTEM="spaces", OAUTH_CLIENT_ID="client-id",
                               OAUTH_CLIENT_SECRET="client-secret", OAUTH_SCOPES="openid profile write-repos",
                               OPENID_PROVIDER_URL=recorder.url)
    yield url, tmp
    process.terminate()
    process.wait(30)


# ------------------------------------------------------------------ publishing and Hub reads
def test_a_space_without_sign_in_refuses_to_publish_and_never_sends_the_owner_token(space, recorder):
    url, tmp = space
    client = Client(url, verbose=False, httpx_kwargs=SLOW)
    host = str(tmp / "weights" / "msci-host-shapes")
    with pytest.raises(AppError, match="Publishing is off on this Space: it has no Hugging Face sign-in"):
        client.predict(host, "owner/stolen", False, api_name="/train_publish")
    # A repo id typed as a checkpoint is read anonymously: the recorder sees the request, never the owner's token.
    before = len(recorder.requests)
    refused = _refusal(client, "owner/private-model")
    assert "owner/private-model" in refused, refused
    assert str(tmp) not in refused and "Traceback" not in refused
    assert len(recorder.requests) > before, "the Hub read went to the recorder"
    assert not any(OWNER_TOKEN in value for value in recorder.tokens_seen())
    assert all(headers.get("authorization") is None for _, _, headers in recorder.requests[before:])


def test_anonymous_publish_on_a_sign_in_space_says_to_sign_in(oauth_space, recorder):
    url, tmp = oauth_space
    anonymous = Client(url, verbose=False, httpx_kwargs=SLOW)
    for checkpoint in (str(tmp / "weights" / "msci-host-shapes"), "/etc", ""):
        with pytest.raises(AppError, match="Sign in with Hugging Face"):
            anonymous.predict(checkpoint, "owner/stolen", False, api_name="/train_publish")
    assert not any(OWNER_TOKEN in value for value in recorder.tokens_seen())


def test_a_signed_in_visitor_publishes_only_their_own_checkpoints_with_their_own_token(oauth_space, recorder):
    url, tmp = oauth_space
    visitor = Client(url, verbose=False, headers=sign_in(url, VISITOR_TOKEN), httpx_kwargs=SLOW)
    other = Client(url, verbose=False, headers=sign_in(url, "hf_another_visitor_token"), httpx_kwargs=SLOW)
    with pytest.raises(AppError, match="Choose one of your trained models"):
        visitor.predict(str(tmp / "weights" / "msci-host-shapes"), "visitor/copy", False, api_name="/train_publish")
    outputs = _train_one_epoch(visitor)
    assert "Finished" in outputs[0] and str(tmp) not in outputs[0], outputs[0]
    mine = outputs[-1]["choices"]
    assert len(mine) == 1, mine
    checkpoint = mine[0][1]
    assert other.predict(api_name="/train_status")[-1]["choices"] == [], "another visitor's checkpoint is not offered"
    with pytest.raises(AppError, match="Choose one of your trained models"):
        other.predict(checkpoint, "another/model", False, api_name="/train_publish")
    before = len(recorder.requests)
    with pytest.raises(AppError, match="could not publish to visitor/model"):
        visitor.predict(checkpoint, "visitor/model", False, api_name="/train_publish")
    sent = recorder.requests[before:]
    assert sent and all(headers.get("authorization") == f"Bearer {VISITOR_TOKEN}" for _, _, headers in sent), sent
    assert not any(OWNER_TOKEN in value for value in recorder.tokens_seen())


# ------------------------------------------------------------------ isolation
def _predict(client: Client, checkpoint: str = "", model: str = "msci"):
    from gradio_client import handle_file

    from czsl_models.ui.inputs import WORLD_OPEN

    return client.predict(handle_file(str(sorted((ROOT / "examples").glob("*.jpg"))[0])), model,
                          checkpoint, "red, blue", "circle, square", WORLD_OPEN, "", 3, 0.0, "", api_name="/predict")


def _refusal(client: Client, checkpoint: str) -> str:
    """The message /predict shows for a checkpoint (it answers with a message, not an error)."""
    return json.dumps(_predict(client, checkpoint=checkpoint)[0])


def _train_one_epoch(client: Client, model: str = "msci") -> list:
    from czsl_models.ui.datasets import SOURCE_SYNTHETIC

    client.predict(SOURCE_SYNTHETIC, None, "", model, "fast", 1, 0.001, api_name="/train_start")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        outputs = client.predict(api_name="/train_status")
        if "Finished" in outputs[0] or "failed" in outputs[0]:
            return outputs
        time.sleep(1)
    raise AssertionError("training did not end")


def _presets(client: Client) -> list[str]:
    return [choice[0] for choice in client.predict("msci", "", api_name="/refresh_predict_menus")[1]["choices"]]


def _fruit_zip(path: Path) -> Path:
    import io
    import itertools
    import zipfile

    from PIL import Image

    with zipfile.ZipFile(path, "w") as archive:
        for (state, obj), k in itertools.product(itertools.product(["red", "green"], ["apple", "pear"]), range(3)):
            buffer = io.BytesIO()
            Image.new("RGB", (32, 32), (60 * k, 90, 30)).save(buffer, format="PNG")
            archive.writestr(f"{state} {obj}/{k}.png", buffer.getvalue())
    return path


def test_two_visitors_never_see_or_stop_each_others_runs_uploads_or_words(space, tmp_path):
    from gradio_client import handle_file

    from czsl_models.ui.datasets import SOURCE_SYNTHETIC, SOURCE_ZIP

    url, tmp = space
    first, second = Client(url, verbose=False, httpx_kwargs=SLOW), Client(url, verbose=False, httpx_kwargs=SLOW)
    first.predict(SOURCE_SYNTHETIC, None, "", "refiner", "fast", 100, 0.001, api_name="/train_start")
    assert "No training has run yet" in second.predict(api_name="/train_status")[0]
    second.predict(api_name="/train_stop")  # stops nothing of the first visitor's
    # The one slot is taken: the second visitor's run waits its turn, in sight, once.
    queued = second.predict(SOURCE_SYNTHETIC, None, "", "svip", "fast", 1, 0.001, api_name="/train_start")[0]
    assert "number 1 in the queue" in queued, queued
    with pytest.raises(AppError, match="already waiting for its turn"):
        second.predict(SOURCE_SYNTHETIC, None, "", "svip", "fast", 1, 0.001, api_name="/train_start")
    second.predict(api_name="/train_stop")  # leaves the queue; the first visitor's run goes on
    assert "Left the queue" in second.predict(api_name="/train_status")[0]
    status = first.predict(api_name="/train_status")[0]
    assert "Stopping" not in status and "Stopped" not in status, status
    # Words of a dataset one visitor loaded are offered to that visitor only.
    assert any(name.startswith("Dataset: synthetic") for name in _presets(first))
    # An upload belongs to its visitor, in a folder of its own.
    summary = first.predict("A model on a dataset", "clip", "", SOURCE_ZIP, handle_file(str(_fruit_zip(tmp_path / "fruit.zip"))),
                            "", "test", False, None, False, api_name="/evaluate")[0]
    assert "fruit" in summary and str(tmp) not in summary
    assert any(name.startswith("Dataset: fruit") for name in _presets(first))
    assert not any(name.startswith("Dataset: fruit") for name in _presets(second))
    owners = [folder for folder in (tmp / "datasets").iterdir()]
    assert len(owners) == 1 and [p.name[:5] for p in owners[0].iterdir()] == ["fruit"]
    # A broken upload leaves nothing behind.
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04 not a zip at all")
    with pytest.raises(AppError, match="not a readable zip"):
        second.predict("A model on a dataset", "clip", "", SOURCE_ZIP, handle_file(str(broken)), "", "test", False,
                       None, False, api_name="/evaluate")
    assert [folder for folder in (tmp / "datasets").iterdir()] == owners
    assert not list((tmp / "datasets").glob("*/.*")), "no staging folder is left"
    first.predict(api_name="/train_stop")
    deadline = time.monotonic() + 120
    while "Stopp" not in (status := first.predict(api_name="/train_status")[0]) or "Stopping" in status:
        assert time.monotonic() < deadline, status
        time.sleep(1)


def test_checkpoint_paths_outside_the_weights_folder_get_one_message(space):
    url, tmp = space
    client = Client(url, verbose=False, httpx_kwargs=SLOW)
    answers = set()
    for path in ("/etc", "/nonexistent", str(tmp), str(tmp / "weights" / ".." / "weights" / ".." / "cache"),
                 "../../etc", "~", str(tmp / "weights" / ".visitors")):
        answers.add(_refusal(client, path))
    assert len(answers) == 1, answers
    assert "Choose trained weights from the list" in answers.pop()
    # The host's checkpoint in the weights folder loads, by path or by name.
    for value in ("msci-host-shapes", str(tmp / "weights" / "msci-host-shapes")):
        refused = _refusal(client, value)
        assert "Choose trained weights" not in refused and "not a checkpoint" not in refused, refused


# ------------------------------------------------------------------ switches and storage
def test_switches_default_to_safe_values_on_a_space(monkeypatch):
    from czsl_models.hosting import space as hosting

    for name in ("SPACE_ID", "SYSTEM", "SPACES_ZERO_GPU", "CZSL_ENABLE_TRAINING", "CZSL_ENABLE_PUBLISHING",
                 *hosting.OAUTH_ENV):
        monkeypatch.delenv(name, raising=False)
    assert hosting.publishing_disabled_reason() is None and hosting.training_disabled_reason() is None
    assert hosting.hub_read_token() is None, "locally the CLI's login is used as before"
    monkeypatch.setenv("SPACE_ID", "owner/space")
    assert "no Hugging Face sign-in" in hosting.publishing_disabled_reason()
    assert hosting.hub_read_token() is False, "anonymous on a Space, never HF_TOKEN"
    with hosting.visitor_hub_login(type("Token", (), {"token": "hf_visitor"})()):
        assert hosting.hub_read_token() == "hf_visitor"
    monkeypatch.setenv("SYSTEM", "spaces")
    for name in hosting.OAUTH_ENV:
        monkeypatch.setenv(name, "set")
    assert hosting.publishing_disabled_reason() is None
    with pytest.raises(hosting.SignInRequired, match="Sign in with Hugging Face"):
        hosting.publish_token(None)
    with pytest.raises(hosting.SignInRequired):
        hosting.publish_token(type("Token", (), {"token": hosting.LOCAL_MOCK_TOKEN})())
    assert hosting.publish_token(type("Token", (), {"token": "hf_visitor"})()) == "hf_visitor"
    monkeypatch.setenv("CZSL_ENABLE_PUBLISHING", "0")
    with pytest.raises(hosting.SwitchedOff):
        hosting.publish_token(type("Token", (), {"token": "hf_visitor"})())
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    assert "ZeroGPU" in hosting.training_disabled_reason()
    monkeypatch.setenv("CZSL_ENABLE_TRAINING", "1")
    assert hosting.training_disabled_reason() is None


def test_persistent_storage_holds_checkpoints_and_caches_but_leaves_the_hub_cache(monkeypatch, tmp_path):
    from huggingface_hub import constants

    from czsl_models.hosting import space as hosting

    for name in ("CZSL_WEIGHTS_DIR", "CZSL_CACHE_DIR", "CZSL_DATA_DIR", "HF_HOME", "HF_HUB_CACHE"):
        monkeypatch.delenv(name, raising=False)
    hub_cache = constants.HF_HUB_CACHE
    monkeypatch.setenv("SPACE_ID", "owner/space")
    monkeypatch.setenv("CZSL_PERSISTENT_DIR", str(tmp_path / "missing"))
    assert hosting.configure_storage() is None and "no persistent storage" in hosting.storage_note()
    monkeypatch.setenv("CZSL_PERSISTENT_DIR", str(tmp_path))
    assert hosting.configure_storage() == tmp_path and hosting.storage_note() is None
    assert os.environ["CZSL_WEIGHTS_DIR"] == str(tmp_path / "weights")
    assert os.environ["CZSL_CACHE_DIR"] == str(tmp_path / "feature-cache")
    assert os.environ["CZSL_DATA_DIR"] == str(tmp_path / "datasets")
    # The Hub cache (what preload_from_hub filled at build time) is neither moved nor patched at run time.
    assert "HF_HOME" not in os.environ and "HF_HUB_CACHE" not in os.environ
    assert constants.HF_HUB_CACHE == hub_cache


PRELOADED_COMMIT = "0123456789abcdef0123456789abcdef01234567"


def test_with_a_data_volume_the_preloaded_backbone_is_used_and_nothing_downloads(tmp_path, recorder):
    """A Space with persistent storage and a backbone preloaded into the image's Hub cache starts on that
    backbone without fetching a file (the Hub is the recorder), and puts nothing of the Hub cache on /data."""
    from czsl_models.backbones import get_backbone, save_backbone_local

    # What preload_from_hub leaves in the image: the default Hub cache (HF_HOME unset, as on a Space) holding the repo.
    image_cache = tmp_path / "image-cache"
    repo = image_cache / "huggingface" / "hub" / "models--owner--tiny-clip"
    save_backbone_local(get_backbone("tiny", "cpu"), repo / "snapshots" / PRELOADED_COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(PRELOADED_COMMIT)
    volume = tmp_path / "data"
    volume.mkdir()
    before = len(recorder.requests)
    process, url = start_space(tmp_path, recorder, backbone="hf-hub:owner/tiny-clip", XDG_CACHE_HOME=str(image_cache),
                               CZSL_PERSISTENT_DIR=str(volume),
                               unset=("HF_HOME", "HF_HUB_CACHE", "CZSL_WEIGHTS_DIR", "CZSL_DATA_DIR", "CZSL_CACHE_DIR"))
    try:
        page = Client(url, verbose=False).config
    finally:
        process.terminate()
        process.wait(timeout=60)
    texts = " ".join(str(c.get("props", {}).get("value", "")) for c in page["components"])
    assert "Backbone: `hf-hub:owner/tiny-clip`" in texts and "backbone-banner" not in str(page)
    files = [path for method, path, _ in recorder.requests[before:] if "/resolve/" in path and method == "GET"]
    assert files == [], recorder.requests[before:]
    assert not [p for p in volume.rglob("*") if "huggingface" in p.name or p.name.startswith("models--")]


def test_on_zero_gpu_the_train_tab_says_why_it_is_off(monkeypatch, tiny_backbone):
    from czsl_models.ui.blocks import build_app
    from czsl_models.ui.state import AppState

    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    demo = build_app(AppState(tiny_backbone), examples=[])
    texts = [block.value for block in demo.blocks.values() if getattr(block, "elem_id", None) == "train-off"]
    assert texts and "ZeroGPU" in texts[0] and "Train on your own machine" in texts[0]
    start = [block for block in demo.blocks.values() if getattr(block, "elem_id", None) == "train-start"][0]
    assert start.interactive is False


# ------------------------------------------------------------------ messages
def test_visitor_text_is_shown_as_text_and_errors_as_one_clean_line():
    import gradio as gr

    from czsl_models.ui.inputs import build_vocabulary, friendly_errors
    from czsl_models.ui.text import escape_markdown

    @friendly_errors
    def words(pairs):
        return build_vocabulary("red", "apple", "Only the pairs I list", pairs)

    with pytest.raises(gr.Error) as refused:
        words('<img src=x onerror=alert(1)> apple')
    assert "<img" not in refused.value.message and "&lt;img" in refused.value.message

    @friendly_errors
    def crashes():
        raise RuntimeError("/srv/secret/path/model.bin\nTraceback (most recent call last): ...")

    with pytest.raises(gr.Error) as crashed:
        crashes()
    assert "/srv" not in crashed.value.message and "Traceback" not in crashed.value.message
    assert "\n" not in crashed.value.message
    shown = escape_markdown("![x](http://e/x.png) [click](javascript:alert(1)) **bold** <b>")
    assert "](" not in shown.replace("\\](", "") and "<b>" not in shown and "\\*\\*bold\\*\\*" in shown


def test_numbers_that_mean_nothing_are_refused_plainly(capsys, example_paths):
    from czsl_models.cli import main
    from czsl_models.ui.inputs import as_float

    assert as_float("nan", 0.0) == 0.0 and as_float("inf", 1.0) == 1.0 and as_float("abc", 2.0) == 2.0
    for option, value, message in (("--top-k", "0", "must be at least 1"), ("--bias", "nan", "must be a finite number")):
        with pytest.raises(SystemExit) as exited:
            main(["predict", str(example_paths[0]), "--backbone", "tiny", option, value])
        assert exited.value.code == 2 and message in capsys.readouterr().err
