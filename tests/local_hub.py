"""A local stand-in for the Hugging Face Hub on 127.0.0.1: serves model repos from folders (repo info with file
sizes, file downloads with range requests, as huggingface_hub asks for them) and records every request, so tests
point HF_ENDPOINT at it and never touch the network. A repo may also declare files larger than it serves."""

from __future__ import annotations

import hashlib
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class LocalHub:
    """repos: repo id -> folder of files; declared: repo id -> {file: size the metadata claims}."""

    def __init__(self) -> None:
        self.repos: dict[str, Path] = {}
        self.declared: dict[str, dict[str, int]] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                hub.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
                status, headers, body = hub.route(self.command, self.path, self.headers.get("Range"))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", headers.get("Content-Length", str(len(body))))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_POST = _answer

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()

    def add(self, repo_id: str, folder: Path, declared: dict[str, int] | None = None) -> None:
        """Serve a folder as the repo; `declared` overrides sizes in the repo info."""
        self.repos[repo_id] = Path(folder)
        self.declared[repo_id] = dict(declared or {})

    @staticmethod
    def commit(repo_id: str) -> str:
        """The repo's (only) commit."""
        return hashlib.sha1(repo_id.encode()).hexdigest()

    def downloads(self) -> list[str]:
        """Paths of the file GETs (not HEADs, not range reads of a header)."""
        return [path for method, path, headers in self.requests
                if method == "GET" and "/resolve/" in path and "range" not in headers]

    def route(self, method: str, raw_path: str, byte_range: str | None) -> tuple[int, dict[str, str], bytes]:
        path = urllib.parse.unquote(urllib.parse.urlsplit(raw_path).path)
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "tree":
            return self._tree("/".join(parts[2:4]))
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            return self._info("/".join(parts[2:4]))
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._file("/".join(parts[:2]), "/".join(parts[4:]), byte_range)
        return 404, {"Content-Type": "application/json"}, b'{"error": "not found"}'

    def _missing(self) -> tuple[int, dict[str, str], bytes]:
        return 404, {"Content-Type": "application/json", "X-Error-Code": "RepoNotFound"}, b'{"error": "Repository not found"}'

    def _sizes(self, repo_id: str) -> dict[str, int]:
        sizes = {file.name: file.stat().st_size for file in self.repos[repo_id].iterdir() if file.is_file()}
        sizes.update(self.declared[repo_id])
        return sizes

    def _tree(self, repo_id: str) -> tuple[int, dict[str, str], bytes]:
        if repo_id not in self.repos:
            return self._missing()
        body = [{"type": "file", "path": name, "size": size, "oid": hashlib.sha1(name.encode()).hexdigest()}
                for name, size in sorted(self._sizes(repo_id).items())]
        return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()

    def _info(self, repo_id: str) -> tuple[int, dict[str, str], bytes]:
        if repo_id not in self.repos:
            return self._missing()
        sizes = self._sizes(repo_id)
        body = {"id": repo_id, "modelId": repo_id, "sha": self.commit(repo_id), "private": False,
                "siblings": [{"rfilename": name, "size": size} for name, size in sorted(sizes.items())]}
        return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()

    def _file(self, repo_id: str, name: str, byte_range: str | None) -> tuple[int, dict[str, str], bytes]:
        folder = self.repos.get(repo_id)
        if folder is None:
            return self._missing()
        file = folder / name
        if not file.is_file():
            return 404, {"Content-Type": "application/json", "X-Error-Code": "EntryNotFound"}, b'{"error": "no file"}'
        data = file.read_bytes()
        headers = {"X-Repo-Commit": self.commit(repo_id), "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                   "Content-Type": "application/octet-stream"}
        if byte_range and byte_range.startswith("bytes="):
            start, _, end = byte_range[len("bytes="):].partition("-")
            chunk = data[int(start): (int(end) + 1) if end else len(data)]
            headers["Content-Range"] = f"bytes {start}-{int(start) + len(chunk) - 1}/{len(data)}"
            return 206, headers, chunk
        return 200, headers, data
