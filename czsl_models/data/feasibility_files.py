"""The released open-world feasibility files of the three benchmarks (MSCI/Troika `data/feasibility_*.pt`).

Each is a dict with one float tensor `feasibility` over every state x object pair in sorted-state,
sorted-object order (192 / 28,175 / 278,362 values). The published open-world numbers mask unseen
pairs below a fixed threshold of these scores (the released configs' `threshold`); `download`
installs the file beside the benchmark, pinned to the released bytes by sha256.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .dataset import DatasetError
from .fetch import FetchPolicy, download, sha256_of

DOWNLOADS_FOLDER = ".downloads"
_RELEASE_URL = "https://raw.githubusercontent.com/{repo}/main/{folder}feasibility_{name}.pt"


@dataclass(frozen=True)
class ReleasedFeasibility:
    """One released feasibility file: its name (also its name on a mirror), size, sha256 and where it lives."""

    benchmark: str
    size: int
    sha256: str
    pairs: int  # states x objects of the benchmark

    @property
    def file_name(self) -> str:
        """feasibility_<benchmark>.pt, as released."""
        return f"feasibility_{self.benchmark}.pt"

    @property
    def urls(self) -> tuple[str, ...]:
        """The MSCI repository first, then Troika's (the same files)."""
        return (_RELEASE_URL.format(repo="ltpwy/MSCI", folder="MSCI/code/data/", name=self.benchmark),
                _RELEASE_URL.format(repo="bighuang624/Troika", folder="data/", name=self.benchmark))


RELEASED_FEASIBILITY: dict[str, ReleasedFeasibility] = {
    "ut-zappos": ReleasedFeasibility("ut-zappos", 1_515,
                                     "6b5c9b142a4003d785e053386fbbc2607e8b740acdd67ac8891eb90b45a05f64", 192),
    "mit-states": ReleasedFeasibility("mit-states", 113_387,
                                      "19b78b8bdca50fcd2ce9dd04d31526cc0e9f7c20f51f54f171e7d28bf3c7257a", 28_175),
    "cgqa": ReleasedFeasibility("cgqa", 1_114_155,
                                "6ff96ff8700e78f9446258682034995453429d48430fd9131cf45107048175f7", 278_362),
}


def feasibility_path(dataset_dir: str | Path, benchmark: str) -> Path:
    """Where `download` puts a benchmark's released feasibility file: inside the benchmark's folder."""
    return Path(dataset_dir) / RELEASED_FEASIBILITY[benchmark].file_name


def install_feasibility(benchmark: str, dataset_dir: str | Path, mirror: str | None = None,
                        from_files: str | Path | None = None, policy: FetchPolicy | None = None,
                        log: Callable[[str], None] = lambda text: print(text, file=sys.stderr)) -> Path:
    """Fetch (resumably) and install a benchmark's released feasibility file in dataset_dir, refusing any file
    whose sha256 is not the released one; a no-op when the right file is already there."""
    release = RELEASED_FEASIBILITY[benchmark]
    target = feasibility_path(dataset_dir, benchmark)
    if target.is_file() and sha256_of(target) == release.sha256:
        return target
    downloads = Path(dataset_dir).parent / DOWNLOADS_FOLDER
    if from_files is not None:
        source = Path(from_files).expanduser() / release.file_name
        if not source.is_file():
            raise DatasetError(f"{release.file_name} is not in {from_files}; download it from {release.urls[0]}")
        fetched_path, owned = source, False
    else:
        cached = downloads / release.file_name
        if not cached.is_file():
            urls = (f"{mirror.rstrip('/')}/{release.file_name}",) if mirror else release.urls
            errors = []
            for url in urls:
                log(f"Downloading {url}")
                try:
                    download(url, cached, policy or FetchPolicy(), on_retry=log)
                    break
                except DatasetError as error:
                    errors.append(str(error))
            else:
                raise DatasetError(errors[-1])
        fetched_path, owned = cached, True
    digest = sha256_of(fetched_path)
    if digest != release.sha256:
        if owned:
            fetched_path.unlink(missing_ok=True)  # fetched afresh next time
        raise DatasetError(f"{release.file_name} has sha256 {digest[:16]}… but the released file has "
                           f"{release.sha256[:16]}…; it is not the released feasibility file, so it is not installed")
    Path(dataset_dir).mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(fetched_path, temporary)
    os.replace(temporary, target)
    if owned:
        fetched_path.unlink(missing_ok=True)
    return target


def load_released_feasibility(path: str | Path, num_states: int, num_objects: int) -> np.ndarray:
    """[A, O] float64 feasibility from a released file (read with weights_only: no pickle code runs)."""
    import torch

    try:
        document = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same one-line message
        raise DatasetError(f"{path} is not a readable feasibility file ({type(error).__name__})") from None
    scores = document.get("feasibility") if isinstance(document, dict) else None
    if not isinstance(scores, torch.Tensor) or not scores.is_floating_point():
        raise DatasetError(f"{path} holds no float tensor 'feasibility'")
    if scores.numel() != num_states * num_objects:
        raise DatasetError(f"{path} has {scores.numel():,} feasibility values; the dataset has "
                           f"{num_states} states x {num_objects} objects = {num_states * num_objects:,} pairs")
    return scores.double().reshape(num_states, num_objects).numpy()
