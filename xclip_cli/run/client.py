"""``xclip classify --server URL``: send each video to a running ``xclip serve``.

``GET /model`` says which folders the server reads itself and how large an upload it takes. A
file inside those roots is sent as its absolute path; any other file is uploaded, when it is a
file here within the server's limit (refused with one line otherwise, before it is sent): one
request, and one line in the server's log, per video. The server's JSON records become the same
``VideoResult`` objects a local run produces, so every output format is identical. What the
server fixes (its checkpoint, precision, device) is checked against what the user asked for
before any video is sent: an answer from another model than the one named would be silently
wrong.

A token (``--token`` or ``XCLIP_TOKEN``) travels as ``Authorization: Bearer``; a server that is
busy (503) is asked again after its ``Retry-After``, at most ``MAX_TRIES`` times.
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from xclip_cli.errors import EngineError, UsageError
from xclip_cli.labels import check_scorable, resolve_labels_without_files
from xclip_cli.options import ClassifyOptions
from xclip_cli.results import VideoResult
from xclip_cli.run.protocol import RETRY_AFTER_SECONDS, TOKEN_ENV, inside_roots
from xclip_cli.store.settings import SKIPPED, Setting, difference, same_model

TIMEOUT_SECONDS = 600.0
MAX_TRIES = 5  # requests sent while the server answers 503 (busy), the last one included
MAX_WAIT_SECONDS = 30  # the longest Retry-After waited for
FORWARDED = (
    "top_k",
    "start",
    "end",
    "clips",
    "crops",
    "timeout",
    "sampling",
    "multi_label",
)  # ClassifyOptions the server applies


@dataclass(frozen=True)
class Server:
    """A running ``xclip serve``: its URL, the token it wants, and how to wait while it is busy."""

    url: str
    token: str | None = None
    sleep: Callable[[float], None] = time.sleep  # between tries after a 503

    def __post_init__(self) -> None:
        if urllib.parse.urlsplit(self.url).scheme not in ("http", "https") or "//" not in self.url:
            raise UsageError(f"--server {self.url}: not an http:// or https:// URL")

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


def server_info(server: Server) -> dict[str, Any]:
    """The server's ``GET /model``: checkpoint, frames, precision, device, roots, upload limit."""
    try:
        info = _call(server, "/model")
    except _Refused as refused:
        raise UsageError(f"{server.url}: {refused.message}") from None
    if not isinstance(info, dict) or "model" not in info:
        raise UsageError(f"{server.url}: not an xclip server (no model in GET /model)")
    return info


def check_labels(labels: str, multi_label: bool = False) -> None:
    """The server takes built-in names and comma lists only, and one label only with
    ``multi_label``: refuse what it would refuse before anything is sent."""
    check_scorable(resolve_labels_without_files(labels), multi_label, f"--labels {labels}")


# What a server runs with (``GET /model``), which a client's options must not contradict.
SERVED = (
    Setting("model", "--model (and XCLIP_MODEL)", same=same_model, says="serves {made}, not {run}"),
    Setting("precision", "--precision", old="fp32", says="runs at --precision {made}, not {run}"),
    Setting(
        "device",
        "--device (and XCLIP_DEVICE)",
        old=SKIPPED,
        says="runs on {made}, not {run}",
        same=lambda served, asked: served in (asked, f"{asked}:0"),
    ),
)


def check_server(
    info: dict[str, Any], server: str, model: str | None, precision: str | None, device: str | None
) -> None:
    """Refuse settings the server cannot honour: it has one checkpoint, precision and device."""
    asked = {"model": model, "precision": precision, "device": None if device == "auto" else device}
    found = difference(SERVED, info, {key: value for key, value in asked.items() if value is not None})
    if found is not None:
        raise UsageError(f"{server} {found}: drop {found.setting.option} to use it")


def classify_remote(
    server: Server,
    info: dict[str, Any],
    paths: Iterable[str],
    labels: str,
    options: ClassifyOptions | None = None,
) -> Iterator[VideoResult]:
    """One result per path, in order, computed by the server (``info``: its ``GET /model``)."""
    options = options or ClassifyOptions()
    settings = {key: value for key, value in asdict(options).items() if key in FORWARDED}
    for path in paths:
        how = route(info, path)
        if how == "upload":
            record = _upload(server, path, labels, settings)
        else:
            try:
                record = _classify_path(server, path, labels, settings)
            except _Refused as refused:  # a server from before GET /model listed its roots
                if how != "ask" or refused.status != 403 or not os.path.isfile(path):
                    raise UsageError(f"{server.url}: {refused.message}") from None
                record = _upload(server, path, labels, settings)
        if record.get("sampling", "exact") != options.sampling:  # a server from before --sampling ignores it
            raise UsageError(f"{server.url} does not support --sampling {options.sampling}: upgrade its xclip-cli")
        if options.multi_label and record.get("status") == "ok" and record.get("tags") is None:
            raise UsageError(f"{server.url} does not support --multi-label: upgrade its xclip-cli")
        yield VideoResult.from_record(record, path)


