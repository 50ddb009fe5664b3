"""What the app shares between visitors: the one backbone, a lazily filled model cache, the
vocabularies of loaded datasets, and the ZeroGPU decorator."""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

from ..backbones import (TINY_BACKBONE, Backbone, BackboneError, UnsupportedBackboneError, get_backbone,
                        parse_backbone_spec)
from ..hosting.confinement import (allow_host_checkpoint, allow_host_folders, cache_identity, checkpoint_config,
                                   choice_value, scrub, shown_name, visitor_weights_dir)
from ..hosting.space import HOST, current_visitor
from ..models.base import CompositionModel
from ..models.checkpoints import CheckpointError, CheckpointInfo, list_local_checkpoints, load_model
from ..models.registry import list_models, model_class
from ..models.checkpoints import weights_dir

LOGGER = logging.getLogger(__name__)
# What visitors read: what is going on and what it means for them. The host's instructions go to the log.
FALLBACK_BANNER = ("Demo mode: answers are random. The image-and-text model this app is built on could not be "
                   "downloaded, so it runs on a small stand-in with random weights: answers and pictures show how "
                   "the app works, not what is in the photo.")
TINY_BANNER = ("Demo mode: answers are random. This app runs on a small test model with random weights: it shows "
               "how the app works, not what is in the photo.")
FALLBACK_HOST_HINT = ("To leave demo mode, connect the server to the internet once and restart the app; the model is "
                      "then saved and later starts work offline.")
TINY_HOST_HINT = "To leave demo mode, restart the app without the tiny test backbone (CZSL_BACKBONE or --backbone)."
BENCHMARK_NAMES = {"mit-states": "MIT-States", "ut-zappos": "UT-Zappos", "cgqa": "C-GQA"}
DEFAULT_WEIGHTS_RULE = ("Which weights open first: the host's listed weights; else the weights trained on a "
                        "benchmark (MIT-States, UT-Zappos or C-GQA) with the best test AUC; else none, and the page "
                        "opens on the CLIP baseline.")
MAX_CACHED_MODELS = 8
MAX_DATASETS_PER_VISITOR = 5
MAX_VISITORS_WITH_DATASETS = 200  # the oldest visitors' word lists are forgotten first
UNTRAINED = ""  # checkpoint value of a model's untrained start (the CLIP baseline)

Function = TypeVar("Function", bound=Callable[..., Any])


def gpu_function(function: Function | None = None, *, duration: int | Callable[..., int] = 60) -> Any:
    """spaces.GPU(duration=...) where the `spaces` package is installed (a ZeroGPU Space), else nothing.
    Usable bare (`@gpu_function`, 60 s), sized to its task (`@gpu_function(duration=45)`), or sized per call by a
    callable that takes the function's own arguments and returns seconds (ZeroGPU's dynamic duration)."""

    def wrap(target: Function) -> Function:
        try:
            import spaces  # only installed on Spaces
        except ImportError:
            return target
        return spaces.GPU(duration=duration)(target)

    return wrap(function) if function is not None else wrap


@dataclass(frozen=True)
class TrainedOn:
    """What a checkpoint says it was trained on, and its test metrics (fractions), from its metrics.json."""

    dataset: str | None
    metrics: dict
    hosted: bool = False  # listed by the host

    @property
    def benchmark(self) -> str | None:
        """The benchmark's display name when the dataset is one (a toy or custom dataset gives None)."""
        from ..training.config import recognised_dataset

        return BENCHMARK_NAMES.get(recognised_dataset(self.dataset or "") or "")

    @property
    def rank_key(self) -> tuple[float, float]:
        """Better weights sort higher: test AUC, then best HM."""
        return float(self.metrics.get("AUC", -1.0)), float(self.metrics.get("best_hm", -1.0))

    def describe(self) -> str:
        """'trained on MIT-States (test AUC 5.1, HM 20.3)' or 'trained on shapes (not a benchmark)'."""
        if not self.dataset:
            return "trained on an unrecorded dataset"
        scores = ", ".join(f"{short} {100 * float(self.metrics[key]):.1f}"
                           for key, short in (("AUC", "test AUC"), ("best_hm", "HM")) if key in self.metrics)
        name = self.benchmark or self.dataset
        kind = "" if self.benchmark else "not a benchmark"
        extra = "; ".join(part for part in (scores, kind) if part)
        return f"trained on {name}" + (f" ({extra})" if extra else "")


