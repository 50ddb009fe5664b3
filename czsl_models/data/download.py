"""Installing MIT-States, UT-Zappos and C-GQA from their official archives, a mirror or local files.

Each archive is fetched (resumable, retried, hashed), unpacked in a stream into a staging folder next
to the target, reorganised into the czsl layout, and checked: the dataset must load and every image
its metadata lists must exist and open. Only then is the staging folder renamed into place, with
``DOWNLOAD.json`` recording each archive's source, size and sha256 and how the loaded counts compare
with the published statistics. A damaged archive fails with one line naming the file and leaves no
half-made dataset; running the command again on an installed dataset does nothing.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from .archive import _archive_parts, _is_junk, _is_readable_image, _is_symlink
from .benchmarks import SPLIT_ARCHIVE_FOLDERS, ArchiveSource, Benchmark, benchmark, compare_with_published
from .czsl import _load_metadata, _safe_relative_path, load_czsl_dataset
from .dataset import DEFAULT_SPLIT_NAME
from .dataset import DatasetError
from .fetch import FetchedFile, FetchPolicy, check_free_space, download, probe_size, sha256_of

DATA_DIR_ENV = "CZSL_DATA_DIR"
MIRROR_ENV = "CZSL_DATA_MIRROR"
RECORD_NAME = "DOWNLOAD.json"
DOWNLOADS_FOLDER = ".downloads"
_COPY_CHUNK = 1 << 20

# Where each archive member goes inside the staging folder: a function from the member's path parts to
# the destination parts, or None to leave the member out.
Selector = Callable[[tuple[str, ...]], "tuple[str, ...] | None"]


def default_root() -> Path:
    """The data root: $CZSL_DATA_DIR, else ./data."""
    return Path(os.environ.get(DATA_DIR_ENV) or "data").expanduser()


@dataclass
class InstallReport:
    """What an install did: the dataset folder, the archives used, and its counts against the published ones."""

    name: str
    target: Path
    archives: list[dict] = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    differences: list[tuple[str, int, int]] = field(default_factory=list)
    already_installed: bool = False

    def describe(self, title: str) -> str:
        """Plain lines for the terminal."""
        if self.already_installed:
            head = f"{title} is already installed in {self.target} (see {RECORD_NAME}); nothing to do."
        else:
            head = f"{title} installed in {self.target}."
        lines = [head, (f"  {self.counts.get('states')} states, {self.counts.get('objects')} objects, "
                        f"{self.counts.get('train_pairs')} training pairs; images train/val/test: "
                        f"{self.counts.get('train_images')}/{self.counts.get('val_images')}/{self.counts.get('test_images')}")]
        if not self.differences:
            lines.append("  The counts match the published statistics.")
        else:
            shown = ", ".join(f"{key} {got:,} (published {want:,})" for key, got, want in self.differences)
            lines.append(f"  The counts do NOT match the published statistics: {shown}.")
        return "\n".join(lines)


# ----------------------------------------------------------------------------- getting the archives


def _mirror_url(mirror: str, file_name: str) -> str:
    return mirror.rstrip("/") + "/" + file_name


def _hub_fetch(source: ArchiveSource) -> FetchedFile:
    """C-GQA from its Hugging Face dataset repo, through the huggingface_hub cache (which resumes)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        path = Path(hf_hub_download(source.hub_repo, source.file_name, repo_type="dataset"))
    except LocalEntryNotFoundError:
        raise DatasetError(f"cannot get {source.file_name} from the Hugging Face dataset {source.hub_repo}: "
                           f"it is not cached and the Hub cannot be reached (offline?); use --mirror or --from-files") from None
    except (HfHubHTTPError, OSError) as error:
        raise DatasetError(f"cannot get {source.file_name} from the Hugging Face dataset {source.hub_repo}: "
                           f"{str(error).splitlines()[0] if str(error) else type(error).__name__}") from None
    return FetchedFile(path, f"hf://datasets/{source.hub_repo}/{source.file_name}", path.stat().st_size, sha256_of(path))


