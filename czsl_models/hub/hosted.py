"""Checkpoints a host lists for the app (CZSL_CHECKPOINTS): fetched at start, offered by a readable name."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

CHECKPOINTS_ENV = "CZSL_CHECKPOINTS"
LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class HostedCheckpoint:
    """A Hub checkpoint fetched into the local cache, with what its config and metrics.json say."""

    repo_id: str
    revision: str | None
    path: Path
    model_type: str
    backbone: str
    dataset: str | None = None
    metrics: dict = field(default_factory=dict)  # headline test metrics, fractions

    @property
    def label(self) -> str:
        """A readable menu label: model, dataset, headline metrics, and the repo it came from."""
        from ..models.registry import model_class

        name = model_class(self.model_type).display_name or self.model_type
        trained_on = f" trained on {self.dataset}" if self.dataset else ""
        scores = ", ".join(f"{short} {100 * float(self.metrics[key]):.1f}"
                           for key, short in (("best_hm", "HM"), ("AUC", "AUC")) if key in self.metrics)
        revision = f"@{self.revision}" if self.revision else ""
        return f"{name}{trained_on}" + (f" ({scores})" if scores else "") + f", {self.repo_id}{revision}"


def parse_checkpoint_list(text: str | None) -> list[tuple[str, str | None]]:
    """'owner/a, owner/b@v1' -> [('owner/a', None), ('owner/b', 'v1')]."""
    entries = []
    for item in (text or "").replace("\n", ",").split(","):
        item = item.strip()
        if item:
            repo_id, _, revision = item.partition("@")
            entries.append((repo_id.strip(), revision.strip() or None))
    return entries


def checkpoint_headline(directory: Path) -> tuple[str | None, dict]:
    """The dataset and closed-world test metrics recorded in a checkpoint's metrics.json, if any."""
    try:
        document = json.loads((directory / "metrics.json").read_text())
    except (OSError, ValueError):
        return None, {}
    if not isinstance(document, dict):
        return None, {}
    closed = document.get("closed_world")
    if not isinstance(closed, dict):  # a plain `train` run: its top level holds the metrics of its phase
        closed = document if document.get("phase") == "test" else {}
    dataset = (document.get("reproduction") or {}).get("dataset") or document.get("dataset")
    metrics = {key: closed[key] for key in ("best_seen", "best_unseen", "best_hm", "AUC")
               if isinstance(closed.get(key), (int, float))}
    return (str(dataset) if dataset else None), metrics


def fetch_hosted_checkpoints(text: str | None = None, token: str | None = None,
                             log: Callable[[str], None] | None = None) -> list[HostedCheckpoint]:
    """Fetch every listed checkpoint (the cache answers when it can), logging one line each; broken ones are skipped."""
    from ..models.checkpoints import CheckpointError, read_checkpoint_config, resolve_checkpoint

    log = log or LOGGER.info
    entries = parse_checkpoint_list(os.environ.get(CHECKPOINTS_ENV) if text is None else text)
    hosted: list[HostedCheckpoint] = []
    for index, (repo_id, revision) in enumerate(entries, start=1):
        shown = repo_id + (f"@{revision}" if revision else "")
        log(f"Fetching checkpoint {index} of {len(entries)}: {shown}")
        try:
            directory = resolve_checkpoint(repo_id, revision=revision, token=token)
            config = read_checkpoint_config(directory)
        except CheckpointError as error:
            LOGGER.warning("Skipping checkpoint %s: %s", shown, error)
            continue
        dataset, metrics = checkpoint_headline(directory)
        checkpoint = HostedCheckpoint(repo_id, revision, directory, config["model_type"], str(config.get("backbone")),
                                      dataset, metrics)
        log(f"Checkpoint {index} of {len(entries)} ready: {checkpoint.label}")
        hosted.append(checkpoint)
    return hosted
