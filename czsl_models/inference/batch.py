"""Batch prediction: photos from files, folders and zips, streamed through a model in bounded batches, with one
output row per image and rank (CSV or JSON lines). A file that cannot be read becomes an error row, never a stop."""

from __future__ import annotations

import csv
import json
import time
import zipfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Iterable, Iterator, Sequence

from PIL import Image

from ..inputs.images import ImageError, load_image

if TYPE_CHECKING:
    from ..models.base import CompositionModel, Prediction
    from ..inputs.vocab import Vocabulary

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
MAX_MEMBER_BYTES = 256 << 20  # one photo inside a zip; read into memory, so bounded
COLUMNS = ("image", "rank", "state", "object", "score", "model", "checkpoint", "backbone", "error")
OUTPUT_FORMATS = (".csv", ".jsonl")


@dataclass(frozen=True)
class ImageSource:
    """One photo to read: a file, or a member of a zip archive (name is what the output calls it)."""

    name: str
    path: Path
    member: str | None = None


@dataclass
class BatchSummary:
    """What a batch run did: images predicted, the ones that could not be read and why, rows written, time."""

    predicted: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    rows: int = 0
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        """Predicted images per second of wall time."""
        return self.predicted / self.seconds if self.seconds > 0 else 0.0


def _is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


def _zip_members(path: Path) -> list[ImageSource]:
    with zipfile.ZipFile(path) as archive:
        names = [info.filename for info in archive.infolist()
                 if not info.is_dir() and _is_image_name(info.filename) and not info.filename.startswith("__MACOSX/")]
    return [ImageSource(f"{path}/{name}", path, name) for name in sorted(names)]


def find_images(paths: Iterable[str | Path]) -> tuple[list[ImageSource], list[tuple[str, str]]]:
    """The photos under the given files, folders (recursively, by image suffix) and zips, in a stable order;
    plus (path, reason) for each given path that holds nothing readable."""
    sources: list[ImageSource] = []
    problems: list[tuple[str, str]] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = [ImageSource(str(file), file) for file in sorted(path.rglob("*"))
                     if file.is_file() and _is_image_name(file.name)]
            zips = [file for file in sorted(path.rglob("*.zip")) if file.is_file()]
        elif path.is_file():
            found, zips = ([], [path]) if path.suffix.lower() == ".zip" else ([ImageSource(str(path), path)], [])
        else:
            problems.append((str(given), "no such file or folder"))
            continue
        for archive in zips:
            try:
                found += _zip_members(archive)
            except (zipfile.BadZipFile, OSError) as error:
                problems.append((str(archive), f"not a readable zip archive ({error})"))
        if not found and path.is_dir():
            problems.append((str(given), "no photos in this folder (looked for " + ", ".join(sorted(IMAGE_SUFFIXES))
                             + ")"))
        sources += found
    return sources, problems


class ImageReader:
    """Opens sources one by one, keeping each zip archive open while it is in use (a context manager)."""

    def __init__(self) -> None:
        self._stack = ExitStack()
        self._archives: dict[Path, zipfile.ZipFile] = {}

    def __enter__(self) -> "ImageReader":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    def read(self, source: ImageSource) -> Image.Image:
        """The photo as RGB, with the library's checks; ImageError says why it cannot be used."""
        if source.member is None:
            return load_image(source.path)
        archive = self._archives.get(source.path)
        if archive is None:
            archive = self._stack.enter_context(zipfile.ZipFile(source.path))
            self._archives[source.path] = archive
        info = archive.getinfo(source.member)
        if info.file_size > MAX_MEMBER_BYTES:
            raise ImageError(f"{source.member} is {info.file_size / 2**20:.0f} MiB unpacked; the limit for one photo "
                             f"in a zip is {MAX_MEMBER_BYTES >> 20} MiB.")
        try:
            data = archive.read(info)
        except (zipfile.BadZipFile, OSError, ValueError) as error:
            raise ImageError(f"{source.member} cannot be unpacked ({error}).") from None
        return load_image(data, Path(source.member).name)


