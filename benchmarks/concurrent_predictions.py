"""Latency of N concurrent predictions as visitors of a public Space see them, beside Gradio's own floor.

The app runs in its own process as a Space runs it (`app.py --backbone tiny`, SPACE_ID set, no HF_TOKEN, so every
visitor is kept apart). Beside it, in another process, runs the floor: a minimal Gradio app whose `predict` event
has the same inputs (the photo as gr.Image(type="filepath"), a State where the app has one, a Textbox for every
other field), one HTML output, preprocess=False, the same concurrency limit and queue size, and a function that
returns a constant; when the app has a chained `predict_pictures` event, so has the floor, returning a constant
too. What the app takes above the floor is the app's; the floor is what Gradio's queue, upload and streaming cost
on this machine.

The clients are one asyncio event loop speaking Gradio's HTTP API as the page does, each visitor in its own
session: upload the photo, trigger the predict event (queue/join), read the session's event stream, then, when the
app draws its pictures in a chained `predict_pictures` event, trigger that in the same session as the page does.
They are light: about a tenth of the app's CPU per request here, where gradio_client threads in the measuring
process used several times the server's. Every answer must be an answer (the app's headline, the floor's constant)
and every pictures event must return a picture: a failing server cannot look fast.

Per round, floor then app: one request alone ("single", the median of 3 after a warm-up), then N at once.
Prints one JSON object per target and round: single, p50, p95, max seconds to the answer and p95 / single (with
the pictures event, the same to the pictures, prefixed pictures_), the server's CPU seconds per request alone
(server_cpu_single) and among the N (server_cpu_per_request), cpu_bound (the server's CPU seconds for the N spread
over every core: the soonest the last of them could finish), the clients' CPU seconds per request, the load
average before and after, the CPU; then one summary line with app p95 / floor p95 and app p95 / app single per
round (and app / floor for the pictures).

    python benchmarks/concurrent_predictions.py [--requests 30] [--rounds 2] [--model msci] [--local]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("CZSL_DEVICE", "cpu")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

API_NAME = "predict"
PICTURES_API_NAME = "predict_pictures"  # the page fires it after the answer, when the app has it
FLOOR_ANSWER = '<p class="floor-answer">constant</p>'
FLOOR_MARK = "floor-answer"
APP_ANSWER = "czsl-headline"  # in the app's answer HTML; its error messages lack it
APP_PICTURE = "gradio.FileData"  # a picture file in the pictures event's outputs; "nothing to draw" has none
FILE_DATA = {"_type": "gradio.FileData"}
FLOOR_SERVER = """
import sys
import gradio as gr

port, concurrency, kinds, pictures = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split(","), sys.argv[4]


def component(kind):
    if kind == "image":
        return gr.Image(type="filepath")
    return gr.State() if kind == "state" else gr.Textbox()


def answer(*values):
    return {answer!r}


with gr.Blocks() as demo:
    inputs = [component(kind) for kind in kinds]
    event = gr.Button().click(answer, inputs, gr.HTML(), api_name={api!r}, preprocess=False,
                              concurrency_limit=concurrency)
    if pictures == "pictures":
        event.then(answer, gr.State(), gr.HTML(), api_name={pictures_api!r}, concurrency_limit=concurrency)