@dataclass
class _Fetcher:
    """Gets each archive from local files, a mirror, the Hub or its official URLs, in that order of preference."""

    downloads: Path
    mirror: str | None
    from_files: Path | None
    policy: FetchPolicy
    log: Callable[[str], None]

    def planned_bytes(self, sources: tuple[ArchiveSource, ...]) -> int:
        """Bytes still to download plus the unpacked size (about the archive size: the images are JPEGs)."""
        needed = 0
        for source in sources:
            if self.from_files is not None:
                path = self.from_files / source.file_name
                needed += path.stat().st_size if path.is_file() else 0
                continue
            if (self.downloads / source.file_name).is_file():
                needed += (self.downloads / source.file_name).stat().st_size
                continue
            url = _mirror_url(self.mirror, source.file_name) if self.mirror else (source.urls[0] if source.urls else None)
            size = probe_size(url, self.policy.timeout_s) if url and not (source.hub_repo and not self.mirror) else None
            part = self.downloads / (source.file_name + ".part")
            if size:
                needed += 2 * size - (part.stat().st_size if part.is_file() else 0)
        return needed

    def fetch(self, source: ArchiveSource) -> FetchedFile:
        """The archive on local disk, with its source, size and sha256."""
        if self.from_files is not None:
            path = self.from_files / source.file_name
            if not path.is_file():
                raise DatasetError(f"{source.file_name} is not in {self.from_files}; download it from "
                                   f"{source.urls[0] if source.urls else source.hub_repo} and put it there")
            self.log(f"Using {path}")
            return FetchedFile(path, str(path), path.stat().st_size, sha256_of(path))
        cached = self.downloads / source.file_name
        if cached.is_file():  # a complete download from a run that failed later
            return FetchedFile(cached, str(cached), cached.stat().st_size, sha256_of(cached))
        if self.mirror:
            url = _mirror_url(self.mirror, source.file_name)
            self.log(f"Downloading {url}")
            return download(url, cached, self.policy, on_retry=self.log)
        if source.hub_repo:
            self.log(f"Downloading {source.file_name} from the Hugging Face dataset {source.hub_repo}")
            return _hub_fetch(source)
        errors = []
        for url in source.urls:
            self.log(f"Downloading {url}")
            try:
                return download(url, cached, self.policy, on_retry=self.log)
            except DatasetError as error:
                errors.append(str(error))
        raise DatasetError(errors[-1] if len(errors) == 1 else f"{source.file_name}: every known address failed; last: {errors[-1]}")


def _recorded_archives(root: Path) -> dict[str, tuple[str, Path]]:
    """file name -> (sha256, the DOWNLOAD.json that recorded it) over every dataset installed under root."""
    recorded: dict[str, tuple[str, Path]] = {}
    for record_path in sorted(root.glob(f"*/{RECORD_NAME}")):
        try:
            record = json.loads(record_path.read_text())
            for archive in record.get("archives", []):
                recorded.setdefault(archive["file"], (archive["sha256"], record_path))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
    return recorded


# ----------------------------------------------------------------------------- unpacking


def _member_parts(name: str, archive_name: str) -> tuple[str, ...]:
    try:
        return _archive_parts(name)
    except DatasetError:
        raise DatasetError(f"{archive_name} holds an unsafe path {name!r}; nothing was installed") from None


def _destination(staging: Path, parts: tuple[str, ...], name: str, archive_name: str) -> Path:
    destination = staging.joinpath(*parts)
    if not destination.resolve().is_relative_to(staging.resolve()):
        raise DatasetError(f"{archive_name} holds an unsafe path {name!r}; nothing was installed")
    return destination


