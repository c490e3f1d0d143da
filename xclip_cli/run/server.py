"""``xclip serve``: keep a model loaded and classify over HTTP on localhost.

Standard-library HTTP (``ThreadingHTTPServer``): no extra dependency. Requests are handled in
threads; the model runs one request at a time. Endpoints:

* ``GET /health`` -> ``{"status": "ok"}``; ``GET /model`` -> the checkpoint, frames, precision;
* ``POST /classify`` with a JSON body ``{"path": "...", "labels": "kinetics400", "top_k": 5}``:
  a file on the server's disk, which must lie inside one of the allowed roots (after resolving
  symlinks and ``..``);
* ``POST /classify?labels=...&top_k=...&name=clip.mp4`` with the video itself as the body
  (any other content type), at most ``max_upload`` bytes.

Both also take ``start``, ``end``, ``clips``, ``crops``, ``sampling``, ``multi_label`` and ``timeout``
(``ClassifyOptions``).

Both answer with what ``xclip classify --format json`` prints for that one video (a list of one
record); a video that cannot be read is a record with ``"status": "error"``, as in the CLI.
Bad requests get a 4xx status and ``{"error": "..."}``. Label files are never read on a
request's behalf: ``labels`` is a built-in name or a comma list.

With a token every request must carry ``Authorization: Bearer TOKEN`` (401 otherwise); beyond
``max_queue`` classify requests at once the server answers 503 with ``Retry-After`` without
reading the body (``xclip_cli.run.protocol``).
"""

from __future__ import annotations

import hmac
import json
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from xclip_cli.errors import XClipError
from xclip_cli.jobs.classify import classify_videos
from xclip_cli.labels import check_scorable, resolve_labels_without_files
from xclip_cli.model.backend import Backend
from xclip_cli.options import ClassifyOptions
from xclip_cli.run.protocol import MAX_QUEUE, RETRY_AFTER_SECONDS, check_exposure, inside_roots
from xclip_cli.store.results_file import video_identity

MAX_JSON_BYTES = 64 * 1024


class RequestError(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class ClassifyService:
    """The loaded model and the rules of what a request may read."""

    runner: Backend
    roots: Sequence[Path]
    max_upload: int  # bytes
    default_labels: str = "kinetics400"
    log: Callable[[str], None] | None = None  # one line per request, e.g. to stderr
    token: str | None = None  # when set, every request must send it (Authorization: Bearer)
    max_queue: int = MAX_QUEUE  # classify requests running or waiting at once; more get 503

    def __post_init__(self) -> None:
        if self.max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, not {self.max_queue}")
        self.roots = [Path(os.path.realpath(root)) for root in self.roots]
        self.lock = threading.Lock()  # one forward pass at a time
        self.slots = threading.BoundedSemaphore(self.max_queue)  # taken without waiting, or 503

    def model_info(self) -> dict[str, Any]:
        runner = self.runner
        return {
            "model": runner.model_id,
            "num_frames": runner.num_frames,
            "precision": runner.precision,
            "device": str(getattr(runner, "device", "cpu")),
            "backend": runner.backend,
            "roots": [str(root) for root in self.roots],  # a client names files in these, uploads others
            "max_upload": self.max_upload,
        }

    def classify(
        self,
        path: str,
        labels: str | None,
        options: ClassifyOptions,
        shown_path: str | None = None,
        uploaded: bool = False,
    ) -> list[dict[str, Any]]:
        """The record of one video, as ``classify -f json`` prints it: ``path`` as the request
        named it (``shown_path``), ``resolved_path`` the file read (none for an upload)."""
        labelset = resolve_labels_without_files(labels or self.default_labels)
        check_scorable(labelset, options.multi_label, f"labels {labels or self.default_labels!r}")
        with self.lock:
            (result,) = classify_videos(self.runner, [path], labelset, options)
        record = result.to_record()
        record["resolved_path"] = None if uploaded else video_identity(path)
        if shown_path is not None:
            record["path"] = shown_path
        return [record]

    def allowed(self, path: str) -> str:
        """The real path of ``path`` if it lies inside a root; ``RequestError`` (403) otherwise."""
        if "\0" in path:  # realpath would raise ValueError
            raise RequestError(HTTPStatus.BAD_REQUEST, "a path cannot contain a NUL byte")
        real = inside_roots(path, map(str, self.roots))
        if real is None:
            raise RequestError(HTTPStatus.FORBIDDEN, f"{path}: outside the server's allowed roots")
        return real

    def authorized(self, header: str | None) -> bool:
        """Whether an ``Authorization`` header carries the token (always, without one)."""
        if self.token is None:
            return True
        scheme, _, given = (header or "").partition(" ")
        # compare_digest: the time taken does not tell how much of a guess was right
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token.encode())


def make_server(service: ClassifyService, host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    """A server for ``service`` on ``host``; a host other machines can reach needs ``service.token``."""
    check_exposure(host, service.token)

    class Handler(_Handler):
        pass

    class Server(ThreadingHTTPServer):
        address_family = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]

    Handler.service = service
    server = Server((host, port), Handler)
    server.daemon_threads = True
    return server


