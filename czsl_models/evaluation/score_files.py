"""Reading a saved score matrix (.npz) for the metrics command, with its sizes checked first."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np


class MetricsInputError(ValueError):
    """A scores file cannot be evaluated; the message says why."""


REQUIRED_NPZ_KEYS = ("scores", "pairs", "labels", "seen")
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with entries, an empty zip
NPY_MAGIC = b"\x93NUMPY"


def load_metrics_inputs(path: Path) -> dict[str, Any]:
    """Read a scores .npz (scores, pairs, labels, seen; optional candidates, feasibility, threshold)."""
    try:
        with open(path, "rb") as handle:
            magic = handle.read(len(NPY_MAGIC))
    except FileNotFoundError:
        raise MetricsInputError(f"{path}: no such file") from None
    except OSError as error:
        raise MetricsInputError(f"{path}: cannot be read ({error})") from None
    if magic == NPY_MAGIC:
        raise MetricsInputError(f"{path}: expected an .npz archive of named arrays, found a single .npy array")
    if not magic.startswith(ZIP_MAGICS):
        raise MetricsInputError(f"{path}: not an .npz archive (numpy.savez writes one)")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise MetricsInputError(f"{path}: not a readable .npz archive ({error})") from None
    with archive:
        missing = [key for key in REQUIRED_NPZ_KEYS if key not in archive.files]
        if missing:
            raise MetricsInputError(
                f"{path}: missing array(s) {', '.join(missing)} "
                f"(needs {', '.join(REQUIRED_NPZ_KEYS)}; optional candidates, feasibility with threshold)"
            )
        try:
            arrays = {key: archive[key] for key in archive.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise MetricsInputError(f"{path}: an array cannot be read ({error})") from None
    pairs = arrays["pairs"]
    if pairs.ndim != 2 or pairs.shape[1] != 2 or pairs.dtype.kind not in "US":
        raise MetricsInputError(f"{path}: pairs must be a [P, 2] array of (state, object) strings")
    if arrays["scores"].dtype.kind not in "fiu":
        raise MetricsInputError(f"{path}: scores must be numeric, got dtype {arrays['scores'].dtype}")
    # Integer ids per name: state / object accuracy compares names, whatever their order.
    _, pair_states = np.unique(pairs[:, 0], return_inverse=True)
    _, pair_objects = np.unique(pairs[:, 1], return_inverse=True)
    inputs: dict[str, Any] = {
        "scores": arrays["scores"],
        "labels": arrays["labels"],
        "pair_states": pair_states.reshape(-1),
        "pair_objects": pair_objects.reshape(-1),
        "seen": arrays["seen"],
        "candidates": arrays.get("candidates"),
        "feasibility": arrays.get("feasibility"),
        "threshold": None,
    }
    if "threshold" in arrays:
        if arrays["threshold"].size != 1 or arrays["threshold"].dtype.kind not in "fiu":
            raise MetricsInputError(f"{path}: threshold must be a single number")
        inputs["threshold"] = float(arrays["threshold"].reshape(()))
    return inputs