demo.queue(max_size=256).launch(server_name="127.0.0.1", server_port=port, quiet=True, max_file_size="200mb")
""".format(answer=FLOOR_ANSWER, api=API_NAME, pictures_api=PICTURES_API_NAME)


@dataclass
class Events:
    """What the page triggers for one prediction: the answer event (its index and input types), then the pictures
    event when there is one (its index and how many inputs, all of them session state)."""

    answer: int
    input_kinds: list[str]
    pictures: int | None = None
    pictures_inputs: int = 0


@dataclass
class Target:
    """A served app under test: its process, URL, the events a prediction fires and what their outputs must
    contain (a mark of an answer, of a picture)."""

    name: str
    process: subprocess.Popen
    url: str
    events: Events
    answer_mark: str
    picture_mark: str


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of the sorted values lie (nearest rank: the ceil(fraction * n)-th)."""
    ordered = sorted(values)
    rank = math.ceil(fraction * len(ordered) - 1e-9)  # 0.07 * 100 is 7.000000000000001 in floating point
    return ordered[min(len(ordered), max(1, rank)) - 1]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def served_events(config: dict[str, Any]) -> Events:
    """The predict event (and its pictures event, if any) from the served page's /config (no import of the app)."""
    types = {component["id"]: component["type"] for component in config["components"]}
    found = {dependency.get("api_name"): (dependency.get("id", index), dependency["inputs"])
             for index, dependency in enumerate(config["dependencies"])}
    if API_NAME not in found:
        raise RuntimeError(f"the served app has no {API_NAME!r} event")
    answer, inputs = found[API_NAME]
    events = Events(answer, [types[component] for component in inputs])
    if PICTURES_API_NAME in found:
        events.pictures, picture_inputs = found[PICTURES_API_NAME]
        if any(types[component] != "state" for component in picture_inputs):
            raise RuntimeError(f"{PICTURES_API_NAME} takes more than the session's state")
        events.pictures_inputs = len(picture_inputs)
    return events


def request_data(kinds: list[str], photo_path: str, model: str) -> list[Any]:
    """The predict event's inputs in the page's order: photo, model, checkpoint, states, objects, world, pairs,
    top-k, bias; any further input starts empty (a State: None), so the app's later inputs need no edit here."""
    from czsl_models.inputs.presets import DEFAULT_OBJECTS, DEFAULT_STATES
    from czsl_models.ui.inputs import WORLD_OPEN

    known = [{"path": photo_path, "meta": FILE_DATA}, model, "", DEFAULT_STATES, DEFAULT_OBJECTS, WORLD_OPEN, "", 5,
             0.0]
    if kinds[0] != "image":
        raise RuntimeError(f"the predict event's first input is a {kinds[0]}, not the photo")
    extra = [None if kind == "state" else "" for kind in kinds[len(known):]]
    return known[:len(kinds)] + extra


