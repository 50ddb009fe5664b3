"""Small archives with the real internal layouts of the benchmark downloads, and a local HTTP mirror serving them."""

from __future__ import annotations

import hashlib
import io
import socket
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import torch
from PIL import Image

SPLIT = "compositional-split-natural"


def jpeg_bytes(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 12), colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def _record(image: str, attr: str, obj: str, phase: str, **extra: str) -> dict:
    return {"image": image, "attr": attr, "obj": obj, "set": phase, **extra}


# MIT-States: single-word states and objects; the zip's folders read "<state> <object>".
MIT_PAIRS = {
    "train": ["ancient building", "new car", "old car", "old building"],
    "val": ["ancient building", "ancient car"],
    "test": ["new car", "new building"],
}
MIT_RECORDS = [
    _record("ancient_building/image_1.jpg", "ancient", "building", "train"),
    _record("ancient_building/image_2.jpg", "ancient", "building", "train"),
    _record("new_car/image_3.jpg", "new", "car", "train"),
    _record("old_car/image_4.jpg", "old", "car", "train"),
    _record("old_building/image_5.jpg", "old", "building", "train"),
    _record("ancient_building/image_6.jpg", "ancient", "building", "val"),
    _record("ancient_car/image_7.jpg", "ancient", "car", "val"),
    _record("new_car/image_8.jpg", "new", "car", "test"),
    _record("new_building/image_9.jpg", "new", "building", "test"),
    _record("new_building/image_10.jpg", "new", "building", "test"),
    _record("adj_building/image_11.jpg", "adj", "building", "NA"),
]

# UT-Zappos: `_image` is the raw path inside ut-zap50k-images/, `image` is "<attr>_<obj>/<file>".
ZAP_PAIRS = {
    "train": ["Canvas Sandals", "Leather Boots.Ankle", "Suede Shoes.Flats", "Leather Sandals"],
    "val": ["Canvas Sandals", "Suede Sandals"],
    "test": ["Leather Boots.Ankle", "Canvas Shoes.Flats"],
}
ZAP_RAW = {
    "Canvas_Sandals/100.1.jpg": "Sandals/Flat/Teva/100.1.jpg",
    "Leather_Boots.Ankle/200.jpg": "Boots/Ankle/Clarks/200.jpg",
    "Suede_Shoes.Flats/300.jpg": "Shoes/Flats/Born/300.jpg",
    "Leather_Sandals/400.jpg": "Sandals/Heel/Naturalizer/400.jpg",
    "Canvas_Sandals/500.jpg": "Sandals/Flat/Teva/500.jpg",
    "Suede_Sandals/600.jpg": "Sandals/Flat/Born/600.jpg",
    "Leather_Boots.Ankle/700.jpg": "Boots/Ankle/Frye/700.jpg",
    "Canvas_Shoes.Flats/800.jpg": "Shoes/Flats/Keds/800.jpg",
}
ZAP_RECORDS = [
    _record(image, image.split("/")[0].split("_")[0], image.split("/")[0].split("_", 1)[1], phase, _image=ZAP_RAW[image])
    for image, phase in zip(ZAP_RAW, ["train", "train", "train", "train", "val", "val", "test", "test"])
]

CGQA_PAIRS = {
    "train": ["red apple", "green apple", "wooden table", "red table"],
    "val": ["red apple", "wooden apple"],
    "test": ["green apple", "green table"],
}
CGQA_RECORDS = [
    _record("1001.jpg", "red", "apple", "train"), _record("1002.jpg", "green", "apple", "train"),
    _record("1003.jpg", "wooden", "table", "train"), _record("1004.jpg", "red", "table", "train"),
    _record("1005.jpg", "red", "apple", "val"), _record("1006.jpg", "wooden", "apple", "val"),
    _record("1007.jpg", "green", "apple", "test"), _record("1008.jpg", "green", "table", "test"),
]


def _colour(index: int) -> tuple[int, int, int]:
    return (37 * index % 256, 91 * index % 256, 53 * index % 256)


def _metadata_bytes(records: list[dict]) -> bytes:
    buffer = io.BytesIO()
    torch.save(records, buffer)
    return buffer.getvalue()


def _split_files(folder: str, pairs: dict[str, list[str]], records: list[dict]) -> dict[str, bytes]:
    files = {f"{folder}/{SPLIT}/{phase}_pairs.txt": ("\n".join(lines) + "\n").encode() for phase, lines in pairs.items()}
    files[f"{folder}/metadata_{SPLIT}.t7"] = _metadata_bytes(records)
    return files


