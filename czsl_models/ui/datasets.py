"""Choosing a dataset in the Train and Evaluate tabs: the built-in synthetic one, an uploaded zip,
or a folder on the server."""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from ..hosting.space import current_visitor
from ..hosting.budget import keep_disk_budget, uploads_dir
from ..hosting.quota import prune, upload_budget
from .inputs import InputError, delete_raw_upload, uploaded_path

SOURCE_SYNTHETIC = "Built-in example: coloured shapes"
SOURCE_ZIP = "Upload a zip"
SOURCE_SERVER = "A folder on the server"
SYNTHETIC_SPEC = "synthetic:shapes"
DATA_DIR_ENV = "CZSL_DATA_DIR"
ALLOW_SERVER_PATHS_ENV = "CZSL_ALLOW_SERVER_PATHS"
_UNPACKED: dict[tuple[str, str], str] = {}  # (visitor, uploaded zip) -> its unpacked folder: a second click reuses it
_UNPACK_LOCK = threading.Lock()
ZIP_HELP = ("A zip of photos in folders named after their pair (`red apple/1.jpg`, `sliced bread/2.jpg`, ...), "
            "or of a dataset in the czsl layout (MIT-States, UT-Zappos, C-GQA).")


def server_paths_allowed() -> bool:
    """Folders on the server may be named unless the app runs as a public Space (override with the env var)."""
    setting = os.environ.get(ALLOW_SERVER_PATHS_ENV)
    if setting is not None:
        return setting.strip().lower() in ("1", "true", "yes", "on")
    return not os.environ.get("SPACE_ID")


@dataclass
class DatasetPicker:
    """The components that choose a dataset."""

    source: gr.Radio
    upload: gr.File
    server_path: gr.Textbox

    @property
    def inputs(self) -> list[Any]:
        """The components, in the order dataset_spec takes them."""
        return [self.source, self.upload, self.server_path]


def build_dataset_picker(prefix: str) -> DatasetPicker:
    """Lay out the dataset choice; the zip and path boxes appear only when chosen."""
    choices = [SOURCE_SYNTHETIC, SOURCE_ZIP] + ([SOURCE_SERVER] if server_paths_allowed() else [])
    source = gr.Radio(choices, value=SOURCE_SYNTHETIC, label="Dataset", elem_id=f"{prefix}-dataset-source")
    upload = gr.File(label="Dataset zip", file_types=[".zip"], visible=False, elem_id=f"{prefix}-dataset-zip")
    zip_help = gr.Markdown(ZIP_HELP, visible=False)
    server_path = gr.Textbox(label="Folder on the server", placeholder="/data/mit-states", visible=False,
                             elem_id=f"{prefix}-dataset-path")

    def on_source(value):
        """Show the box that goes with the chosen source."""
        return (gr.update(visible=value == SOURCE_ZIP), gr.update(visible=value == SOURCE_ZIP),
                gr.update(visible=value == SOURCE_SERVER))

    source.change(on_source, inputs=[source], outputs=[upload, zip_help, server_path],
                  api_name=f"{prefix}_dataset_source_changed")
    return DatasetPicker(source, upload, server_path)


def _safe_folder_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "dataset"
    return cleaned[:60]


def dataset_spec(source: str, upload: Any, server_path: str | None) -> str:
    """The load_dataset spec of the choice; an uploaded zip is unpacked (safely) first."""
    if source == SOURCE_ZIP:
        path = uploaded_path(upload)
        if path is None:
            raise InputError("Upload a zip of the dataset first.")
        from ..data import import_zip

        visitor = current_visitor()
        with _UNPACK_LOCK:
            known = _UNPACKED.get((visitor, path))
            if known is not None and Path(known).is_dir():
                return known
            if not Path(path).is_file():
                raise InputError(f"{Path(path).name} is no longer on the server (uploads are deleted once read); "
                                 "upload it again.")
            stamp = time.strftime("%Y%m%d-%H%M%S")
            owner = uploads_dir() / (visitor or "host")
            target = owner / f"{_safe_folder_name(Path(path).stem)}-{stamp}-{os.urandom(3).hex()}"
            try:
                report = import_zip(path, target, max_total_bytes=min(upload_budget()[0], 2_000_000_000))
            except BaseException:
                shutil.rmtree(target, ignore_errors=True)  # import_zip stages and cleans up; this is a second guard
                raise
            finally:
                delete_raw_upload(path)  # read once: the unpacked copy is what is kept (and budgeted)
            _UNPACKED[(visitor, path)] = str(report.target)
            for gone in prune(uploads_dir(), keep={report.target}):
                for key, folder in list(_UNPACKED.items()):
                    if Path(folder) == gone:
                        del _UNPACKED[key]
            keep_disk_budget(keep={report.target})
            return str(report.target)
    if source == SOURCE_SERVER:
        if not server_paths_allowed():
            raise InputError("Folders on the server are switched off here; upload a zip instead.")
        folder = (server_path or "").strip()
        if not folder:
            raise InputError("Type the path of a dataset folder on the server.")
        if not Path(folder).expanduser().is_dir():
            raise InputError("There is no such folder on the server.")
        return str(Path(folder).expanduser())
    return SYNTHETIC_SPEC