class _Handler(BaseHTTPRequestHandler):
    service: ClassifyService
    server_version = "xclip-serve"

    def handle_one_request(self) -> None:
        self._started = time.monotonic()
        super().handle_one_request()

    def do_GET(self) -> None:
        if not self._authorized():
            return
        route = urlsplit(self.path).path
        if route == "/health":
            self._send(HTTPStatus.OK, {"status": "ok"})
        elif route == "/model":
            self._send(HTTPStatus.OK, self.service.model_info())
        else:
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: GET {route}"})

    def do_POST(self) -> None:
        if not self._authorized():
            return
        url = urlsplit(self.path)
        if url.path != "/classify":
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: POST {url.path}"})
            return
        if not self.service.slots.acquire(blocking=False):  # the body stays unread: nothing is held for it
            most = self.service.max_queue
            busy = f"busy: the queue is full (at most {most} requests running or waiting); retry later"
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, {"error": busy}, {"Retry-After": str(RETRY_AFTER_SECONDS)})
            return
        payload: Any
        try:
            status, payload = HTTPStatus.OK, self._classify(parse_qs(url.query))
        except RequestError as exc:
            status, payload = exc.status, {"error": str(exc)}
        except XClipError as exc:  # a bad label set, for instance
            status, payload = HTTPStatus.BAD_REQUEST, {"error": str(exc)}
        finally:
            self.service.slots.release()  # before the answer: a client that has it may send the next at once
        self._send(status, payload)

    def _authorized(self) -> bool:
        """True, or False after answering 401 (the body unread, the token never logged)."""
        header = self.headers.get("Authorization")
        if self.service.authorized(header):
            return True
        problem = "wrong token" if header else "this server requires a token (Authorization: Bearer TOKEN)"
        self._send(HTTPStatus.UNAUTHORIZED, {"error": problem}, {"WWW-Authenticate": "Bearer"})
        return False

    def _classify(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        length = self._length()
        kind = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if kind == "application/json":
            if length > MAX_JSON_BYTES:
                raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "JSON body too large")
            try:
                body = json.loads(self.rfile.read(length) or b"null")
            except ValueError:
                raise RequestError(HTTPStatus.BAD_REQUEST, "the body is not valid JSON") from None
            if not isinstance(body, dict) or not isinstance(body.get("path"), str):
                raise RequestError(HTTPStatus.BAD_REQUEST, 'expected {"path": "...", "labels": ..., "top_k": ...}')
            path = self.service.allowed(body["path"])
            return self.service.classify(path, body.get("labels"), _options(body), body["path"])
        if length > self.service.max_upload:
            raise RequestError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"upload of {length} bytes exceeds {self.service.max_upload}"
            )
        name = (query.get("name") or ["upload"])[0]
        with tempfile.TemporaryDirectory(prefix="xclip-serve-") as folder:
            target = Path(folder) / ("video" + Path(name).suffix[:16])
            with open(target, "wb") as handle:
                remaining = length
                while remaining:
                    chunk = self.rfile.read(min(remaining, 1 << 20))
                    if not chunk:
                        raise RequestError(HTTPStatus.BAD_REQUEST, "the upload ended early")
                    handle.write(chunk)
                    remaining -= len(chunk)
            labels = query["labels"][0] if query.get("labels") else None
            options = _options({k: v[0] for k, v in query.items()})
            return self.service.classify(str(target), labels, options, name, uploaded=True)

    def _length(self) -> int:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required") from None
        if length < 0:
            raise RequestError(HTTPStatus.BAD_REQUEST, "negative Content-Length")
        return length

    def _send(self, status: HTTPStatus, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        if self.service.log is not None:  # before the answer: a client never sees it before its line
            took = time.monotonic() - self._started
            self.service.log(f"{self.client_address[0]} {self.command} {self.path} {int(status)} {took:.2f} s")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if status >= 400:
            self.send_header("Connection", "close")  # an unread body must not be taken for a request
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # http.server's own lines go nowhere: handle_one_request logs one line per request


def _options(fields: dict[str, Any]) -> ClassifyOptions:
    """A request's sampling options (JSON values, or query strings); a bad value is a 400."""
    kinds: dict[str, Any] = {"top_k": int, "clips": int, "crops": int, "start": float, "end": float}
    kinds |= {"timeout": float, "sampling": str, "multi_label": _flag}
    values: dict[str, Any] = {}
    for key, kind in kinds.items():
        value = fields.get(key)
        if value is None:
            continue
        try:
            values[key] = kind(value)
        except (TypeError, ValueError):
            expected = "true or false" if kind is _flag else "a number"
            raise RequestError(HTTPStatus.BAD_REQUEST, f"{key} {value!r} is not {expected}") from None
    return ClassifyOptions(**values)  # UsageError (a 400) for values out of range


def _flag(value: Any) -> bool:
    """A JSON boolean, or its query-string spelling."""
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "1"):
        return True
    if str(value).lower() in ("false", "0"):
        return False
    raise ValueError(value)