def write_zip(path: Path, files: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def write_tar_gz(path: Path, files: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as archive:
        folders = sorted({name.rsplit("/", 1)[0] for name in files})
        for folder in folders:
            info = tarfile.TarInfo(folder)
            info.type = tarfile.DIRTYPE
            archive.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def build_archives(folder: Path, mit_records: list[dict] | None = None, note: str = "") -> dict[str, Path]:
    """The four archives, named and laid out as the official ones, written into folder."""
    mit_records = MIT_RECORDS if mit_records is None else mit_records
    split_files = {**_split_files("mit-states", MIT_PAIRS, mit_records), **_split_files("ut-zap50k", ZAP_PAIRS, ZAP_RECORDS)}
    if note:
        split_files["README"] = note.encode()
    mit_files = {"release_dataset/adj_ants.csv": b"ancient,new\n", "release_dataset/README.txt": b"MIT-States\n"}
    for index, record in enumerate(mit_records):
        folder_name, file_name = record["image"].split("/")
        mit_files[f"release_dataset/images/{folder_name.replace('_', ' ')}/{file_name}"] = jpeg_bytes(_colour(index))
    zap_files = {f"ut-zap50k-images/{raw}": jpeg_bytes(_colour(index)) for index, raw in enumerate(ZAP_RAW.values())}
    cgqa_files = _split_files("cgqa", CGQA_PAIRS, CGQA_RECORDS)
    for index, record in enumerate(CGQA_RECORDS):
        cgqa_files[f"cgqa/images/{record['image']}"] = jpeg_bytes(_colour(index))
    return {
        "release_dataset.zip": write_zip(folder / "release_dataset.zip", mit_files),
        "compositional_split_natural.tar.gz": write_tar_gz(folder / "compositional_split_natural.tar.gz", split_files),
        "ut-zap50k-images.zip": write_zip(folder / "ut-zap50k-images.zip", zap_files),
        "cgqa.zip": write_zip(folder / "cgqa.zip", cgqa_files),
        **write_feasibility_files(folder),
    }


def _primitives(pairs: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    """Sorted states and objects over the split files (as the released feasibility files order them)."""
    every = [line.split(" ", 1) for lines in pairs.values() for line in lines]
    return sorted({state for state, _ in every}), sorted({object_ for _, object_ in every})


TINY_PRIMITIVES = {"mit-states": _primitives(MIT_PAIRS), "ut-zappos": _primitives(ZAP_PAIRS),
                   "cgqa": _primitives(CGQA_PAIRS)}


def feasibility_values(name: str) -> torch.Tensor:
    """The tiny benchmark's feasibility scores: distinct values in [0, 1), one per state x object."""
    states, objects = TINY_PRIMITIVES[name]
    count = len(states) * len(objects)
    return torch.linspace(0.05, 0.95, count)[torch.randperm(count, generator=torch.Generator().manual_seed(count))]


def write_feasibility_files(folder: Path) -> dict[str, Path]:
    """feasibility_<name>.pt in the released format (a dict with one float tensor 'feasibility' over the sorted
    states x sorted objects) for the three tiny benchmarks."""
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in TINY_PRIMITIVES:
        path = folder / f"feasibility_{name}.pt"
        torch.save({"feasibility": feasibility_values(name)}, path)
        written[path.name] = path
    return written


def pin_tiny_feasibility(monkeypatch, folder: Path) -> None:
    """Pin the released-feasibility table to the tiny files in folder (their sizes and sha256), as the real table
    pins the released files; the tests of the real pins check that other bytes are refused."""
    from czsl_models.data import feasibility_files

    for name, release in list(feasibility_files.RELEASED_FEASIBILITY.items()):
        path = folder / release.file_name
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        states, objects = TINY_PRIMITIVES[name]
        monkeypatch.setitem(feasibility_files.RELEASED_FEASIBILITY, name,
                            feasibility_files.ReleasedFeasibility(name, path.stat().st_size, digest,
                                                                  len(states) * len(objects)))


class _MirrorHandler(BaseHTTPRequestHandler):
    """Static files with HEAD, Range, If-Range and ETag; can drop a connection part-way through a file."""

    def do_HEAD(self) -> None:  # noqa: N802 (http.server's naming)
        self._serve(head=True)

    def do_GET(self) -> None:  # noqa: N802
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        server = self.server
        name = self.path.lstrip("/")
        server.requests.append((self.command, name, self.headers.get("Range")))
        path = server.folder / name
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        start = 0
        wanted = self.headers.get("Range")
        if wanted and server.honour_range and self.headers.get("If-Range") in (None, etag):
            start = int(wanted.split("=")[1].split("-")[0])
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if head:
            return
        body = data[start:]
        drop_after = server.drop_after.pop(name, None)
        if drop_after is not None:
            self.wfile.write(body[:drop_after])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class Mirror:
    """A mirror on 127.0.0.1 serving a folder; `requests` logs (method, file, Range header)."""

    def __init__(self, folder: Path) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _MirrorHandler)
        self.server.folder = folder
        self.server.requests = []
        self.server.drop_after = {}
        self.server.honour_range = True
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def requests(self) -> list[tuple[str, str, str | None]]:
        return self.server.requests

    def drop_once(self, file_name: str, after_bytes: int) -> None:
        """The next GET of file_name stops after this many bytes of body, closing the connection."""
        self.server.drop_after[file_name] = after_bytes

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
