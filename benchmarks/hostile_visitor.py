"""A hostile visitor against a Space-configured app: the app runs in its own process as a public Space would
(SPACE_ID set, the host's HF_TOKEN set, the tiny backbone), its Hub traffic goes to a local stand-in on
127.0.0.1, and two sessions play inputs meant to exhaust or confuse it (image bombs, Hub checkpoints too big or
lying about their size, edited configs, npz and zip bombs, markup in words, server paths, a 100-epoch run left
behind). Prints one table: inputs tried, crashes, generic errors, peak and retained server memory (RSS), disk
left behind, and requests that carried the host's token (must be 0).

    python benchmarks/hostile_visitor.py           # every input
    python benchmarks/hostile_visitor.py --quick   # the short form CI runs (tests/test_hostile_visitor.py)
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

OWNER_TOKEN = "hf_OWNER_secret_token_0123456789"
GENERIC = "Something went wrong"
POSITIONAL = {"/evaluate", "/train_start", "/predict", "/predict_pictures"}


def _safetensors(path: Path, shapes: dict[str, list[int]]) -> None:
    """A header-only .safetensors file declaring these float32 shapes."""
    header, offset = {}, 0
    for name, shape in shapes.items():
        size = 4
        for dim in shape:
            size *= dim
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) + (-len(raw) % 8)) + raw + b" " * (-len(raw) % 8))


def build_hub(root: Path) -> Any:
    """The local Hub stand-in with one honest checkpoint and the lying ones."""
    from local_hub import LocalHub

    from czsl_models import load_model

    hub = LocalHub()
    good = root / "repos" / "good"
    load_model("msci", backbone="tiny", train_states=["red", "blue"], train_objects=["apple"]).save_pretrained(good)
    hub.add("someone/good", good)
    hub.add("someone/huge", good, declared={"model.safetensors": 1_500_000_000})  # a 1.5 GB repo
    empty = root / "repos" / "empty-tensors"
    empty.mkdir(parents=True)
    (empty / "config.json").write_text(json.dumps({"model_type": "msci", "backbone": "tiny", "mlp_ratio": 4096}))
    _safetensors(empty / "model.safetensors", {"w": [0, 65536], "v": [4096, 0]})
    hub.add("someone/empty-tensors", empty)
    bigger = root / "repos" / "bigger-config"
    load_model("msci", backbone="tiny").save_pretrained(bigger)
    config = json.loads((bigger / "config.json").read_text())
    (bigger / "config.json").write_text(json.dumps(dict(config, mlp_ratio=4096, gate_hidden=4096, heads=1)))
    hub.add("someone/bigger-config", bigger)
    words = root / "repos" / "long-word-list"
    load_model("msci", backbone="tiny").save_pretrained(words)
    hub.add("someone/long-word-list", words, declared={"config.json": 96_000_000})
    return hub


def start_app(root: Path, hub_url: str) -> tuple[subprocess.Popen, str]:
    """The app in its own process, configured as a public Space; returns (process, url) once it serves."""
    from conftest import free_port

    port = free_port()
    env = {key: value for key, value in os.environ.items() if key not in ("HF_HUB_OFFLINE", "SYSTEM")}
    env.update(SPACE_ID="owner/czsl-demo", SYSTEM="spaces", HF_TOKEN=OWNER_TOKEN, HF_ENDPOINT=hub_url,
               HF_HOME=str(root / "hf"),
               CZSL_WEIGHTS_DIR=str(root / "weights"), CZSL_DATA_DIR=str(root / "datasets"),
               CZSL_CACHE_DIR=str(root / "features"), GRADIO_TEMP_DIR=str(root / "gradio"), CZSL_DEVICE="cpu",
               HF_HUB_DISABLE_TELEMETRY="1", GRADIO_ANALYTICS_ENABLED="False", CZSL_MAX_TRAIN_MINUTES="1")
    log = open(root / "app.log", "w")
    process = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--backbone", "tiny", "--host", "127.0.0.1",
                                "--port", str(port)], env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError((root / "app.log").read_text()[-3000:])
        try:
            with urllib.request.urlopen(url, timeout=5):
                return process, url
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError("the app did not start in time")


class MemoryWatch:
    """Samples the server's resident memory every 50 ms; remembers the peak."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.process = psutil.Process(pid)
        self.peak = self.now()
        self._running = True
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def now(self) -> int:
        """The server's resident memory now, in bytes."""
        return self.process.memory_info().rss

    def _sample(self) -> None:
        while self._running:
            try:
                self.peak = max(self.peak, self.now())
            except Exception:  # the process ended: that is counted as a crash elsewhere
                return
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop sampling."""
        self._running = False


def disk_bytes(root: Path) -> int:
    """Bytes of every file under root."""
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file() and not path.is_symlink())


def image_bytes(mode: str, size: tuple[int, int], fmt: str = "PNG") -> bytes:
    """An image file of this mode and size (a flat colour, so it compresses to almost nothing)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, fmt)
    return buffer.getvalue()