def route(info: dict[str, Any], path: str) -> str:
    """How ``path`` reaches the server (``info``: its ``GET /model``): ``"path"`` (it reads the file
    itself), ``"upload"`` (the bytes are sent), or ``"ask"`` (a server that does not list its roots:
    the path first, the bytes after a 403). ``UsageError`` when neither can work."""
    roots = info.get("roots")
    if not isinstance(roots, list):
        return "ask"
    if inside_roots(path, map(str, roots)) is not None:
        return "path"  # a missing file too: the server answers with an error record, as a local run does
    where = f"outside the server's --root folders ({', '.join(map(str, roots))})"
    if not os.path.isfile(path):
        raise UsageError(f"{path}: {where}, and not a file here to upload")
    size, limit = os.path.getsize(path), int(info.get("max_upload", 0))
    if size > limit:
        raise UsageError(f"{path}: {where}, and its {size} bytes exceed its upload limit of {limit} (--max-upload-mb)")
    return "upload"


class _Refused(Exception):
    """A 4xx answer other than 401: the caller says what it was doing."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _classify_path(server: Server, path: str, labels: str, settings: dict[str, Any]) -> dict[str, Any]:
    body = json.dumps({"path": os.path.abspath(path), "labels": labels, **settings}).encode("utf-8")
    return _record(_call(server, "/classify", body, {"Content-Type": "application/json"}))


def _upload(server: Server, path: str, labels: str, settings: dict[str, Any]) -> dict[str, Any]:
    query = {"labels": labels, "name": os.path.basename(path)}
    query |= {key: str(value) for key, value in settings.items() if value is not None}
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        try:
            return _record(_call(server, "/classify?" + urllib.parse.urlencode(query), handle, headers))
        except _Refused as refused:
            raise UsageError(
                f"{server.url}: {refused.message} (uploading {path}, which lies outside the server's --root folders)"
            ) from None


def _record(answer: Any) -> dict[str, Any]:
    (record,) = answer
    return dict(record)


def _call(server: Server, route: str, data: Any = None, headers: dict[str, str] | None = None) -> Any:
    """The JSON answer to one request; a 503 (busy) is tried again after its Retry-After, at most
    ``MAX_TRIES`` times in all. A 401 or a server that cannot be reached ends the run with one line."""
    for attempt in range(1, MAX_TRIES + 1):
        status, answer, retry_after = _exchange(server, route, data, headers or {})
        if status == 200:
            try:
                return json.loads(answer)
            except ValueError:
                raise UsageError(f"{server.url}: not an xclip server (its answer to {route} is not JSON)") from None
        message = _error(status, answer)
        if status == 503 and attempt < MAX_TRIES:
            server.sleep(_retry_after(retry_after))
        elif status == 401:
            raise UsageError(_unauthorized(server, message))
        elif status == 503:
            raise EngineError(
                f"{server.url} is still busy after {MAX_TRIES} tries ({message}): try later, "
                "or start it with a larger --max-queue"
            )
        elif status >= 500:
            raise EngineError(f"{server.url} failed: {message}")
        else:
            raise _Refused(status, message)
    raise AssertionError("unreachable: the last try returns or raises")


def _exchange(server: Server, route: str, data: Any, headers: dict[str, str]) -> tuple[int, bytes, str | None]:
    """One request (GET without ``data``, POST with it): the status, body and Retry-After of its answer."""
    url = urllib.parse.urlsplit(server.url)
    connect = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    connection = connect(url.netloc, timeout=TIMEOUT_SECONDS)
    if hasattr(data, "seek"):
        data.seek(0)  # an upload read by an earlier try
    try:
        try:
            method = "GET" if data is None else "POST"
            connection.request(method, url.path.rstrip("/") + route, body=data, headers=server.headers() | headers)
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered before the whole body was sent (503, say, which reads none): the answer waits
        response = connection.getresponse()
        return response.status, response.read(), response.getheader("Retry-After")
    except (OSError, http.client.HTTPException) as exc:
        raise EngineError(f"cannot reach the xclip server at {server.url} ({exc})") from None
    finally:
        connection.close()


def _unauthorized(server: Server, message: str) -> str:
    if server.token is None:
        return f"{server.url} requires a token: give the one it was started with (--token or {TOKEN_ENV})"
    return f"{server.url} refused the token ({message}): give the one it was started with (--token or {TOKEN_ENV})"


def _retry_after(value: str | None) -> float:
    """Seconds to wait before the next try: the server's Retry-After (seconds), within bounds."""
    try:
        seconds = int(value or "")
    except ValueError:  # none, or an HTTP date
        seconds = RETRY_AFTER_SECONDS
    return float(min(max(seconds, 0), MAX_WAIT_SECONDS))


def _error(status: int, answer: bytes) -> str:
    """The ``error`` of a refusal's JSON body, else its status."""
    try:
        return str(json.loads(answer)["error"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {status}"