@dataclass
class DatasetVocabulary:
    """The words and pairs of a dataset someone loaded, offered as a Predict preset."""

    name: str
    states: list[str]
    objects: list[str]
    pairs: list[tuple[str, str]]
    seen_pairs: list[tuple[str, str]]


def load_app_backbone(requested: str | None, device: str | None = None) -> tuple[Backbone, str | None]:
    """The requested backbone, or the tiny one with a banner when its weights cannot be had."""
    spec = parse_backbone_spec(requested)
    if spec.kind == "tiny":
        LOGGER.warning("%s %s", TINY_BANNER, TINY_HOST_HINT)
        return get_backbone(spec, device), TINY_BANNER
    try:
        return get_backbone(spec, device), None
    except Exception as error:  # any failure, even deep inside a third-party loader, must leave a working app
        LOGGER.warning("%s Falling back to the tiny backbone.", error)
        if isinstance(error, UnsupportedBackboneError):
            banner = f"Demo mode: answers are random. {error} Running on a tiny random backbone instead."
        elif isinstance(error, BackboneError):
            banner = FALLBACK_BANNER
            LOGGER.warning("%s", FALLBACK_HOST_HINT)
        else:
            banner = (f"Demo mode: answers are random. Backbone {spec} could not be loaded ({type(error).__name__}: "
                      f"{error}). Running on a tiny random backbone instead.")
    return get_backbone(TINY_BACKBONE, device), banner


_APP_STATES: dict[str, "AppState"] = {}


def app_state_by_key(key: str) -> "AppState":
    """The AppState registered under key (how a pickled AppState is found again, e.g. in ZeroGPU's worker)."""
    return _APP_STATES[key]


