"""Disk cache of backbone outputs for the "fast" training preset: one frozen vision pass per image,
computed once, then read back batch by batch.

Layout: ``<cache root>/<key>/`` holds one ``.npy`` array per field (``cls``, ``layer_<i>``,
``patch_embeddings``) and ``meta.json``. The key hashes everything that changes the features: the
backbone (and its preprocessing), the images (paths with size and modification time, or the
synthetic renderer's parameters), what the model asks the vision pass for, and the storage dtype.

Why ``.npy`` rather than safetensors: the arrays are written incrementally through memory maps
(a ViT-L/14 MSCI cache of MIT-States is ~100 GB in float16, far more than memory) and read back
with random row access; ``np.load(..., allow_pickle=False)`` never unpickles anything.

Token features are stored in float16 by default (half the disk of float32): on a GPU the
backbone runs under bf16 autocast, whose 8-bit mantissa float16's 11 bits already exceed, and
on CPU the rounding moved MSCI's scores (100 x cosine) by at most 3e-4 on the tiny test backbone
and 1e-5 on a random ViT-L/14, with its fusion weights set to N(0, 1) (tests/test_train.py checks it).
The CLS feature is always float32 (it is small).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..backbones import VisualOutput
from ..data import SYNTHETIC_PREFIX, CompositionDataset, Sample

CACHE_DIR_ENV = "CZSL_CACHE_DIR"
CACHE_FORMAT_VERSION = 1
CACHE_DTYPES = {"float16": np.float16, "float32": np.float32}
META_NAME = "meta.json"


def default_cache_root() -> Path:
    """Where feature caches live: $CZSL_CACHE_DIR, else ~/.cache/czsl_models/features."""
    configured = os.environ.get(CACHE_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "czsl_models" / "features"


def model_trains_from_cache(model: torch.nn.Module) -> bool:
    """True when the model's training forward needs only a frozen, cacheable vision pass.

    Not cacheable: models that say they need pixels (`needs_pixels_for_training`, e.g. SVIP's
    contextualised pass), models with vision adapters switched on (`use_adapters`: the backbone
    output then depends on trained weights), and requests for attention maps (too large to store).
    """
    if getattr(model, "needs_pixels_for_training", False) or getattr(model, "use_adapters", False):
        return False
    return not model.visual_request(explain=False).attention


def _image_identity(dataset: CompositionDataset, sample: Sample) -> str:
    """What makes an image's pixels what they are: the renderer's parameters or the file's stat."""
    if dataset.image_renderer is not None and sample.image.startswith(SYNTHETIC_PREFIX):
        return sample.image
    if dataset.root is None:
        return sample.image
    path = dataset.root / sample.image
    try:
        stat = path.stat()
    except OSError:
        return f"{sample.image}|missing"
    return f"{sample.image}|{stat.st_size}|{stat.st_mtime_ns}"


def _backbone_identity(backbone) -> str:
    parts = [backbone.name, repr(backbone.preprocess)]
    if backbone.spec.kind == "local":  # the same folder name may later hold other weights
        folder = Path(backbone.spec.location)
        for path in sorted(folder.glob("*")):
            if path.is_file():
                stat = path.stat()
                parts.append(f"{path.name}|{stat.st_size}|{stat.st_mtime_ns}")
    return "\n".join(parts)


def cache_key(model: torch.nn.Module, dataset: CompositionDataset, samples: Sequence[Sample], dtype: str) -> str:
    """Hash of backbone, preprocessing, images, requested fields and dtype (the cache folder name)."""
    request = model.visual_request(explain=False)
    digest = hashlib.sha256()
    root = str(dataset.root.resolve()) if dataset.root is not None else ""
    renderer = repr(dataset.image_renderer) if dataset.image_renderer is not None else ""
    # A model that overrides encode_images may compute something else from the same request.
    encoder = type(model).__qualname__ if "encode_images" in type(model).__dict__ else "backbone"
    header = {"version": CACHE_FORMAT_VERSION, "backbone": _backbone_identity(model.backbone), "root": root,
              "renderer": renderer, "layers": list(request.layers), "patch_embeddings": request.patch_embeddings,
              "dtype": dtype, "encoder": encoder}
    digest.update(json.dumps(header, sort_keys=True).encode())
    for sample in samples:
        digest.update(b"\x00" + _image_identity(dataset, sample).encode())
    return digest.hexdigest()[:32]


class CacheBuildStopped(RuntimeError):
    """A stop request interrupted a cache build; nothing was kept."""


