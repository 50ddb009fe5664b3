"""What changes when the app is hosted for strangers (a public Hugging Face Space): whose login publishes
and reads private Hub repos, what visitors may start, and where work is kept between restarts.

Nothing here imports huggingface_hub at module level (it is imported only where a function needs it)."""

from __future__ import annotations

import contextvars
import functools
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
OAUTH_ENV = ("OAUTH_CLIENT_ID", "OAUTH_CLIENT_SECRET", "OAUTH_SCOPES", "OPENID_PROVIDER_URL")
LOCAL_MOCK_TOKEN = "mock-oauth-token-for-local-dev"  # what Gradio's local sign-in puts in the session
PERSISTENT_DIR_ENV = "CZSL_PERSISTENT_DIR"
SPACES_PERSISTENT_DIR = "/data"  # where a Space's persistent storage is mounted
# ZeroGPU lends the GPU per call for this many seconds (a visitor's remaining quota must cover it): one photo and
# one photo through every model. Evaluate asks for what its work needs (evaluate_gpu_seconds).
GPU_SECONDS = {"predict": 30, "compare": 45}
GPU_SECONDS_MAX = 300  # the most ZeroGPU lends per call, to signed-in visitors
# Evaluate's estimate: loading the model and the text features, then per photo one backbone pass with decoding,
# and per photo x candidate pair the head's score. From the closed-world MIT-States test split (13k photos x 1962
# pairs, about two minutes on one GPU) with a margin of about 1.5; open-world splits grow with the pairs.
EVALUATE_SETUP_SECONDS = 15
EVALUATE_SECONDS_PER_PHOTO = 0.008
EVALUATE_SECONDS_PER_SCORE = 2e-6

HOST = ""  # the visitor of direct calls, the CLI and a local app: the person at the machine
_hub_token: contextvars.ContextVar[str | None] = contextvars.ContextVar("czsl_visitor_hub_token", default=None)
_visitor: contextvars.ContextVar[str] = contextvars.ContextVar("czsl_visitor", default=HOST)


class SignInRequired(PermissionError):
    """The action needs the visitor's own Hugging Face login; the message says how to sign in."""


class SwitchedOff(PermissionError):
    """The host switched this action off; the message says why."""


# ------------------------------------------------------------------ where the app runs
def on_space() -> bool:
    """True on a Hugging Face Space (SPACE_ID is set there), where visitors are strangers."""
    return bool(os.environ.get("SPACE_ID"))


def zero_gpu() -> bool:
    """True on a ZeroGPU Space, where the GPU is lent per call for a bounded time."""
    return os.environ.get("SPACES_ZERO_GPU", "").strip().lower() in _TRUE


def evaluate_gpu_seconds(passes: list[tuple[int, int]]) -> int:
    """The GPU seconds an evaluation needs, from its (photos, candidate pairs) passes (the validation pass that
    picks a feasibility threshold is a second one); at least 30 s. It may exceed GPU_SECONDS_MAX: callers refuse
    such work before asking for the GPU."""
    seconds = EVALUATE_SETUP_SECONDS + sum(photos * (EVALUATE_SECONDS_PER_PHOTO + pairs * EVALUATE_SECONDS_PER_SCORE)
                                           for photos, pairs in passes)
    return max(30, int(seconds + 0.999))


def env_switch(name: str, default: bool) -> bool:
    """A yes/no setting from the environment; anything unrecognised keeps the default."""
    value = os.environ.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    return default


def oauth_configured() -> bool:
    """True on a Space whose README asks for Hugging Face sign-in (`hf_oauth: true` sets these variables)."""
    return (on_space() and os.environ.get("SYSTEM") == "spaces"
            and all(os.environ.get(name) for name in OAUTH_ENV))


def visitors_isolated() -> bool:
    """Whether visitors are strangers (on a Space, or CZSL_ISOLATE_VISITORS=1): each one sees only what it
    started, uploaded or trained. Locally the one person at the machine sees everything it made."""
    return env_switch("CZSL_ISOLATE_VISITORS", on_space())


def current_visitor() -> str:
    """A short id of the visitor behind the running request (HOST when visitors are not isolated)."""
    return _visitor.get() if visitors_isolated() else HOST


@contextmanager
def as_visitor(visitor: str) -> Iterator[None]:
    """Within this block, current_visitor() is `visitor` (set by the UI for each browser session)."""
    reset = _visitor.set(visitor)
    try:
        yield
    finally:
        _visitor.reset(reset)


# ------------------------------------------------------------------ what visitors may do
def training_disabled_reason() -> str | None:
    """Why the Train tab is off here, or None when it is on (CZSL_ENABLE_TRAINING; off on ZeroGPU)."""
    if zero_gpu() and not env_switch("CZSL_ENABLE_TRAINING", False):
        return ("Training is off on this Space: it runs on ZeroGPU, which lends the GPU for a minute or two per "
                "request, far less than a training run needs. Train on your own machine (`python -m czsl_models "
                "train ...`) or on a Space with dedicated hardware, then load the weights here.")
    if not env_switch("CZSL_ENABLE_TRAINING", True):
        return "Training is switched off on this server by its host."
    return None


