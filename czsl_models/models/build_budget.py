"""Building a model from a checkpoint within a budget: the weights file's header is checked first (no empty or
absurd tensor, a bounded parameter count), then every tensor the constructor asks torch for is counted before
torch allocates it, so a config.json edited to describe a far larger model is refused without paying for it."""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from typing import Any, Iterator, Mapping, Sequence

import torch
from torch.overrides import TorchFunctionMode

from .registry import CheckpointError

DEFAULT_MAX_PARAMETERS = 400_000_000  # about 1.6 GB in float32; the released heads on ViT-L/14 are far smaller
MAX_TENSOR_DIM = 65_536  # any one dimension of a stored tensor
EMPTY_TENSOR_MAX_WIDTH = 4_096  # the widest (0, width) tensor a real checkpoint stores (ViT-bigG's text width is 1280)
# Building allocates what the weights file holds plus what is never saved (frozen text features, temporaries).
BUILD_SLACK_FACTOR = 2.0
BUILD_SLACK_BYTES = 256 << 20
_SIZED_FACTORIES = {torch.empty, torch.zeros, torch.ones, torch.full, torch.rand, torch.randn, torch.randint,
                    torch.empty_strided, torch.eye}


def max_parameters() -> int:
    """The most parameters a checkpoint may hold here (CZSL_MAX_CHECKPOINT_PARAMETERS)."""
    try:
        return max(1, int(float(os.environ["CZSL_MAX_CHECKPOINT_PARAMETERS"])))
    except (KeyError, ValueError):
        return DEFAULT_MAX_PARAMETERS


def check_tensor_shapes(shapes: Mapping[str, Sequence[int]], name: str = "model.safetensors",
                        limit: int | None = None) -> int:
    """The parameter count the header declares; CheckpointError for an empty or absurd tensor or too many."""
    limit = max_parameters() if limit is None else limit
    total = 0
    for tensor, shape in shapes.items():
        if any(int(dim) < 0 for dim in shape):
            raise CheckpointError(f"{name} holds a tensor of negative size ({tensor}); the file is corrupt.")
        # An untrained vocabulary stores (0, width) offsets; an empty tensor with a huge width only serves to make
        # a large size look present in the weights.
        if 0 in shape and max(int(dim) for dim in shape) > EMPTY_TENSOR_MAX_WIDTH:
            raise CheckpointError(f"{name} holds an empty tensor of shape {tuple(shape)} ({tensor}); a checkpoint "
                                  "written by czsl_models has none, so it is refused.")
        if any(int(dim) > MAX_TENSOR_DIM for dim in shape):
            raise CheckpointError(f"{name} holds a tensor with a dimension above {MAX_TENSOR_DIM:,} ({tensor}).")
        total += math.prod(int(dim) for dim in shape)
        if total > limit:
            raise CheckpointError(f"{name} declares more than {limit:,} parameters; this server loads at most "
                                  f"{limit:,} (CZSL_MAX_CHECKPOINT_PARAMETERS).")
    return total


def _requested_elements(func: Any, args: tuple, kwargs: dict) -> int:
    """How many elements a factory call asks for, from its size argument."""
    if func is torch.eye:
        rows = int(args[0]) if args else int(kwargs.get("n", 0))
        columns = args[1] if len(args) > 1 and isinstance(args[1], int) else kwargs.get("m", rows)
        return rows * int(columns)
    size = kwargs.get("size")
    if size is None:
        sized = [arg for arg in args if isinstance(arg, (tuple, list, torch.Size))]
        if sized:
            size = sized[0]
        elif func is not torch.randint:
            size = [arg for arg in args if isinstance(arg, int)]
    if size is None:
        return 0
    return math.prod(int(dim) for dim in size)


class AllocationBudget(TorchFunctionMode):
    """Counts the bytes of every tensor factory call (torch.empty, zeros, randn...) and refuses one that would
    take the total past the budget, before torch allocates it."""

    def __init__(self, max_bytes: int, what: str) -> None:
        super().__init__()
        self.max_bytes = max_bytes
        self.what = what
        self.used = 0

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in _SIZED_FACTORIES:
            dtype = kwargs.get("dtype") or torch.get_default_dtype()
            self.used += _requested_elements(func, args, kwargs) * torch.empty((), dtype=dtype).element_size()
            if self.used > self.max_bytes:
                raise CheckpointError(f"{self.what} describes a larger model than its weights file holds (over "
                                      f"{self.max_bytes / 1e6:,.0f} MB to build); the config does not match its "
                                      "weights, so nothing was built.")
        return func(*args, **kwargs)


@contextmanager
def build_budget(parameters: int, what: str) -> Iterator[AllocationBudget]:
    """Within this block, tensors allocated by torch factories may total about what `parameters` float32
    values need (plus slack for what a model keeps but never saves); past that, CheckpointError."""
    budget = AllocationBudget(int(parameters * 4 * BUILD_SLACK_FACTOR) + BUILD_SLACK_BYTES, what)
    with budget:
        yield budget