class PredictionWriter:
    """Rows of (image, rank, state, object, score, model, checkpoint, backbone, error) as CSV or JSON lines."""

    def __init__(self, handle: IO[str], kind: str, model: str, checkpoint: str, backbone: str) -> None:
        self.kind = kind
        self.handle = handle
        self.context = {"model": model, "checkpoint": checkpoint, "backbone": backbone}
        self._csv = csv.DictWriter(handle, fieldnames=COLUMNS) if kind == ".csv" else None
        if self._csv is not None:
            self._csv.writeheader()
        self.rows = 0

    def _write(self, row: dict) -> None:
        if self._csv is not None:
            self._csv.writerow(row)
        else:
            self.handle.write(json.dumps(row) + "\n")
        self.rows += 1

    def prediction(self, image: str, prediction: "Prediction") -> None:
        """One row per rank of one image's ranking."""
        for rank, item in enumerate(prediction.ranking, start=1):
            self._write({"image": image, "rank": rank, "state": item.state, "object": item.object,
                         "score": round(float(item.score), 6), **self.context, "error": ""})

    def error(self, image: str, message: str) -> None:
        """One row saying why an image was left out."""
        self._write({"image": image, "rank": None if self.kind == ".jsonl" else "", "state": "", "object": "",
                     "score": None if self.kind == ".jsonl" else "", **self.context, "error": message})


def output_kind(path: str | Path) -> str:
    """'.csv' or '.jsonl' from an output file name; ValueError for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise ValueError(f"--output must end in .csv or .jsonl, not {Path(path).name!r}.")
    return suffix


def _batches(sources: Sequence[ImageSource], size: int) -> Iterator[Sequence[ImageSource]]:
    for start in range(0, len(sources), size):
        yield sources[start:start + size]


def predict_sources(model: "CompositionModel", sources: Sequence[ImageSource], vocab: "Vocabulary",
                    writer: PredictionWriter, batch_size: int = 16, top_k: int = 5, bias: float = 0.0,
                    progress: bool | None = None) -> BatchSummary:
    """Read, predict and write batch_size photos at a time (memory stays bounded whatever the number of photos);
    progress: a bar on stderr (None: only when stderr is a terminal)."""
    from tqdm.auto import tqdm

    summary = BatchSummary()
    started = time.perf_counter()
    bar = tqdm(total=len(sources), unit="image", disable=None if progress is None else not progress)
    with ImageReader() as reader, bar:
        for batch in _batches(sources, max(1, int(batch_size))):
            readable: list[tuple[ImageSource, Image.Image]] = []
            for source in batch:
                try:
                    readable.append((source, reader.read(source)))
                except ImageError as error:
                    summary.unreadable.append((source.name, str(error)))
                    writer.error(source.name, str(error))
            if readable:
                predictions = model.predict([image for _, image in readable], vocab, top_k=top_k, bias=bias,
                                            batch_size=len(readable))
                for (source, _), prediction in zip(readable, predictions):
                    writer.prediction(source.name, prediction)
                summary.predicted += len(readable)
            bar.update(len(batch))
    summary.rows = writer.rows
    summary.seconds = time.perf_counter() - started
    return summary


def write_predictions(model: "CompositionModel", paths: Iterable[str | Path], vocab: "Vocabulary",
                      output: str | Path, checkpoint: str = "", batch_size: int = 16, top_k: int = 5,
                      bias: float = 0.0, progress: bool | None = None) -> BatchSummary:
    """Predict every photo under paths into output (.csv or .jsonl), one row per image and rank; paths that
    hold nothing readable and photos that cannot be read become error rows and are listed in the summary."""
    kind = output_kind(output)
    sources, problems = find_images(paths)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w", newline="", encoding="utf-8") as handle:
        writer = PredictionWriter(handle, kind, model.name, checkpoint, model.backbone.name)
        for name, reason in problems:
            writer.error(name, reason)
        summary = predict_sources(model, sources, vocab, writer, batch_size=batch_size, top_k=top_k, bias=bias,
                                  progress=progress)
    summary.unreadable[:0] = problems
    return summary


def summary_lines(summary: BatchSummary, output: str | Path, shown: int = 20) -> list[str]:
    """What a batch run prints when it ends: counts, speed, where the rows are, and the unreadable files."""
    lines = [f"{summary.predicted} photos predicted in {summary.seconds:.1f} s ({summary.images_per_second:.2f} "
             f"photos/s); {summary.rows} rows written to {output}."]
    if summary.unreadable:
        lines.append(f"{len(summary.unreadable)} could not be read (rows with an error in the output):")
        lines += [f"  {name}: {reason}" for name, reason in summary.unreadable[:shown]]
        if len(summary.unreadable) > shown:
            lines.append(f"  ... and {len(summary.unreadable) - shown} more.")
    return lines
