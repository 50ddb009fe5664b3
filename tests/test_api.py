"""The documented API and the MCP server: only the intended endpoints and tools, named parameters and outputs,
the same rankings as the Python API, the tabs' input checks, and the switch that turns MCP off."""

from __future__ import annotations

import asyncio
import base64
import json
import typing
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from conftest import served_app
from czsl_models import Vocabulary, load_model
from czsl_models.inputs.presets import DEFAULT_OBJECTS, DEFAULT_STATES
from czsl_models.ui.api import API_ENDPOINTS, make_api_functions

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.jpg"))


@pytest.fixture(scope="module")
def api_server(tmp_path_factory):
    """The app on the tiny backbone with its MCP server: (demo, state, url, root)."""
    root = tmp_path_factory.mktemp("api")
    with served_app(root, mcp_server=True) as (demo, state, url):
        yield demo, state, url, root


@pytest.fixture(scope="module")
def client(api_server) -> Client:
    """A gradio_client connected to the app."""
    return Client(api_server[2], verbose=False)


def python_ranking(image: Path, model: str = "msci", states: str = DEFAULT_STATES, objects: str = DEFAULT_OBJECTS,
                   top_k: int = 5, pairs: str | None = None) -> list[tuple[str, str]]:
    """The ranking the Python API gives for the same question."""
    from PIL import Image

    prediction = load_model(model, backbone="tiny").predict(Image.open(image), Vocabulary.build(states, objects, pairs),
                                                           top_k=top_k)[0]
    return [(item.state, item.object) for item in prediction.ranking]


def ranking_of(answer: dict) -> list[tuple[str, str]]:
    """(state, object) pairs of a JSON answer, best first."""
    return [(item["state"], item["object"]) for item in answer["ranking"]]


# ------------------------------------------------------------------ the API page
def test_view_api_lists_only_the_documented_endpoints_with_named_outputs(api_server, client):
    info = client.view_api(return_format="dict", print_info=False)
    assert set(info["named_endpoints"]) == {f"/{name}" for name in API_ENDPOINTS}
    assert len(API_ENDPOINTS) <= 10 and not info["unnamed_endpoints"]
    recognise = info["named_endpoints"]["/recognise_compositions"]
    assert [p["parameter_name"] for p in recognise["parameters"]] == [
        "image", "states", "objects", "pairs", "model", "checkpoint", "top_k", "bias"]
    assert recognise["parameters"][5]["python_type"]["type"] == "str"  # a Hub repo id fits, not Literal['']
    for endpoint in info["named_endpoints"].values():
        assert [r["label"] for r in endpoint["returns"]] in (["recognition"], ["comparison"], ["models"],
                                                              ["checkpoints"])
        assert endpoint["description"]
    printed = client.view_api(return_format="str", print_info=False)
    assert "Named API endpoints: 4" in printed and "value_" not in printed


def test_every_ui_event_is_named_but_hidden_from_the_api(api_server):
    demo = api_server[0]
    functions = list(demo.fns.values())
    assert all(fn.api_name for fn in functions)
    public = {fn.api_name for fn in functions if fn.api_visibility == "public"}
    assert public == set(API_ENDPOINTS)
    # The page's own events stay callable (undocumented), so the tabs and their tests keep working.
    assert {"predict", "compare", "train_status"} <= {fn.api_name for fn in functions
                                                      if fn.api_visibility == "undocumented"}
    hidden = [dep for dep in demo.config["dependencies"] if dep["api_name"] == "predict"]
    assert hidden and hidden[0]["api_visibility"] == "undocumented"


# ------------------------------------------------------------------ the endpoints
@pytest.mark.parametrize("model", ["clip", "msci", "svip"])
def test_recognise_gives_the_python_api_ranking(client, model):
    answer = client.predict(handle_file(str(EXAMPLES[0])), model=model, top_k=7,
                            api_name="/recognise_compositions")
    assert ranking_of(answer) == python_ranking(EXAMPLES[0], model, top_k=7)
    assert answer["model"] == model and answer["trained"] is False and answer["backbone"] == "tiny"
    assert [item["rank"] for item in answer["ranking"]] == list(range(1, 8))
    assert answer["states"] and answer["objects"] and answer["explanation"]["text"]
    assert len(answer["explanation"]["score_parts"]) == 7
    assert any("random weights" in caveat for caveat in answer["caveats"])
    if model == "msci":
        parts = answer["explanation"]["stage_logit_contributions"][0]["composition"]
        # the exact split of the composition logit: prompt + local stage + global stage
        assert set(parts) >= {"prompt", "local_stage", "global_stage"}
        assert "weight" not in answer["explanation"]["text"]
    if model == "svip":
        assert 0 < answer["explanation"]["kept_super_patches"] <= answer["explanation"]["super_patches"] == 64


