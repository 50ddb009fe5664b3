"""Model names -> classes: each model module registers its class; the modules are imported on first use."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import CompositionModel

_REGISTRY: dict[str, type] = {}
_MODEL_MODULES = ("clip", "msci", "refiner", "svip")


class CheckpointError(ValueError):
    """A model name or a checkpoint cannot be used; the message says why."""


def register_model(cls: type) -> type:
    """Class decorator: make a model available by its `name`."""
    _REGISTRY[cls.name] = cls
    return cls


def is_registered(cls: type) -> bool:
    """Whether cls is the class registered under its own name (a model, not a base class)."""
    return _REGISTRY.get(getattr(cls, "name", None)) is cls


def _import_models() -> None:
    for module in _MODEL_MODULES:
        full_name = f"{__package__}.{module}"
        try:
            importlib.import_module(full_name)
        except ModuleNotFoundError as error:
            if error.name != full_name:
                raise


def list_models() -> list[str]:
    """Names of the available models, baseline first."""
    _import_models()
    return sorted(_REGISTRY, key=lambda name: (name != "clip", name))


def model_class(name: str) -> type["CompositionModel"]:
    """The class registered under name."""
    _import_models()
    try:
        return _REGISTRY[name.lower()]
    except KeyError:
        raise CheckpointError(f"Unknown model {name!r}; choose one of {', '.join(list_models())}.") from None
