"""MCP answers as JSON text. Gradio's MCP server writes an output that is not a file as Python's `str()` of it
(`{'trained': False}`, or `root={...}` for an unqueued event), which an agent cannot read as JSON. When the app
starts, `json_answers_lifespan` makes this app's MCP server write such outputs with `json.dumps` instead; the HTTP
API (gradio_client, the API page) is unchanged and still returns JSON objects."""

from __future__ import annotations

import contextlib
import json
from typing import Any, AsyncIterator, Callable


def _plain(value: Any) -> Any:
    """A JSON-ready value: gradio's JsonData (a pydantic root model) becomes what it holds."""
    if hasattr(value, "model_dump"):
        return value.model_dump()
    return value


def _is_file(value: Any) -> bool:
    meta = value.get("meta") if isinstance(value, dict) else None
    return isinstance(meta, dict) and meta.get("_type") == "gradio.FileData"


def json_text_outputs(postprocess: Callable[[Any, str], list]) -> Callable[[Any, str], list]:
    """Wrap GradioMCPServer.postprocess_output_data so that dict and list outputs reach it as JSON text."""

    def postprocess_as_json(data: Any, root_url: str) -> list:
        items = [_plain(item) for item in data]
        items = [json.dumps(item, ensure_ascii=False) if isinstance(item, (dict, list)) and not _is_file(item)
                 else item for item in items]
        return postprocess(items, root_url)

    postprocess_as_json.czsl_json_text = True  # type: ignore[attr-defined]
    return postprocess_as_json


@contextlib.asynccontextmanager
async def json_answers_lifespan(app: Any) -> AsyncIterator[None]:
    """A Blocks.launch(app_kwargs={"lifespan": ...}) hook: the app's MCP server, created by launch, answers in JSON."""
    server = getattr(app.get_blocks(), "mcp_server_obj", None)
    if server is not None and not getattr(server.postprocess_output_data, "czsl_json_text", False):
        server.postprocess_output_data = json_text_outputs(server.postprocess_output_data)
    yield