@dataclass
class AppState:
    """Shared, thread-safe state of one running app. Pickles by reference: ZeroGPU runs GPU functions in a
    forked worker and pickles their arguments; the worker finds its own copy of the state by key."""

    backbone: Backbone
    banner: str | None = None
    key: str = field(default_factory=lambda: uuid.uuid4().hex)
    weights: Path = field(default_factory=weights_dir)
    training: Any = None  # the Train tab's TrainingManager, once built (tests and shutdown reach it here)
    hosted: list = field(default_factory=list)  # HostedCheckpoint: Hub checkpoints the host listed, in order
    _models: "OrderedDict[tuple[str, str, str, float], CompositionModel]" = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _loading_locks: dict[tuple[str, str, str, float], threading.Lock] = field(default_factory=dict)
    # visitor -> their loaded datasets' vocabularies (newest last); see hosting.current_visitor
    _datasets: "OrderedDict[str, OrderedDict[str, DatasetVocabulary]]" = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        _APP_STATES[self.key] = self
        allow_host_folders(checkpoint.path for checkpoint in self.hosted)  # the host's Hub picks load by path
        for checkpoint in self.hosted:  # ... and by repo id, the name visitors see on a Space
            revision = f"@{checkpoint.revision}" if checkpoint.revision else ""
            allow_host_checkpoint(f"{checkpoint.repo_id}{revision}", checkpoint.path)

    def __reduce__(self):
        return app_state_by_key, (self.key,)

    @property
    def backbone_spec(self) -> str:
        """The spec string of the shared backbone."""
        return self.backbone.name

    # ------------------------------------------------------------------ models
    def model_names(self) -> list[str]:
        """Registered models, baseline first."""
        return list_models()

    def trainable_model_names(self) -> list[str]:
        """Models with something to learn (every one but the CLIP baseline)."""
        return [name for name in list_models() if name != "clip"]

    @staticmethod
    def display_name(name: str) -> str:
        """The human name of a model."""
        cls = model_class(name)
        return cls.display_name or name

    def default_model_name(self) -> str:
        """The model Predict and Evaluate open on: that of the host's first listed checkpoint; else the model whose
        default weights (DEFAULT_WEIGHTS_RULE) score best; else the CLIP baseline, whose explanation means
        something untrained."""
        usable = self.hosted_checkpoints()
        if usable:
            return usable[0].model_type
        best, best_key = "clip", None
        for name in self.trainable_model_names():
            facts = self.trained_on(self.default_checkpoint(name))
            if facts is not None and (best_key is None or facts.rank_key > best_key):
                best, best_key = name, facts.rank_key
        return best

    def hosted_checkpoints(self, name: str | None = None) -> list:
        """Host-listed checkpoints that run on this app's backbone (of one model, when named)."""
        return [c for c in self.hosted if c.backbone == self.backbone_spec and (name is None or c.model_type == name)]

    def visitor_weights(self, visitor: str | None = None) -> Path:
        """Where the visitor's checkpoints go (the weights folder itself locally, a folder of their own on a Space)."""
        return visitor_weights_dir(visitor, self.weights)

    def own_checkpoints(self, visitor: str | None = None) -> list[CheckpointInfo]:
        """The checkpoints the visitor trained (every local one when visitors are not strangers), newest first."""
        return list_local_checkpoints(self.visitor_weights(visitor))

    def checkpoint_choices(self, name: str) -> list[tuple[str, str]]:
        """(label, value) pairs for the checkpoint menu: the untrained start, the host's Hub checkpoints (readable
        name and headline metrics), then this visitor's own checkpoints and the host's local ones (shared
        read-only) of this model on this backbone, newest first."""
        choices = [("None: not trained yet (answers like the CLIP baseline)", UNTRAINED)]
        if name == "clip":
            return [("None needed: the CLIP baseline learns nothing", UNTRAINED)]
        choices += [(checkpoint.label, choice_value(checkpoint.path)) for checkpoint in self.hosted_checkpoints(name)]
        own = self.own_checkpoints() if current_visitor() != HOST else []
        for info, yours in [(info, True) for info in own] + [(info, False) for info in list_local_checkpoints(self.weights)]:
            if info.model_type == name and info.backbone == self.backbone_spec:
                mark = ", yours" if yours else ""
                choices.append((f"{info.path.name} ({info.states} states, {info.objects} objects{mark})",
                                choice_value(info.path)))
        return choices

    def trained_on(self, checkpoint: str | None) -> TrainedOn | None:
        """What a checkpoint was trained on (None for the untrained start or a Hub name not yet loaded)."""
        from ..hub.hosted import checkpoint_headline

        if not checkpoint or checkpoint == UNTRAINED:
            return None
        for hosted in self.hosted:
            if str(hosted.path) == checkpoint:
                return TrainedOn(hosted.dataset, dict(hosted.metrics), hosted=True)
        path = Path(checkpoint)
        if not path.is_dir():
            return None
        dataset, metrics = checkpoint_headline(path)
        return TrainedOn(dataset, metrics)

    def default_checkpoint(self, name: str) -> str:
        """The weights a model opens with, by DEFAULT_WEIGHTS_RULE: the host's first listed ones; else the local
        ones trained on a benchmark with the best test AUC (then HM); else UNTRAINED. Every tab uses this."""
        hosted = self.hosted_checkpoints(name)
        if hosted:
            return str(hosted[0].path)
        best, best_key = UNTRAINED, None
        for _, value in self.checkpoint_choices(name)[1:]:
            facts = self.trained_on(value)
            if facts is None or facts.benchmark is None or "AUC" not in facts.metrics:
                continue
            if best_key is None or facts.rank_key > best_key:
                best, best_key = value, facts.rank_key
        return best

    def newest_checkpoint(self, name: str) -> str:
        """The host's first checkpoint of a model, else the newest local one this visitor may use, else UNTRAINED."""
        choices = self.checkpoint_choices(name)
        return choices[1][1] if len(choices) > 1 else UNTRAINED

    def _cache_key(self, name: str, checkpoint: str) -> tuple[str, str, str, float]:
        if checkpoint == UNTRAINED:
            return name, UNTRAINED, "", 0.0
        # A local folder that training rewrote must be loaded again, so its file time is part of the key; a Hub
        # repo is keyed by whose login read it.
        return (name, *cache_identity(checkpoint))

    def get_model(self, name: str, checkpoint: str | None = None) -> CompositionModel:
        """A model ready for inference: cached by (name, checkpoint); loaded once even when many ask at once.
        Checkpoints come only from the weights folder or the Hub (confinement.locate_checkpoint)."""
        checkpoint = (checkpoint or UNTRAINED).strip()
        model_class(name)  # unknown names fail here with the registry's message
        key = self._cache_key(name, checkpoint)
        with self._lock:
            model = self._models.get(key)
            if model is not None:
                self._models.move_to_end(key)
                return model
            loading_lock = self._loading_locks.setdefault(key, threading.Lock())
        with loading_lock:
            with self._lock:
                model = self._models.get(key)
            if model is None:
                model = self._load(name, checkpoint)
                with self._lock:
                    self._models[key] = model
                    while len(self._models) > MAX_CACHED_MODELS:
                        self._models.popitem(last=False)
            with self._lock:
                self._loading_locks.pop(key, None)
        return model

    def _load(self, name: str, checkpoint: str) -> CompositionModel:
        if checkpoint == UNTRAINED:
            model = load_model(name, backbone=self.backbone_spec, backbone_precision=self.backbone.precision)
            model.eval()
            return model
        directory, config = checkpoint_config(checkpoint)
        shown = shown_name(checkpoint)
        if config["model_type"] != name:
            raise CheckpointError(
                f"{shown} holds a {self.display_name(config['model_type'])} checkpoint; choose that model "
                f"or another checkpoint.")
        trained_on = config.get("backbone")
        if trained_on != self.backbone_spec:
            raise CheckpointError(
                f"{shown} was trained with the backbone {trained_on}, but this app runs {self.backbone_spec}. "
                f"Start the app with --backbone {trained_on} to use it.")
        try:
            return load_model(name, checkpoint=directory, backbone_precision=self.backbone.precision)
        except CheckpointError as error:
            raise CheckpointError(scrub(str(error), directory, checkpoint)) from None

    # ---------------------------------------------------------------- datasets
    def remember_dataset(self, vocabulary: DatasetVocabulary, visitor: str | None = None) -> None:
        """Offer a loaded dataset's vocabulary in this visitor's Predict tab (their most recent few)."""
        visitor = current_visitor() if visitor is None else visitor
        with self._lock:
            own = self._datasets.pop(visitor, None) or OrderedDict()
            self._datasets[visitor] = own
            own.pop(vocabulary.name, None)
            own[vocabulary.name] = vocabulary
            while len(own) > MAX_DATASETS_PER_VISITOR:
                own.popitem(last=False)
            while len(self._datasets) > MAX_VISITORS_WITH_DATASETS:
                self._datasets.popitem(last=False)

    def forget_visitor(self, visitor: str) -> None:
        """Drop what the app remembers for a visitor whose session ended."""
        with self._lock:
            self._datasets.pop(visitor, None)

    def dataset_vocabularies(self, visitor: str | None = None) -> list[DatasetVocabulary]:
        """Vocabularies of the datasets this visitor loaded, newest first."""
        visitor = current_visitor() if visitor is None else visitor
        with self._lock:
            return list(reversed((self._datasets.get(visitor) or {}).values()))


def dataset_vocabulary(dataset: Any) -> DatasetVocabulary:
    """The vocabulary of a loaded CompositionDataset."""
    return DatasetVocabulary(
        name=dataset.name,
        states=list(dataset.states),
        objects=list(dataset.objects),
        pairs=[tuple(pair) for pair in dataset.candidate_pairs("test")],
        seen_pairs=[tuple(pair) for pair in dataset.train_pairs],
    )


def default_backbone_request() -> str | None:
    """The backbone asked for by CZSL_BACKBONE, if any."""
    return os.environ.get("CZSL_BACKBONE") or None