def _copy_stream(source, destination: Path, limit: int | None, name: str, archive_name: str) -> int:
    """Copy one member in chunks, refusing one that unpacks to more than it declares."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(destination, "wb") as target:
        while chunk := source.read(_COPY_CHUNK):
            written += len(chunk)
            if limit is not None and written > limit:
                raise DatasetError(f"{archive_name}: {name!r} unpacks to more bytes than it declares; refused")
            target.write(chunk)
    return written


def _zip_members(archive: zipfile.ZipFile, archive_name: str, select: Selector) -> Iterator[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
    seen: set[str] = set()
    for info in archive.infolist():
        parts = _member_parts(info.filename, archive_name) if info.filename.strip("/.") else ()
        if _is_symlink(info):
            raise DatasetError(f"{archive_name} holds a symbolic link {info.filename!r}; nothing was installed")
        if info.is_dir() or not parts or _is_junk(parts):
            continue
        target = select(parts)
        if target is None:
            continue
        key = "/".join(target).lower()
        if key in seen:
            raise DatasetError(f"{archive_name} holds {'/'.join(target)!r} twice")
        seen.add(key)
        yield info, target


def extract_zip(path: Path, staging: Path, select: Selector, archive_name: str) -> int:
    """Unpack the selected members of a zip into staging; returns how many files were written."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise DatasetError(f"{archive_name} is damaged or truncated ({error}); nothing was installed") from None
    with archive:
        members = list(_zip_members(archive, archive_name, select))
        check_free_space(staging, sum(info.file_size for info, _ in members), f"unpacking {archive_name}")
        for info, parts in members:
            if info.flag_bits & 0x1:
                raise DatasetError(f"{archive_name} is password-protected ({info.filename!r})")
            destination = _destination(staging, parts, info.filename, archive_name)
            try:
                with archive.open(info) as source:
                    _copy_stream(source, destination, info.file_size, info.filename, archive_name)
            except (zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError, OSError) as error:
                raise DatasetError(f"{archive_name} is damaged ({info.filename}: {error}); nothing was installed") from None
    return len(members)


def extract_tar(path: Path, staging: Path, select: Selector, archive_name: str) -> int:
    """Unpack the selected regular files of a .tar.gz into staging, reading it as a stream."""
    count = 0
    try:
        with tarfile.open(path, mode="r|*") as archive:
            for member in archive:
                parts = _member_parts(member.name, archive_name) if member.name.strip("/.") else ()
                if member.issym() or member.islnk():
                    raise DatasetError(f"{archive_name} holds a link {member.name!r}; nothing was installed")
                if not member.isfile() or not parts or _is_junk(parts):
                    continue  # directories; devices and FIFOs are never written
                target = select(parts)
                if target is None:
                    continue
                destination = _destination(staging, target, member.name, archive_name)
                source = archive.extractfile(member)
                _copy_stream(source, destination, member.size, member.name, archive_name)
                count += 1
    except (tarfile.TarError, EOFError, OSError, zipfile.BadZipFile) as error:
        raise DatasetError(f"{archive_name} is damaged or truncated ({error or type(error).__name__}); "
                           f"nothing was installed") from None
    return count


def _under(prefix: tuple[str, ...], rename: Callable[[tuple[str, ...]], tuple[str, ...]] = lambda p: p) -> Selector:
    """Members below `prefix`, with the prefix taken off (and optionally renamed)."""
    def select(parts: tuple[str, ...]) -> tuple[str, ...] | None:
        if len(parts) > len(prefix) and parts[: len(prefix)] == prefix:
            return rename(parts[len(prefix):])
        return None
    return select


def _mit_states_folder(parts: tuple[str, ...]) -> tuple[str, ...]:
    # The metadata names folders like "ancient_building"; the zip has "ancient building".
    return ("images", parts[0].replace(" ", "_"), *parts[1:]) if len(parts) > 1 else ("images", *parts)