def test_recognise_closed_world_and_bounds(client):
    pairs = "striped cat\nwet dog\nhot coffee"
    answer = client.predict(handle_file(str(EXAMPLES[1])), states="striped, wet, hot", objects="cat, dog, coffee",
                            pairs=pairs, model="clip", top_k=100, api_name="/recognise_compositions")
    assert {f"{s} {o}" for s, o in ranking_of(answer)} == {"striped cat", "wet dog", "hot coffee"}
    many = client.predict(handle_file(str(EXAMPLES[1])), model="clip", top_k=500, api_name="/recognise_compositions")
    assert len(many["ranking"]) == 20  # the tabs' bound on top-k


@pytest.mark.parametrize("arguments, message", [
    ({"states": " , "}, "states is empty"),
    ({"model": "resnet"}, "Unknown model"),
    ({"checkpoint": "no/such-repo"}, "not in the local cache"),
])
def test_recognise_bad_input_says_why(client, arguments, message):
    arguments = {"model": "clip", **arguments}
    with pytest.raises(AppError, match=message):
        client.predict(handle_file(str(EXAMPLES[0])), api_name="/recognise_compositions", **arguments)


def test_recognise_rejects_a_file_that_is_not_a_photo(client, tmp_path):
    fake = tmp_path / "notes.jpg"
    fake.write_text("not a photo")
    with pytest.raises(AppError, match="not an image"):
        client.predict(handle_file(str(fake)), model="clip", api_name="/recognise_compositions")


def test_compare_models_shares_one_pass_and_untrained_models_agree(client):
    answer = client.predict(handle_file(str(EXAMPLES[2])), api_name="/compare_models")
    assert [model["model"] for model in answer["models"]] == ["clip", "msci", "refiner", "svip"]
    baseline = ranking_of(answer["models"][0])
    assert len(baseline) == 5 and baseline == python_ranking(EXAMPLES[2], "clip")
    assert all(ranking_of(model) == baseline for model in answer["models"])
    assert answer["shared_pass_seconds"] > 0 and all(model["seconds"] > 0 for model in answer["models"])


def test_list_models_and_checkpoints(client, api_server):
    listed = client.predict(api_name="/list_models")
    assert [model["name"] for model in listed["models"]] == ["clip", "msci", "refiner", "svip"]
    assert listed["backbone"] == "tiny" and listed["random_backbone"] is True
    assert client.predict(model="msci", api_name="/list_checkpoints")["checkpoints"] == {"msci": []}

    model = load_model("msci", backbone="tiny")
    model.training_steps += 3  # marks it trained, as a finished run would
    folder = api_server[3] / "weights" / "msci-api-test"
    model.save_pretrained(folder)
    found = client.predict(api_name="/list_checkpoints")["checkpoints"]
    assert set(found) == {"msci", "refiner", "svip"}
    assert [entry["checkpoint"] for entry in found["msci"]] == [str(folder)]
    answer = client.predict(handle_file(str(EXAMPLES[0])), model="msci", checkpoint=found["msci"][0]["checkpoint"],
                            api_name="/recognise_compositions")
    assert answer["trained"] is True and answer["checkpoint"] == str(folder)
    assert not any("no trained weights" in caveat for caveat in answer["caveats"])
    with pytest.raises(AppError, match="Unknown model"):
        client.predict(model="vgg", api_name="/list_checkpoints")


