"""Shared fixtures: everything offline, on the tiny random backbone and real example photos."""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("CZSL_DEVICE", "cpu")
# The suite's reference numbers are float32 on every machine; tests of other precisions ask for them.
os.environ.setdefault("CZSL_BACKBONE_PRECISION", "float32")

from pathlib import Path

import pytest
from PIL import Image

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="session")
def tiny_backbone():
    """The shared tiny random OpenCLIP backbone."""
    from czsl_models.backbones import get_backbone

    return get_backbone("tiny")


@pytest.fixture(scope="session")
def example_paths() -> list[Path]:
    """The real example photos."""
    paths = sorted(EXAMPLES.glob("*.jpg"))
    assert len(paths) >= 4
    return paths


@pytest.fixture(scope="session")
def example_images(example_paths) -> list[Image.Image]:
    """The example photos as RGB images."""
    return [Image.open(path).convert("RGB") for path in example_paths]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def served_app(root: Path, **launch_extra):
    """The app on the tiny backbone, served on 127.0.0.1, its folders under root: (demo, state, url); launch_extra
    goes to launch (e.g. mcp_server=True)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CZSL_WEIGHTS_DIR", str(root / "weights"))
        patch.setenv("CZSL_DATA_DIR", str(root / "datasets"))
        patch.setenv("CZSL_CACHE_DIR", str(root / "cache"))
        # The app tests check the wiring with one-epoch runs: a quarter of the default shapes is enough.
        patch.setattr("czsl_models.ui.datasets.SYNTHETIC_SPEC", "synthetic:shapes?images_per_pair=5")
        from czsl_models.ui import create_app, launch_options

        demo, state = create_app("tiny")
        port = free_port()
        demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                    **launch_options(), **launch_extra)
        try:
            yield demo, state, f"http://127.0.0.1:{port}/"
        finally:
            state.training.stop()
            state.training.wait(timeout=60)
            demo.close()