def _metadata_prefix(path: Path, archive_name: str) -> tuple[str, ...]:
    """The folder of a zip that holds metadata_<split>.t7 (C-GQA's `cgqa/`)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise DatasetError(f"{archive_name} is damaged or truncated ({error}); nothing was installed") from None
    metadata = f"metadata_{DEFAULT_SPLIT_NAME}.t7"
    for name in names:
        parts = _member_parts(name, archive_name) if name.strip("/.") else ()
        if parts and parts[-1] == metadata:
            return parts[:-1]
    raise DatasetError(f"{archive_name} holds no {metadata}; it is not the C-GQA archive")


def reorganise_ut_zappos(staging: Path, raw_folder: str = "_images") -> int:
    """Place each raw UT-Zappos image (`_image`) at images/<image>, as a hard link where the file system allows."""
    records = _load_metadata(staging / f"metadata_{DEFAULT_SPLIT_NAME}.t7")
    raw_root, placed = staging / raw_folder, 0
    for index, record in enumerate(records):
        raw = record.get("_image")
        if not isinstance(raw, str):
            raise DatasetError(f"UT-Zappos metadata record {index} has no '_image' path")
        raw = _safe_relative_path(raw, "UT-Zappos metadata")
        raw = raw[len("ut-zap50k-images/"):] if raw.startswith("ut-zap50k-images/") else raw
        source = raw_root / raw
        target = staging / "images" / _safe_relative_path(record["image"], "UT-Zappos metadata")
        if not source.is_file():
            raise DatasetError(f"ut-zap50k-images/{raw} (listed in the UT-Zappos metadata) is missing from ut-zap50k-images.zip")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)  # the reference copies in order, so a later record wins
        try:
            os.link(source, target)
        except OSError:  # another file system, or links not allowed: copy
            shutil.copy2(source, target)
        placed += 1
    shutil.rmtree(raw_root)
    return placed


# ----------------------------------------------------------------------------- checking


def verify_images(root: Path, archive_name: str, progress: bool = False) -> int:
    """Every image the metadata lists exists and opens; raises naming the first one that does not."""
    from tqdm.auto import tqdm

    records = _load_metadata(root / f"metadata_{DEFAULT_SPLIT_NAME}.t7")
    for record in tqdm(records, desc="checking images", unit="img", disable=not progress, file=sys.stderr):
        relative = _safe_relative_path(record["image"], "metadata")
        path = root / "images" / relative
        if not path.is_file():
            raise DatasetError(f"images/{relative} (listed in the metadata) is missing from {archive_name}")
        if not _is_readable_image(path):
            raise DatasetError(f"images/{relative} from {archive_name} is not a readable image (damaged?)")
    return len(records)


# ----------------------------------------------------------------------------- installing


def _build(bench: Benchmark, fetched: dict[str, FetchedFile], staging: Path) -> str:
    """Unpack and reorganise the fetched archives into staging; returns the name of the images archive."""
    if bench.name == "cgqa":
        archive = fetched["cgqa.zip"]
        prefix = _metadata_prefix(archive.path, "cgqa.zip")
        extract_zip(archive.path, staging, _under(prefix), "cgqa.zip")
        return "cgqa.zip"
    split_folder = SPLIT_ARCHIVE_FOLDERS[bench.name]
    split_archive = bench.archives[1].file_name
    if not extract_tar(fetched[split_archive].path, staging, _under((split_folder,)), split_archive):
        raise DatasetError(f"{split_archive} holds no {split_folder}/ folder; it is not the czsl split archive")
    images_archive = bench.archives[0].file_name
    if bench.name == "mit-states":
        select = _under(("release_dataset", "images"), _mit_states_folder)
        if not extract_zip(fetched[images_archive].path, staging, select, images_archive):
            raise DatasetError(f"{images_archive} holds no release_dataset/images/ folder; it is not MIT-States")
    else:
        if not extract_zip(fetched[images_archive].path, staging, _under(("ut-zap50k-images",), lambda p: ("_images", *p)),
                           images_archive):
            raise DatasetError(f"{images_archive} holds no ut-zap50k-images/ folder; it is not UT-Zap50K")
        reorganise_ut_zappos(staging)
    return images_archive


def _loaded_counts(root: Path) -> dict:
    try:
        return load_czsl_dataset(root).summary()
    except DatasetError as error:
        raise DatasetError(f"the archives do not make a usable dataset: {error}") from None


def install_benchmark(
    name: str,
    root: str | Path | None = None,
    mirror: str | None = None,
    from_files: str | Path | None = None,
    force: bool = False,
    accept_changed: bool = False,
    keep_archives: bool = False,
    policy: FetchPolicy | None = None,
    log: Callable[[str], None] = lambda text: print(text, file=sys.stderr),
) -> InstallReport:
    """Download (or take), unpack, check and install one benchmark under root; a no-op when it is installed."""
    bench = benchmark(name)
    root = Path(root).expanduser() if root is not None else default_root()
    mirror = mirror if mirror is not None else (os.environ.get(MIRROR_ENV) or None)
    policy = policy or FetchPolicy()
    target = root / bench.folder
    record_path = target / RECORD_NAME
    if target.exists() and not force:
        if not record_path.is_file():
            raise DatasetError(f"{target} exists but was not installed by this command (no {RECORD_NAME}); "
                               f"move it away or pass --force to replace it")
        record = json.loads(record_path.read_text())
        counts = _loaded_counts(target)
        return InstallReport(bench.name, target, record.get("archives", []), counts,
                             compare_with_published(counts, bench.published), already_installed=True)
    root.mkdir(parents=True, exist_ok=True)
    fetcher = _Fetcher(root / DOWNLOADS_FOLDER, mirror, Path(from_files).expanduser() if from_files else None, policy, log)
    check_free_space(root, fetcher.planned_bytes(bench.archives), f"installing {bench.title}")
    recorded = _recorded_archives(root)
    fetched: dict[str, FetchedFile] = {}
    for source in bench.archives:
        archive = fetcher.fetch(source)
        pinned = recorded.get(source.file_name)
        if pinned and pinned[0] != archive.sha256 and not accept_changed:
            _discard(archive, root)
            raise DatasetError(
                f"{source.file_name} from {archive.source} has sha256 {archive.sha256[:16]}… but {pinned[1]} "
                f"recorded {pinned[0][:16]}…: the file changed since it was installed; check the source, "
                f"or pass --accept-changed to install it anyway")
        fetched[source.file_name] = archive
    staging = Path(tempfile.mkdtemp(prefix=f".{bench.folder}.installing-", dir=root))
    try:
        log(f"Unpacking into {staging.name}")
        try:
            images_archive = _build(bench, fetched, staging)
            counts = _loaded_counts(staging)
            verify_images(staging, images_archive, progress=policy.progress)
        except DatasetError:
            for archive in fetched.values():  # a damaged download is fetched afresh next time
                _discard(archive, root)
            raise
        differences = compare_with_published(counts, bench.published)
        archives = [{"file": file_name, "source": a.source, "size": a.size, "sha256": a.sha256}
                    for file_name, a in fetched.items()]
        record = {"dataset": bench.name, "title": bench.title, "licence": bench.licence,
                  "installed": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                  "archives": archives, "counts": {k: counts[k] for k in bench.published if k in counts},
                  "published": bench.published, "matches_published": not differences}
        (staging / RECORD_NAME).write_text(json.dumps(record, indent=2) + "\n")
        _swap_into_place(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    if not keep_archives:
        for archive in fetched.values():
            _discard(archive, root)
    return InstallReport(bench.name, target, archives, counts, differences)


def _discard(archive: FetchedFile, root: Path) -> None:
    """Delete an archive only if this command downloaded it (never a user's file or the Hub cache)."""
    if archive.path.parent == root / DOWNLOADS_FOLDER:
        archive.path.unlink(missing_ok=True)


def _swap_into_place(staging: Path, target: Path) -> None:
    """Rename the checked staging folder to the target; an old install is moved aside first, then removed."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.replaced-{os.getpid()}")
        os.rename(target, old)
    os.rename(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------- command line


def add_download_arguments(parser) -> None:
    """Options of `download`."""
    from .benchmarks import BENCHMARKS

    parser.add_argument("dataset", choices=sorted(BENCHMARKS), help="the benchmark to install")
    parser.add_argument("--root", default=None, help=f"data folder (default ${DATA_DIR_ENV}, else ./data)")
    parser.add_argument("--mirror", default=None,
                        help=f"fetch every archive as URL/<file name> (default ${MIRROR_ENV}; else the official addresses)")
    parser.add_argument("--from-files", default=None, metavar="DIR", help="use archives downloaded by hand into DIR")
    parser.add_argument("--force", action="store_true", help="install again over an existing folder")
    parser.add_argument("--accept-changed", action="store_true",
                        help="install even if an archive's sha256 differs from the one recorded before")
    parser.add_argument("--keep-archives", action="store_true", help=f"keep the downloaded archives in <root>/{DOWNLOADS_FOLDER}")
    parser.add_argument("--retries", type=int, default=5, help="retries per download (default 5)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds without data before a retry (default 60)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run_download_command(args) -> int:
    """Install one benchmark and print what was done; errors print one line."""
    from .feasibility_files import install_feasibility

    policy = FetchPolicy(timeout_s=args.timeout, retries=max(args.retries, 0), progress=not args.no_progress)
    try:
        report = install_benchmark(
            args.dataset, root=args.root, mirror=args.mirror, from_files=args.from_files, force=args.force,
            accept_changed=args.accept_changed, keep_archives=args.keep_archives, policy=policy)
        mirror = args.mirror if args.mirror is not None else (os.environ.get(MIRROR_ENV) or None)
        feasibility = install_feasibility(benchmark(args.dataset).name, report.target, mirror=mirror,
                                          from_files=args.from_files, policy=policy)
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report.describe(benchmark(args.dataset).title))
    print(f"Released open-world feasibility scores (sha256 checked): {feasibility}")
    return 0
