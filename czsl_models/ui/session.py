"""Who is asking: every UI event runs with the visitor's browser session and Hugging Face sign-in known, so
what one visitor starts, uploads or trains stays theirs (hosting.current_visitor, re-exported here)."""

from __future__ import annotations

import contextvars
import functools
import hashlib
import inspect
from typing import Any, Callable, Optional, TypeVar

import gradio as gr

from ..hosting.space import HOST, as_visitor, current_visitor, visitor_hub_login

__all__ = ["current_oauth_token", "current_visitor", "visitor_id", "visitor_scope"]

Function = TypeVar("Function", bound=Callable[..., Any])
_oauth_token: contextvars.ContextVar[Any] = contextvars.ContextVar("czsl_oauth_token", default=None)
_REQUEST_PARAM = "czsl_request"
_TOKEN_PARAM = "czsl_oauth_token"


def current_oauth_token() -> gr.OAuthToken | None:
    """The visitor's Hugging Face sign-in (gr.OAuthToken) for the running event, or None when signed out."""
    return _oauth_token.get()


def visitor_id(session_hash: str | None) -> str:
    """The folder-safe id of a browser session (a hash, so the session itself never lands on disk)."""
    if not session_hash:
        return HOST
    return hashlib.sha256(session_hash.encode()).hexdigest()[:16]


def visitor_scope(function: Function, hub_login: bool = True) -> Function:
    """Run a Gradio event handler with its visitor and Hub sign-in known (two extra parameters that Gradio fills:
    the request and the OAuth token). Direct calls without them run as the host, as before. hub_login=False
    leaves the OAuth token out: the endpoint never receives the visitor's Hugging Face token (the API and MCP
    tools, which read public Hub repos only), and Gradio's API page does not say it acts on their behalf."""
    if getattr(function, "_czsl_visitor_scoped", False):
        return function
    signature = inspect.signature(function)
    own = [p for p in signature.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        request = kwargs.pop(_REQUEST_PARAM, None)
        token = kwargs.pop(_TOKEN_PARAM, None)
        if len(args) > len(own):  # Gradio passes the two added parameters by position, after the inputs
            for extra in args[len(own):]:
                if isinstance(extra, gr.Request):
                    request = extra
                elif isinstance(extra, gr.OAuthToken):
                    token = extra
            args = args[:len(own)]
        session_hash = getattr(request, "session_hash", None)
        if request is None and token is None:  # a direct call (or one handler calling another): keep the caller's
            return function(*args, **kwargs)
        reset_token = _oauth_token.set(token)
        try:
            with as_visitor(visitor_id(session_hash)), visitor_hub_login(token):
                return function(*args, **kwargs)
        finally:
            _oauth_token.reset(reset_token)

    hints: dict[str, Any] = {_REQUEST_PARAM: Optional[gr.Request]}
    if hub_login:
        hints[_TOKEN_PARAM] = Optional[gr.OAuthToken]
    extra = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=hint)
             for name, hint in hints.items()]
    wrapper.__signature__ = signature.replace(parameters=own + extra)  # type: ignore[attr-defined]
    # Only the added hints: Gradio reads hints to fill them, and the handler's own (string) hints need not resolve.
    wrapper.__annotations__ = hints
    wrapper._czsl_visitor_scoped = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]