def publishing_disabled_reason() -> str | None:
    """Why publishing is off here, or None when it is on (CZSL_ENABLE_PUBLISHING; on a Space it needs sign-in)."""
    if not env_switch("CZSL_ENABLE_PUBLISHING", True):
        return "Publishing is switched off on this server by its host."
    if on_space() and not oauth_configured():
        return ("Publishing is off on this Space: it has no Hugging Face sign-in (its README needs `hf_oauth: true`), "
                "and it never publishes with its host's token. Publish from your own machine instead "
                "(`python -m czsl_models push ...`).")
    return None


def login_button_wanted() -> bool:
    """Whether to show the Hugging Face sign-in button: on a Space with sign-in configured; locally when this
    machine is logged in and online (Gradio's local sign-in asks the Hub who that login is when it starts)."""
    if publishing_disabled_reason():
        return False
    if on_space():
        return oauth_configured()
    return _local_login_works()


@functools.lru_cache(maxsize=1)
def _local_login_works() -> bool:
    from huggingface_hub import constants, get_token, whoami

    if constants.HF_HUB_OFFLINE or env_switch("HF_HUB_OFFLINE", False) or not get_token():
        return False
    try:
        return whoami().get("type") == "user"
    except Exception:  # no network, a revoked token...: Gradio's local sign-in would fail at launch the same way
        return False


def max_training_runs() -> int:
    """How many training runs may go on at once (CZSL_MAX_TRAINING_RUNS; default 1 on CPU, 2 with a GPU)."""
    try:
        return max(1, int(os.environ["CZSL_MAX_TRAINING_RUNS"]))
    except (KeyError, ValueError):
        pass
    try:
        import torch

        return 2 if torch.cuda.is_available() and os.environ.get("CZSL_DEVICE", "") != "cpu" else 1
    except ImportError:
        return 1


# ------------------------------------------------------------------ whose Hub login
def publish_token(oauth_token: object | None) -> str:
    """The token to publish with for this visitor: their own sign-in, never the server's HF_TOKEN.

    Locally, Gradio's sign-in stands for the machine's own login (`hf auth login` / HF_TOKEN), so the
    button's placeholder token is replaced by that; on a Space only a real OAuth token is accepted."""
    reason = publishing_disabled_reason()
    if reason:
        raise SwitchedOff(reason)
    token = getattr(oauth_token, "token", None) or None
    if not token:
        raise SignInRequired("Sign in with Hugging Face (the button above the Publish button) to publish: the "
                             "model goes to your own account, with your own login.")
    if token == LOCAL_MOCK_TOKEN:
        if on_space():
            raise SignInRequired("Sign in with Hugging Face again: this sign-in is not valid here.")
        from huggingface_hub import get_token

        local = get_token()
        if not local:
            raise SignInRequired("Log in to Hugging Face on this machine first (`hf auth login`), then sign in again.")
        return local
    return token


@contextmanager
def visitor_hub_login(oauth_token: object | None) -> Iterator[None]:
    """Within this block, Hub reads made for the visitor use their own sign-in (or none) on a Space."""
    token = getattr(oauth_token, "token", None) or None
    if token == LOCAL_MOCK_TOKEN:
        token = None
    reset = _hub_token.set(token)
    try:
        yield
    finally:
        _hub_token.reset(reset)


def hub_read_token() -> str | bool | None:
    """The `token=` for a Hub read made for the current visitor. Off a Space: None (huggingface_hub's default,
    the local login, as the CLI uses). On a Space: the visitor's own sign-in, else False (anonymous), so the
    host's HF_TOKEN never reaches a visitor's request."""
    if not on_space():
        return None
    return _hub_token.get() or False


def hub_token_fingerprint() -> str:
    """A short, non-reversible name for the credential of the current Hub reads (keys caches per login)."""
    import hashlib

    token = hub_read_token()
    if not isinstance(token, str):
        return "default" if token is None else "anonymous"
    return hashlib.sha256(token.encode()).hexdigest()[:16]


# ------------------------------------------------------------------ where work is kept
def persistent_root() -> Path | None:
    """A folder that survives restarts: CZSL_PERSISTENT_DIR, else a Space's /data when it is mounted writable."""
    configured = os.environ.get(PERSISTENT_DIR_ENV)
    candidate = Path(configured) if configured else (Path(SPACES_PERSISTENT_DIR) if on_space() else None)
    if candidate is None or not candidate.is_dir() or not os.access(candidate, os.W_OK):
        return None
    return candidate


def storage_note() -> str | None:
    """A sentence for the page when the app runs as a Space that keeps nothing between restarts, else None."""
    if on_space() and persistent_root() is None:
        return ("This Space has no persistent storage: models trained here and uploaded datasets are lost when it "
                "restarts. Publish what you want to keep to your own Hub account.")
    return None


def configure_storage() -> Path | None:
    """Point checkpoints, the feature cache and unpacked uploads at persistent storage when there is any
    (settings already made win); returns that folder.

    The Hugging Face cache stays where it is: on a Space it holds what `preload_from_hub` copied into the image
    at build time (the 1.7 GB backbone), and moving it to the volume would download all of that again on every
    fresh volume. Only what visitors and the host make must survive a restart, so only that goes to /data."""
    root = persistent_root()
    if root is None:
        return None
    for name, sub in (("CZSL_WEIGHTS_DIR", "weights"), ("CZSL_CACHE_DIR", "feature-cache"),
                      ("CZSL_DATA_DIR", "datasets")):
        os.environ.setdefault(name, str(root / sub))
    return root