def start_server(name: str, command: list[str], env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    """Start a server process on a free port (put where the command says {port}) and wait until it answers HTTP;
    returns (process, url)."""
    import httpx

    port = free_port()
    command = [part.replace("{port}", str(port)) for part in command]
    with open(log, "w") as stream:
        process = subprocess.Popen(command, env=env, cwd=log.parent, stdout=stream, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited while starting:\n{log.read_text()[-3000:]}")
        try:
            httpx.get(url, timeout=5)
            return process, url
        except httpx.HTTPError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"{name} did not answer within 300 s")


def server_env(scratch: Path, local: bool) -> dict[str, str]:
    """The environment of a Space-configured server: no token, offline, every folder in the scratch directory."""
    env = {key: value for key, value in os.environ.items() if key not in ("HF_TOKEN", "SPACE_ID", "SYSTEM")}
    env.update(HF_HUB_OFFLINE="1", CZSL_DEVICE="cpu", GRADIO_MCP_SERVER="false", GRADIO_ANALYTICS_ENABLED="False",
               CZSL_WEIGHTS_DIR=str(scratch / "weights"), CZSL_DATA_DIR=str(scratch / "datasets"),
               CZSL_CACHE_DIR=str(scratch / "features"), GRADIO_TEMP_DIR=str(scratch / "gradio"),
               HF_HOME=str(scratch / "hf"))
    if not local:
        env["SPACE_ID"] = "benchmark/czsl-demo"
    return env


async def upload(client, url: str, photo: Path) -> str:
    """Upload one photo as the page does; returns the server's path for it."""
    response = await client.post(f"{url}gradio_api/upload", files={"files": (photo.name, photo.read_bytes())})
    response.raise_for_status()
    return response.json()[0]


async def page_event(client, url: str, session: str, fn_index: int, data: list[Any]) -> list[Any]:
    """Trigger one event in a visitor's session as the page does (queue/join, then the session's event stream) and
    read until it completes; returns its outputs, raises if it failed."""
    response = await client.post(f"{url}gradio_api/queue/join",
                                 json={"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None})
    response.raise_for_status()
    event_id = response.json()["event_id"]
    async with client.stream("GET", f"{url}gradio_api/queue/data", params={"session_hash": session}) as stream:
        async for line in stream.aiter_lines():
            if not line.startswith("data:"):
                continue
            message = json.loads(line[len("data:"):])
            if message.get("msg") == "process_completed" and message.get("event_id") == event_id:
                if not message.get("success"):
                    raise RuntimeError(f"event {fn_index} failed: {json.dumps(message)[:500]}")
                return message["output"]["data"]
            if message.get("msg") == "unexpected_error":
                raise RuntimeError(f"event {fn_index} failed: {json.dumps(message)[:500]}")
    raise RuntimeError(f"event {fn_index}: the event stream ended without an answer")


async def one_request(client, target: Target, photo: Path, model: str) -> tuple[float, float | None]:
    """One visitor's prediction in its own session: seconds to the answer (upload, queue, answer, checked to be an
    answer) and to its pictures (None when the app draws them in the answer event)."""
    session = uuid.uuid4().hex
    started = time.perf_counter()
    path = await upload(client, target.url, photo)
    events = target.events
    outputs = await page_event(client, target.url, session, events.answer,
                               request_data(events.input_kinds, path, model))
    answered = time.perf_counter() - started
    if target.answer_mark not in json.dumps(outputs):
        raise RuntimeError(f"{target.name} gave no answer: {json.dumps(outputs)[:500]}")
    if events.pictures is None:
        return answered, None
    outputs = await page_event(client, target.url, session, events.pictures, [None] * events.pictures_inputs)
    if target.picture_mark not in json.dumps(outputs):
        raise RuntimeError(f"{target.name} drew no picture: {json.dumps(outputs)[:500]}")
    return answered, time.perf_counter() - started


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    import psutil  # installed with accelerate, a dependency

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def distribution(prefix: str, single: float, seconds: list[float]) -> dict[str, float]:
    """single, p50, p95, max and p95 / single, their names prefixed (the answer's bare, the pictures' "pictures_")."""
    p95 = percentile(seconds, 0.95)
    return {f"{prefix}single": round(single, 3), f"{prefix}p50": round(statistics.median(seconds), 3),
            f"{prefix}p95": round(p95, 3), f"{prefix}max": round(max(seconds), 3),
            f"{prefix}p95_over_single": round(p95 / single, 1)}


async def measure(client, target: Target, photos: list[Path], requests: int, model: str) -> dict[str, Any]:
    """One request alone (median of 3 after a warm-up), then `requests` at once; the figures of one target."""
    await one_request(client, target, photos[0], model)
    server_cpu = cpu_seconds(target.process.pid)
    alone = [await one_request(client, target, photos[i % len(photos)], model) for i in range(3)]
    single_cpu = (cpu_seconds(target.process.pid) - server_cpu) / 3
    load_before = os.getloadavg()[0]
    server_cpu, client_cpu = cpu_seconds(target.process.pid), time.process_time()
    together = await asyncio.gather(*(one_request(client, target, photos[i % len(photos)], model)
                                      for i in range(requests)))
    server_cpu = cpu_seconds(target.process.pid) - server_cpu
    client_cpu = time.process_time() - client_cpu
    row = {"target": target.name, "requests": requests,
           **distribution("", statistics.median(a for a, _ in alone), [a for a, _ in together])}
    if target.events.pictures is not None:
        row.update(distribution("pictures_", statistics.median(p for _, p in alone), [p for _, p in together]))
    row.update({"server_cpu_single": round(single_cpu, 4), "server_cpu_per_request": round(server_cpu / requests, 4),
                # the server's CPU for all of them spread over every core: no queue finishes the last one sooner
                "cpu_bound": round(server_cpu / (os.cpu_count() or 1), 3),
                "client_cpu_per_request": round(client_cpu / requests, 4), "load_before": round(load_before, 2),
                "load_after": round(os.getloadavg()[0], 2)})
    return row


async def run_rounds(targets: list[Target], photos: list[Path], args: argparse.Namespace,
                     machine: dict[str, Any]) -> list[dict[str, Any]]:
    """Alternate the targets for every round, so both see the same load; print and return every row."""
    import httpx

    rows = []
    limits = httpx.Limits(max_connections=2 * args.requests + 10, max_keepalive_connections=2 * args.requests + 10)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        for round_index in range(args.rounds):
            for target in targets:
                row = {"round": round_index + 1, **await measure(client, target, photos, args.requests, args.model),
                       **machine}
                print(json.dumps(row), flush=True)
                rows.append(row)
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per round: app p95 / floor p95 (what the app adds over Gradio), app p95 / app single, and the same for
    the pictures when the app draws them in their own event."""
    by_round: dict[int, dict[str, dict[str, Any]]] = {}
    for row in rows:
        by_round.setdefault(row["round"], {})[row["target"]] = row
    rounds = [by_round[index] for index in sorted(by_round)]
    result = {"app_p95_over_floor_p95": [round(r["app"]["p95"] / r["floor"]["p95"], 1) for r in rounds],
              "app_p95_over_app_single": [r["app"]["p95_over_single"] for r in rounds],
              "floor_p95_over_floor_single": [r["floor"]["p95_over_single"] for r in rounds]}
    if all("pictures_p95" in r["app"] for r in rounds):
        result["app_pictures_p95_over_floor_pictures_p95"] = [
            round(r["app"]["pictures_p95"] / r["floor"]["pictures_p95"], 1) for r in rounds]
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Serve the app and the floor, measure both alternately, print the rows and the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30, help="concurrent predictions (default 30)")
    parser.add_argument("--rounds", type=int, default=2, help="floor, app alternations (default 2)")
    parser.add_argument("--model", default="msci")
    parser.add_argument("--local", action="store_true", help="serve as on your own machine (no SPACE_ID)")
    args = parser.parse_args(argv)
    import httpx
    import torch

    from czsl_models.ui.blocks import predict_concurrency

    photos = sorted((ROOT / "examples").glob("*.jpg"))
    concurrency = predict_concurrency()
    machine = {"model": args.model, "backbone": "tiny", "as": "local" if args.local else "space",
               "concurrency_limit": concurrency, "cpus": os.cpu_count(),
               "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    processes: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="czsl-concurrent-") as scratch_name:
        scratch = Path(scratch_name)
        env = server_env(scratch, args.local)
        try:
            app_command = [sys.executable, str(ROOT / "app.py"), "--backbone", "tiny", "--host", "127.0.0.1",
                           "--port", "{port}"]
            app, app_url = start_server("the app", app_command, env, scratch / "app.log")
            processes.append(app)
            events = served_events(httpx.get(f"{app_url}config", timeout=30).json())
            floor_command = [sys.executable, "-c", FLOOR_SERVER, "{port}", str(concurrency),
                             ",".join(events.input_kinds), "pictures" if events.pictures is not None else "-"]
            floor, floor_url = start_server("the floor", floor_command, env, scratch / "floor.log")
            processes.append(floor)
            floor_events = served_events(httpx.get(f"{floor_url}config", timeout=30).json())
            targets = [Target("floor", floor, floor_url, floor_events, FLOOR_MARK, FLOOR_MARK),
                       Target("app", app, app_url, events, APP_ANSWER, APP_PICTURE)]
            rows = asyncio.run(run_rounds(targets, photos, args, machine))
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
    result = summary(rows)
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
