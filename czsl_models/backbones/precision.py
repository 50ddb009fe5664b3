"""Numeric precision at inference: of the image backbone (see the second part), and of the heads that
refine every text row (MSCI's two stages and gate).

Those heads run once per image for each of the P candidate pairs, so at open-world sizes their
MLPs cost about a third of a ViT-L/14 pass in float32. At inference they may run in bfloat16
where the hardware does it natively (CUDA, or a CPU with AVX512-BF16 / AMX), under autocast:
matrix products in bfloat16, layer norms, softmaxes and the residual stream in float32. What
they add to a text row is scaled by the zero-initialised λ before it meets the float32 text
feature, and the final cosine scores are always float32, so an untrained model still equals the
CLIP baseline exactly. Training (gradients enabled) never changes precision here; Accelerate's
mixed-precision setting governs it.

CZSL_HEAD_PRECISION (or a model's `head_precision` attribute, or `--head-precision` on the command
line) picks: `auto` (default: bfloat16 where native, else float32), `float32` (bit-for-bit
reproducible on any machine) or `bfloat16`.
"""

from __future__ import annotations

import argparse
import os
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from typing import Iterator

import torch

from .specs import BackboneError

HEAD_PRECISION_ENV = "CZSL_HEAD_PRECISION"
HEAD_PRECISIONS = ("auto", "float32", "bfloat16")


def _checked_choice(precision: str, what: str, choices: tuple[str, ...], env: str,
                    error: type[ValueError] = ValueError) -> str:
    """The name lower-cased when it is one of choices; error naming the choices and where it was set otherwise."""
    name = str(precision).strip().lower()
    if name not in choices:
        raise error(f"{what} precision must be one of {', '.join(choices)}, not {precision!r} "
                    f"(set by {env} or --{what}-precision)")
    return name


def check_head_precision(precision: str) -> str:
    """The precision name, lower-cased; ValueError naming the choices otherwise."""
    return _checked_choice(precision, "head", HEAD_PRECISIONS, HEAD_PRECISION_ENV)


def requested_head_precision(override: str | None = None) -> str:
    """The override when given, else $CZSL_HEAD_PRECISION, else 'auto'."""
    return check_head_precision(override if override is not None else os.environ.get(HEAD_PRECISION_ENV, "auto"))


def native_bfloat16(device: torch.device) -> bool:
    """Whether bfloat16 matrix products run natively (faster than float32) on this device."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return False


def head_dtype(device: torch.device, precision: str | None = None) -> torch.dtype:
    """The dtype the row heads compute in at inference on `device`."""
    name = requested_head_precision(precision)
    if name == "float32" or (name == "auto" and not native_bfloat16(device)):
        return torch.float32
    return torch.bfloat16


def head_autocast(device: torch.device, precision: str | None = None) -> AbstractContextManager:
    """Autocast for a row head at inference; a no-op while gradients are enabled or in float32."""
    if torch.is_grad_enabled() or device.type not in ("cpu", "cuda"):
        return nullcontext()
    dtype = head_dtype(device, precision)
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def add_head_precision_argument(parser: argparse.ArgumentParser) -> None:
    """--head-precision, shared by predict and evaluate."""
    parser.add_argument("--head-precision", choices=HEAD_PRECISIONS, default=None,
                        help=f"inference precision of MSCI's row head: auto (bfloat16 where the hardware has it "
                             f"natively), float32 or bfloat16 (default ${HEAD_PRECISION_ENV}, else auto)")


# ------------------------------------------------------------------ the backbone
# The image tower is the whole cost of a prediction on CPU. Where bfloat16 is native (AVX512-BF16, AMX)
# its weights and activations in bfloat16 run ~2.3x faster than float32 with features that agree to ~1e-4
# (benchmarks/precision_drift.py bounds the drift on real photos); elsewhere bfloat16 is emulated and
# slower, so `auto` keeps float32. On CUDA, `auto` is half precision under autocast, as the released
# code runs CLIP. `int8` (dynamic int8 Linear layers) is offered for CPUs without native bfloat16, never
# picked by `auto`: measured here (AVX512) it gained only 1.1-1.3x.
BACKBONE_PRECISION_ENV = "CZSL_BACKBONE_PRECISION"
BACKBONE_PRECISIONS = ("auto", "float32", "bfloat16", "float16", "int8")
_BACKBONE_PRECISION_OVERRIDE: ContextVar[str | None] = ContextVar("backbone_precision", default=None)


class BackbonePrecisionError(BackboneError, ValueError):
    """A backbone precision that does not exist or cannot run on the chosen device."""


def check_backbone_precision(precision: str) -> str:
    """The backbone precision name, lower-cased; ValueError naming the choices otherwise."""
    return _checked_choice(precision, "backbone", BACKBONE_PRECISIONS, BACKBONE_PRECISION_ENV, BackbonePrecisionError)


def requested_backbone_precision(override: str | None = None) -> str:
    """The override, else the one set by `using_backbone_precision(...)`, else $CZSL_BACKBONE_PRECISION, else 'auto'."""
    for value in (override, _BACKBONE_PRECISION_OVERRIDE.get(), os.environ.get(BACKBONE_PRECISION_ENV)):
        if value:
            return check_backbone_precision(value)
    return "auto"


def resolve_backbone_precision(device: torch.device | str, precision: str | None = None) -> str:
    """The concrete precision ('float32', 'bfloat16', 'float16' or 'int8') the backbone runs in on `device`."""
    device = torch.device(device)
    name = requested_backbone_precision(precision)
    if name == "auto":
        if device.type == "cuda":
            return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        return "bfloat16" if native_bfloat16(device) else "float32"
    if name == "float16" and device.type != "cuda":
        raise BackbonePrecisionError("backbone precision float16 runs only on CUDA; use bfloat16 or float32 on a CPU")
    if name == "int8" and device.type != "cpu":
        raise BackbonePrecisionError("backbone precision int8 (dynamic int8 Linear layers) runs only on a CPU")
    return name


@contextmanager
def using_backbone_precision(precision: str | None) -> Iterator[None]:
    """Within this block, backbones fetched without an explicit precision use `precision` (None: no change)."""
    token = _BACKBONE_PRECISION_OVERRIDE.set(check_backbone_precision(precision) if precision else
                                             _BACKBONE_PRECISION_OVERRIDE.get())
    try:
        yield
    finally:
        _BACKBONE_PRECISION_OVERRIDE.reset(token)


def add_backbone_precision_argument(parser: argparse.ArgumentParser) -> None:
    """--backbone-precision, shared by predict and evaluate."""
    parser.add_argument("--backbone-precision", choices=BACKBONE_PRECISIONS, default=None,
                        help="precision of the image backbone at inference: auto (bfloat16 on a CPU that has it "
                             "natively, half precision on CUDA, else float32), float32, bfloat16, float16 (CUDA) "
                             f"or int8 (CPU) (default ${BACKBONE_PRECISION_ENV}, else auto)")