# ------------------------------------------------------------------ MCP
def test_mcp_schema_lists_exactly_the_api_tools(api_server):
    schema = httpx.get(api_server[2] + "gradio_api/mcp/schema", timeout=30).json()
    assert sorted(tool["name"] for tool in schema) == sorted(API_ENDPOINTS)
    tools = {tool["name"]: tool for tool in schema}
    recognise = tools["recognise_compositions"]
    assert recognise["inputSchema"]["required"] == ["image"]
    properties = recognise["inputSchema"]["properties"]
    assert properties["model"]["enum"] == ["clip", "msci", "refiner", "svip"]
    assert all(properties[name].get("description") for name in properties)
    assert "ranked compositions" in recognise["description"]


def test_no_api_endpoint_takes_the_callers_hugging_face_token(api_server, client):
    """Gradio's API page says an endpoint 'acts on your behalf' when its function takes a gr.OAuthToken."""
    info = client.view_api(return_format="dict", print_info=False)
    assert all("oauth_token" not in info["named_endpoints"][f"/{name}"] for name in API_ENDPOINTS)
    for name, function in make_api_functions(api_server[1]).items():
        hints = typing.get_type_hints(function)
        assert not any("OAuthToken" in str(hint) for hint in hints.values()), name


async def _mcp_session_answers(url: str, calls: list[tuple[str, dict]]) -> tuple[list, list]:
    """With the mcp package's own client over the app's MCP endpoint: the tools listed, and each call's result."""
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async with streamable_http_client(url + "gradio_api/mcp/") as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = (await session.list_tools()).tools
            results = [await session.call_tool(name, arguments) for name, arguments in calls]
    return tools, results


def json_answer(result) -> dict:
    """A tool result's one text content, read as JSON (a Python repr such as {'a': True} fails here)."""
    assert not result.isError, result.content
    assert len(result.content) == 1 and result.content[0].type == "text"
    answer = json.loads(result.content[0].text)
    assert isinstance(answer, dict)
    return answer


def test_mcp_client_lists_typed_tools_and_gets_json_objects(api_server):
    photo = "data:image/jpeg;base64," + base64.b64encode(EXAMPLES[3].read_bytes()).decode()
    tools, results = asyncio.run(_mcp_session_answers(api_server[2], [
        ("list_models", {}), ("list_checkpoints", {"model": "msci"}),
        ("recognise_compositions", {"image": photo, "model": "msci", "top_k": 6}),
        ("compare_models", {"image": photo})]))
    by_name = {tool.name: tool for tool in tools}
    assert sorted(by_name) == sorted(API_ENDPOINTS)
    properties = by_name["recognise_compositions"].inputSchema["properties"]
    assert properties["top_k"]["type"] == "integer"
    assert properties["bias"]["type"] == "number" and properties["states"]["type"] == "string"
    assert by_name["compare_models"].inputSchema["properties"]["use_trained_weights"]["type"] == "boolean"
    assert not any("token" in tool.description.lower() for tool in tools)
    models, checkpoints, recognition, comparison = (json_answer(result) for result in results)
    assert models["backbone"] == "tiny" and models["random_backbone"] is True
    assert [model["name"] for model in models["models"]] == ["clip", "msci", "refiner", "svip"]
    assert set(checkpoints) == {"backbone", "checkpoints"}
    assert ranking_of(recognition) == python_ranking(EXAMPLES[3], "msci", top_k=6)
    assert recognition["trained"] is False and all(isinstance(row["rank"], int) for row in recognition["ranking"])
    assert [model["model"] for model in comparison["models"]] == ["clip", "msci", "refiner", "svip"]


def test_mcp_json_leaves_file_outputs_to_gradio():
    from czsl_models.ui.mcp_json import json_text_outputs

    seen = []
    file_output = {"path": "/x.png", "url": None, "meta": {"_type": "gradio.FileData"}}
    json_text_outputs(lambda data, root: seen.extend(data) or [])([{"a": True}, [1, 2], "text", file_output], "")
    assert seen == ['{"a": true}', "[1, 2]", "text", file_output]


# ------------------------------------------------------------------ launching
def test_mcp_is_on_by_default_and_can_be_turned_off(monkeypatch):
    from czsl_models.ui.launch import parse_args

    monkeypatch.delenv("GRADIO_MCP_SERVER", raising=False)
    assert parse_args([]).mcp is True
    assert parse_args(["--no-mcp"]).mcp is False
    monkeypatch.setenv("GRADIO_MCP_SERVER", "false")
    assert parse_args([]).mcp is False