@dataclass
class CachedFeatures:
    """Cached vision outputs of a list of images, read through memory maps."""

    path: Path
    cls: np.ndarray  # [N, D] float32
    layer_tokens: dict[int, np.ndarray]  # block -> [N, T, D]
    patch_embeddings: np.ndarray | None  # [N, Np, W]
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # name -> [N, ...] float32 (VisualOutput.extras)

    @property
    def num_images(self) -> int:
        """Number of cached images."""
        return int(self.cls.shape[0])

    def batch(self, indices: Sequence[int], device: torch.device | str) -> VisualOutput:
        """The vision outputs of some images, as float32 tensors on a device."""
        rows = np.asarray(indices, dtype=np.int64)

        def take(array: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(array[rows])).to(device=device, dtype=torch.float32)

        return VisualOutput(
            cls=take(self.cls),
            layer_tokens={layer: take(tokens) for layer, tokens in self.layer_tokens.items()},
            patch_embeddings=None if self.patch_embeddings is None else take(self.patch_embeddings),
            extras={name: take(values) for name, values in self.extras.items()},
        )

    @classmethod
    def open(cls, path: Path) -> "CachedFeatures":
        """Open a finished cache folder."""
        meta = json.loads((path / META_NAME).read_text())

        def load(name: str) -> np.ndarray:
            return np.load(path / f"{name}.npy", mmap_mode="r", allow_pickle=False)

        layers = {int(layer): load(f"layer_{layer}") for layer in meta["layers"]}
        patches = load("patch_embeddings") if meta["patch_embeddings"] else None
        extras = {name: load(f"extra_{name}") for name in meta.get("extras", [])}
        features = cls(path=path, cls=load("cls"), layer_tokens=layers, patch_embeddings=patches, extras=extras)
        if features.num_images != meta["num_images"]:
            raise OSError(f"feature cache {path} is inconsistent; delete it to rebuild")
        return features


class _FieldWriter:
    """Memory-mapped .npy arrays created on the first batch and filled row block by row block."""

    def __init__(self, folder: Path, num_images: int, dtype: np.dtype) -> None:
        self.folder = folder
        self.num_images = num_images
        self.dtype = dtype
        self.arrays: dict[str, np.ndarray] = {}

    def write(self, name: str, start: int, values: torch.Tensor, dtype: np.dtype | None = None) -> None:
        block = values.detach().float().cpu().numpy()
        array = self.arrays.get(name)
        if array is None:
            array = np.lib.format.open_memmap(self.folder / f"{name}.npy", mode="w+", dtype=dtype or self.dtype,
                                              shape=(self.num_images, *block.shape[1:]))
            self.arrays[name] = array
        array[start:start + block.shape[0]] = block

    def close(self) -> None:
        for array in self.arrays.values():
            array.flush()
        self.arrays.clear()


def build_feature_cache(
    model: torch.nn.Module,
    dataset: CompositionDataset,
    samples: Sequence[Sample],
    cache_root: str | Path | None = None,
    dtype: str = "float16",
    batch_size: int = 32,
    load_pixels: Callable[[Sequence[int]], torch.Tensor] | None = None,
    progress: Callable[[int, int], None] | None = None,
    stop: threading.Event | None = None,
) -> CachedFeatures:
    """The cached vision outputs of `samples` for this model, computed now if not on disk yet.

    `load_pixels(indices)` returns a preprocessed pixel batch (default: decode with the
    backbone's preprocessing, in this process); `progress(done, total)` reports images done; a set
    `stop` event ends the build between batches with CacheBuildStopped."""
    if dtype not in CACHE_DTYPES:
        raise ValueError(f"cache dtype must be one of {', '.join(CACHE_DTYPES)}, not {dtype!r}")
    if not samples:
        raise ValueError("no images to cache")
    if not model_trains_from_cache(model):
        raise ValueError(f"{type(model).__name__} cannot be trained from cached backbone outputs")
    root = Path(cache_root) if cache_root is not None else default_cache_root()
    final = root / cache_key(model, dataset, samples, dtype)
    if (final / META_NAME).is_file():
        try:
            return CachedFeatures.open(final)
        except (OSError, ValueError, KeyError, json.JSONDecodeError):
            shutil.rmtree(final, ignore_errors=True)  # a damaged cache is rebuilt, never trusted
    root.mkdir(parents=True, exist_ok=True)
    if load_pixels is None:
        backbone = model.backbone

        def load_pixels(indices: Sequence[int]) -> torch.Tensor:
            return backbone.preprocess_images([dataset.load_image(samples[i]) for i in indices])

    request = model.visual_request(explain=False)
    # Built in a temporary sibling folder and renamed at the end: an interrupted build leaves no
    # half cache behind, and two processes building the same cache cannot corrupt each other.
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
    try:
        writer = _FieldWriter(staging, len(samples), CACHE_DTYPES[dtype])
        extra_names: set[str] = set()
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for start in range(0, len(samples), batch_size):
                    if stop is not None and stop.is_set():
                        raise CacheBuildStopped(f"stopped while caching {dataset.name}; nothing was kept")
                    indices = list(range(start, min(start + batch_size, len(samples))))
                    visual = model.encode_images(load_pixels(indices), explain=False)
                    writer.write("cls", start, visual.cls, dtype=np.float32)
                    for layer in request.layers:
                        writer.write(f"layer_{layer}", start, visual.layer_tokens[layer])
                    if request.patch_embeddings:
                        writer.write("patch_embeddings", start, visual.patch_embeddings)
                    for name, values in visual.extras.items():
                        writer.write(f"extra_{name}", start, values, dtype=np.float32)
                        extra_names.add(name)
                    if progress is not None:
                        progress(indices[-1] + 1, len(samples))
        finally:
            model.train(was_training)
            writer.close()
        meta = {"version": CACHE_FORMAT_VERSION, "num_images": len(samples), "layers": list(request.layers),
                "patch_embeddings": request.patch_embeddings, "extras": sorted(extra_names), "dtype": dtype,
                "backbone": model.backbone.name,
                "dataset": dataset.name}
        (staging / META_NAME).write_text(json.dumps(meta, indent=2))
        try:
            os.rename(staging, final)
        except OSError:
            if not (final / META_NAME).is_file():  # the rename failed for another reason than a twin build
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return CachedFeatures.open(final)