def npz_with(members: dict[str, bytes]) -> bytes:
    """A zip holding these members, as an .npz upload."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def npy_header_only(shape: tuple[int, ...]) -> bytes:
    """A .npy whose header declares a huge float64 array, with no data."""
    import numpy as np

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f8", "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def inputs(files: Path, quick: bool) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(label, session, api name, arguments) of every input played; file arguments are paths under `files`."""
    from czsl_models.ui.datasets import SOURCE_SYNTHETIC, SOURCE_ZIP
    from czsl_models.ui.evaluate import SOURCE_SCORES

    def saved(name: str, data: bytes) -> str:
        path = files / name
        path.write_bytes(data)
        return str(path)

    rgba = saved("rgba-7745.png", image_bytes("RGBA", (7745, 7745)))
    photo = str(ROOT / "examples" / "coffee.jpg")
    words = "[click](http://evil.example) **bold**, <img src=x onerror=alert(1)>"

    def predict(image: str, checkpoint: str = "", states: str = "hot, cold", objects: str = "coffee, cup",
                model: str = "msci") -> dict[str, Any]:
        from gradio_client import handle_file

        return {"image": handle_file(image), "states": states, "objects": objects, "pairs": "", "model": model,
                "checkpoint": checkpoint, "top_k": 5, "bias": 0.0}

    def scores(name: str, data: bytes) -> dict[str, Any]:
        from gradio_client import handle_file

        return {"source_value": SOURCE_SCORES, "model_name": "clip", "checkpoint_value": "",
                "dataset_source": SOURCE_SYNTHETIC, "upload": None, "server_path": "", "phase_value": "test",
                "open_world_value": False, "scores_value": handle_file(saved(name, data)), "feasible_value": False}

    def train(upload: str | None, epochs: int = 100, preset: str = "paper") -> dict[str, Any]:
        from gradio_client import handle_file

        return {"source": SOURCE_ZIP if upload else SOURCE_SYNTHETIC, "upload": handle_file(upload) if upload else None,
                "server_path": "", "model_name": "msci", "preset_value": preset, "epochs_value": epochs,
                "lr_value": ""}

    def page_predict(image: str) -> dict[str, Any]:
        """The Predict tab's Recognise button: photo, model, weights, words, world, pairs, top k, bias, previous."""
        from gradio_client import handle_file

        return {"image": handle_file(image), "model": "msci", "checkpoint": "", "states": "hot, cold",
                "objects": "coffee, cup", "world": "Every state with every object", "pairs": "", "top_k": 5,
                "bias": 0.0, "previous": ""}

    played = [
        ("the page's pictures with no answer before", "b", "/predict_pictures", {}),
        ("the page's Recognise with the RGBA bomb", "b", "/predict", page_predict(rgba)),
        ("its pictures after that refusal", "b", "/predict_pictures", {}),
        ("RGBA 7745 x 7745 PNG (240 KB)", "a", "/recognise_compositions", predict(rgba)),
        ("the same again", "a", "/recognise_compositions", predict(rgba)),
        ("1.5 GB Hub repo", "a", "/recognise_compositions", predict(photo, "someone/huge")),
        ("empty tensors with a 65536 width", "a", "/recognise_compositions", predict(photo, "someone/empty-tensors")),
        ("config bigger than its weights", "a", "/recognise_compositions", predict(photo, "someone/bigger-config")),
        ("npz with a 5 MB non-.npy member", "b", "/evaluate", scores("junk.npz", npz_with(
            {"scores.npy": npy_header_only((1,)), "junk.bin": os.urandom(5_000_000)}))),
        ("words with Markdown and HTML", "b", "/recognise_compositions", predict(photo, states=words)),
        ("a server path as checkpoint", "b", "/recognise_compositions", predict(photo, "/etc")),
    ]
    training = [("100 epochs with the paper preset", "a", "/train_start", train(None)),
                ("a second run while one runs", "b", "/train_start", train(None, 5, "fast"))]
    if quick:
        return played + training
    gigantic = saved("bomb-20000.png", image_bytes("L", (20000, 20000)))
    zip_bomb = io.BytesIO()
    with zipfile.ZipFile(zip_bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("photos/red_apple/0.bin", b"\0" * 300_000_000)
    played += [
        ("decompression bomb 20000 x 20000", "a", "/recognise_compositions", predict(gigantic)),
        ("not an image", "a", "/recognise_compositions", predict(saved("fake.jpg", b"<?php echo 1; ?>" * 100))),
        ("truncated JPEG", "b", "/recognise_compositions", predict(saved("cut.jpg", image_bytes("RGB", (640, 480), "JPEG")[:900]))),
        ("96 MB word list in a config", "a", "/recognise_compositions", predict(photo, "someone/long-word-list")),
        ("a repo that does not exist", "b", "/recognise_compositions", predict(photo, "someone/absent")),
        ("a path out of the weights folder", "b", "/recognise_compositions", predict(photo, "../../etc/passwd")),
        ("an honest Hub checkpoint", "b", "/recognise_compositions", predict(photo, "someone/good")),
        ("RGBA bomb through Compare", "b", "/compare_models",
         {"image": predict(rgba)["image"], "states": "hot", "objects": "cup", "pairs": "", "use_trained_weights": True}),
        ("npz declaring a 80 GB array", "a", "/evaluate", scores("declared.npz", npz_with(
            {"scores.npy": npy_header_only((100_000, 100_000))}))),
        ("not an npz", "a", "/evaluate", scores("plain.npz", b"hello")),
        ("zip bomb of 300 MB in 300 KB", "b", "/train_start", train(saved("bomb.zip", zip_bomb.getvalue()), 1, "fast")),
        ("not a zip", "b", "/train_start", train(saved("plain.zip", b"hello"), 1, "fast")),
        ("5,000 states", "a", "/recognise_compositions", predict(photo, states=", ".join(f"s{i}" for i in range(5000)))),
        ("list_checkpoints of an unknown model", "b", "/list_checkpoints", {"model": "../x"}),
        ("top_k as text", "a", "/recognise_compositions", dict(predict(photo), top_k="lots")),
        ("bias not a number", "a", "/recognise_compositions", dict(predict(photo), bias="nan")),
        ("pairs of three words", "b", "/recognise_compositions", dict(predict(photo), pairs="a b c, , x")),
        ("an unknown model", "b", "/recognise_compositions", predict(photo, model="vgg")),
        ("no words at all", "a", "/recognise_compositions", predict(photo, states=" , ", objects="")),
        ("no photo", "b", "/compare_models",
         {"image": None, "states": "hot", "objects": "cup", "pairs": "", "use_trained_weights": True}),
    ]
    return played + training


def run(quick: bool) -> dict[str, Any]:
    """Play the inputs; returns the table's figures."""
    import httpx
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    root = Path(tempfile.mkdtemp(prefix="hostile-visitor-"))
    (root / "files").mkdir()
    hub = build_hub(root)
    process, url = start_app(root, hub.url)
    clients = {name: Client(url, verbose=False) for name in ("a", "b")}
    heartbeats = {name: httpx.Client(timeout=None) for name in clients}
    streams = {}
    for name, client in clients.items():  # a browser's heartbeat: closing it ends the session (Gradio's unload)
        streams[name] = heartbeats[name].stream("GET", f"{url}gradio_api/heartbeat/{client.session_hash}")
        streams[name].__enter__()
    try:
        warm_up = next(arguments for label, _, _, arguments in inputs(root / "files", True)
                       if label == "words with Markdown and HTML")
        clients["a"].predict(**warm_up, api_name="/recognise_compositions")  # warm: the models are loaded once
        time.sleep(1)
        watch = MemoryWatch(process.pid)
        start_rss = watch.now()
        data = root / "app-data"
        start_disk = sum(disk_bytes(root / sub) for sub in ("weights", "datasets", "features", "hf", "gradio")
                         if (root / sub).is_dir())
        rows, crashes, generic = [], 0, 0
        for label, session, api_name, arguments in inputs(root / "files", quick):
            began = time.perf_counter()
            try:
                if api_name in POSITIONAL:  # the page's own events: the client knows them by position only
                    answer = clients[session].predict(*arguments.values(), api_name=api_name)
                else:
                    answer = clients[session].predict(**arguments, api_name=api_name)
                outcome = "answered"
                if api_name == "/train_start":  # what the visitor is told: their place in line, the caps
                    outcome += ": " + re.sub(r"<[^>]+>", " ", answer[0]).split(" so far. ")[-1].strip()[:100]
                if api_name == "/predict" and isinstance(answer[0], dict) and answer[0].get("visible"):
                    # The page shows a refusal as a message above the answer, not as an error.
                    outcome = "refused on the page: " + re.sub(r"<[^>]+>", "", answer[0]["value"]).strip()[:90]
            except AppError as error:
                outcome = "refused: " + str(error).strip().splitlines()[0][:110]
                generic += GENERIC in str(error)
            except Exception as error:  # the connection broke: the server crashed or hung up
                outcome = f"CRASH {type(error).__name__}: {error}"[:160]
                crashes += 1
            if process.poll() is not None:
                crashes += 1
                outcome += " (server died)"
            rows.append((label, outcome, time.perf_counter() - began))
        tools = sorted(tool["name"] for tool in httpx.get(f"{url}gradio_api/mcp/schema", timeout=60).json())
        for name in clients:  # both visitors close the page
            streams[name].__exit__(None, None, None)
            heartbeats[name].close()
        # Until the server is idle again: the runs they left stop after their current step.
        deadline, quiet = time.monotonic() + 90, 0
        while time.monotonic() < deadline and quiet < 3:
            quiet = quiet + 1 if watch.process.cpu_percent(interval=1.0) < 10 else 0
        end_rss = watch.now()
        watch.stop()
        end_disk = sum(disk_bytes(root / sub) for sub in ("weights", "datasets", "features", "hf", "gradio")
                       if (root / sub).is_dir())
        owner = sum(OWNER_TOKEN in headers.get("authorization", "") for _, _, headers in hub.requests)
        del data
        return {"rows": rows, "inputs": len(rows), "crashes": crashes, "generic_errors": generic,
                "start_rss": start_rss, "peak_rss": watch.peak, "end_rss": end_rss,
                "disk_delta": end_disk - start_disk, "hub_requests": len(hub.requests), "owner_token_requests": owner,
                "hub_file_downloads": len(hub.downloads()), "mcp_tools": tools}
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        hub.close()
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Print the table (or JSON); exit status 1 when a bound failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the short form CI runs")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    import torch

    result = run(args.quick)
    ok = (result["crashes"] == 0 and result["generic_errors"] == 0 and result["owner_token_requests"] == 0
          and result["end_rss"] <= 1.5 * result["start_rss"] and abs(result["disk_delta"]) <= 50e6)
    result["ok"] = ok
    if args.json:
        print(json.dumps(result, default=str))
        return 0 if ok else 1
    width = max(len(label) for label, _, _ in result["rows"])
    for label, outcome, seconds in result["rows"]:
        print(f"{label:<{width}}  {seconds:6.1f} s  {outcome}")
    mib = 1 << 20
    print()
    print(f"inputs tried            {result['inputs']}")
    print(f"crashes                 {result['crashes']}")
    print(f"generic errors          {result['generic_errors']}")
    print(f"server memory (RSS)     start {result['start_rss'] / mib:,.0f} MiB, peak {result['peak_rss'] / mib:,.0f} MiB, "
          f"after {result['end_rss'] / mib:,.0f} MiB ({result['end_rss'] / result['start_rss']:.2f}x start)")
    print(f"disk left behind        {result['disk_delta'] / 1e6:+,.1f} MB")
    print(f"Hub requests            {result['hub_requests']} ({result['hub_file_downloads']} file downloads)")
    print(f"with the owner's token  {result['owner_token_requests']}")
    print(f"MCP tools on the Space  {', '.join(result['mcp_tools'])}")
    print(f"CPU                     {torch.backends.cpu.get_cpu_capability()}, load {os.getloadavg()[0]:.2f}")
    print("all bounds held" if ok else "A BOUND FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
