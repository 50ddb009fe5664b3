"""benchmarks/concurrent_predictions.py: its light client speaks Gradio's HTTP API and refuses anything that is not
an answer (a failing app cannot look fast), its inputs follow the served page's config, and the whole benchmark
runs against the app and Gradio's floor in their own processes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import concurrent_predictions as bench  # noqa: E402


def test_percentile_is_the_nearest_rank():
    values = [float(v) for v in range(1, 31)]  # 1..30 seconds
    assert bench.percentile(values, 0.95) == 29.0  # rank ceil(0.95 * 30) = 29
    assert bench.percentile(values, 0.5) == 15.0
    assert bench.percentile([float(v) for v in range(1, 21)], 0.95) == 19.0
    assert bench.percentile([3.0, 1.0, 2.0], 1.0) == 3.0 and bench.percentile([4.0], 0.95) == 4.0


def test_events_follow_the_served_config_and_later_inputs_start_empty():
    config = {"components": [{"id": 1, "type": "image"}, {"id": 2, "type": "dropdown"}, {"id": 3, "type": "state"},
                             {"id": 4, "type": "textbox"}, {"id": 5, "type": "state"}],
              "dependencies": [{"id": 0, "api_name": "other", "inputs": [2]},
                               {"id": 1, "api_name": "predict", "inputs": [1, 2, 2, 4, 4, 2, 4, 2, 2, 3, 4]},
                               {"id": 2, "api_name": "predict_pictures", "inputs": [5]}]}
    events = bench.served_events(config)
    assert (events.answer, events.pictures, events.pictures_inputs) == (1, 2, 1)
    assert events.input_kinds == ["image", "dropdown", "dropdown", "textbox", "textbox", "dropdown", "textbox",
                                  "dropdown", "dropdown", "state", "textbox"]
    data = bench.request_data(events.input_kinds, "/uploaded/photo.jpg", "msci")
    assert len(data) == len(events.input_kinds)
    assert data[0] == {"path": "/uploaded/photo.jpg", "meta": {"_type": "gradio.FileData"}}
    assert data[1] == "msci" and data[7:9] == [5, 0.0] and data[9:] == [None, ""]
    config["dependencies"].pop()  # an app that draws its pictures in the answer event
    assert bench.served_events(config).pictures is None
    with pytest.raises(RuntimeError, match="no 'predict' event"):
        bench.served_events({"components": [], "dependencies": []})


def fake_gradio(answer: list, pictures: list, success: bool = True) -> httpx.MockTransport:
    """Gradio's upload, queue/join and per-session event stream, answering event 1 with `answer` and event 2 with
    `pictures`; checks both events come in the same session, as the page sends them."""
    sessions: dict[str, int] = {}

    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/gradio_api/upload"):
            return httpx.Response(200, json=["/tmp/gradio/photo.jpg"])
        if path.endswith("/gradio_api/queue/join"):
            body = json.loads(request.content)
            if body["fn_index"] == 1:
                assert body["data"][0]["path"] == "/tmp/gradio/photo.jpg"
            else:
                assert body["data"] == [None] and body["session_hash"] in sessions
            sessions[body["session_hash"]] = body["fn_index"]
            return httpx.Response(200, json={"event_id": f"e{body['fn_index']}"})
        assert path.endswith("/gradio_api/queue/data")
        fn_index = sessions[request.url.params["session_hash"]]
        done = {"msg": "process_completed", "event_id": f"e{fn_index}", "success": success,
                "output": {"data": answer if fn_index == 1 else pictures}}
        stream = "".join(f"data: {json.dumps(message)}\n\n" for message in (
            {"msg": "estimation", "event_id": f"e{fn_index}"}, {"msg": "heartbeat"}, done, {"msg": "close_stream"}))
        return httpx.Response(200, text=stream, headers={"content-type": "text/event-stream"})

    return httpx.MockTransport(handle)


def ask(transport: httpx.MockTransport) -> tuple[float, float | None]:
    events = bench.Events(1, ["image"] + ["textbox"] * 8 + ["state"], pictures=2, pictures_inputs=1)
    target = bench.Target("app", None, "http://server/", events, bench.APP_ANSWER, bench.APP_PICTURE)
    photo = sorted((ROOT / "examples").glob("*.jpg"))[0]

    async def go() -> tuple[float, float | None]:
        async with httpx.AsyncClient(transport=transport) as client:
            return await bench.one_request(client, target, photo, "msci")

    return asyncio.run(go())


def test_only_an_answer_and_a_picture_count():
    answer = ['<div class="czsl-answer"><p class="czsl-headline">Best guess: ...</p></div>', None]
    picture = [{"__type__": "update", "value": {"path": "/tmp/x.webp", "meta": {"_type": "gradio.FileData"}}}]
    answered, drawn = ask(fake_gradio(answer, picture))
    assert 0 <= answered <= drawn
    with pytest.raises(RuntimeError, match="gave no answer"):  # the app's own error message, shown in the page
        ask(fake_gradio(['<div class="czsl-message">Could not read the photo.</div>'], picture))
    with pytest.raises(RuntimeError, match="drew no picture"):  # nothing pending in the session: nothing drawn
        ask(fake_gradio(answer, [{"__type__": "update"}]))
    with pytest.raises(RuntimeError, match="failed"):  # an exception in the event
        ask(fake_gradio(answer, picture, success=False))


@pytest.mark.slow
def test_the_benchmark_measures_the_app_beside_gradios_floor():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "concurrent_predictions.py"), "--requests", "3",
                           "--rounds", "1"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.strip().splitlines()]
    rows, summary = lines[:-1], lines[-1]
    assert [row["target"] for row in rows] == ["floor", "app"]
    for row in rows:
        assert 0 < row["single"] and 0 < row["p50"] <= row["p95"] <= row["max"]
        assert row.get("pictures_p50", row["p50"]) >= row["p50"]
        assert row["server_cpu_single"] > 0 and row["server_cpu_per_request"] > 0
        assert row["as"] == "space" and row["cpu_capability"]
    assert summary["app_p95_over_floor_p95"] == [round(rows[1]["p95"] / rows[0]["p95"], 1)]
