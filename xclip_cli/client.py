"""``xclip classify --server URL``: send each video to a running ``xclip serve``.

Paths are sent as absolute paths; a file outside the server's roots is uploaded instead. The
server's JSON records become the same ``VideoResult`` objects a local run produces, so every
output format is identical. What the server fixes (its checkpoint, precision, device) is
checked against what the user asked for before any video is sent: an answer from another
model than the one named would be silently wrong.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from typing import Any

from .errors import UsageError
from .labels import resolve_labels_without_files
from .options import ClassifyOptions
from .results import VideoResult
from .scan import same_model

TIMEOUT_SECONDS = 600.0
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


def server_info(server: str) -> dict[str, Any]:
    """The server's ``GET /model``: checkpoint, frames, precision, device."""
    try:
        with urllib.request.urlopen(server.rstrip("/") + "/model", timeout=TIMEOUT_SECONDS) as response:
            info = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UsageError(f"cannot reach the xclip server at {server} ({reason})") from None
    if not isinstance(info, dict) or "model" not in info:
        raise UsageError(f"{server}: not an xclip server (no model in GET /model)")
    return info


def check_labels(labels: str) -> None:
    """The server takes built-in names and comma lists only: refuse a file before anything is sent."""
    resolve_labels_without_files(labels)


def check_server(
    info: dict[str, Any], server: str, model: str | None, precision: str | None, device: str | None
) -> None:
    """Refuse settings the server cannot honour: it has one checkpoint, precision and device."""
    if model is not None and not same_model(model, str(info["model"])):
        raise UsageError(f"{server} serves {info['model']}, not {model}: drop --model (and XCLIP_MODEL) to use it")
    if precision is not None and precision != info.get("precision"):
        raise UsageError(f"{server} runs at --precision {info.get('precision')}, not {precision}")
    served = str(info.get("device", ""))
    if device not in (None, "auto") and served not in (device, f"{device}:0"):
        raise UsageError(f"{server} runs on {served}, not {device}")


def classify_remote(
    server: str, paths: Iterable[str], labels: str, options: ClassifyOptions | None = None
) -> Iterator[VideoResult]:
    """One result per path, in order, computed by the server with these options."""
    options = options or ClassifyOptions()
    settings = {key: value for key, value in asdict(options).items() if key in FORWARDED}
    for path in paths:
        body = {"path": os.path.abspath(path), "labels": labels, **settings}
        try:
            record = _post(server, json.dumps(body).encode("utf-8"), "", "application/json")
        except _Refused as refused:
            if refused.status != 403 or not os.path.isfile(path):
                raise UsageError(f"{server}: {refused.message}") from None
            record = _upload(server, path, labels, settings)  # outside its roots: send the file itself
        if record.get("sampling", "exact") != options.sampling:  # a server from before --sampling ignores it
            raise UsageError(f"{server} does not support --sampling {options.sampling}: upgrade its xclip-cli")
        if options.multi_label and record.get("status") == "ok" and record.get("tags") is None:
            raise UsageError(f"{server} does not support --multi-label: upgrade its xclip-cli")
        yield VideoResult.from_record(record, path)


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _upload(server: str, path: str, labels: str, settings: dict[str, Any]) -> dict[str, Any]:
    query = {"labels": labels, "name": os.path.basename(path)}
    query |= {key: str(value) for key, value in settings.items() if value is not None}
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        try:
            return _post(server, handle, "?" + urllib.parse.urlencode(query), "application/octet-stream", size)
        except _Refused as refused:
            raise UsageError(
                f"{server}: {refused.message} (uploading {path}, which lies outside the server's --root folders)"
            ) from None


def _post(server: str, data: Any, query: str, kind: str, size: int | None = None) -> dict[str, Any]:
    headers = {"Content-Type": kind} | ({"Content-Length": str(size)} if size is not None else {})
    request = urllib.request.Request(server.rstrip("/") + "/classify" + query, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            (record,) = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise _Refused(exc.code, _error(exc)) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UsageError(f"cannot reach the xclip server at {server} ({reason})") from None
    return dict(record)


def _error(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read())["error"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {exc.code}"
