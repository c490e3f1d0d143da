"""``xclip classify --server URL``: send each video to a running ``xclip serve``.

Paths are sent as absolute paths (the server must be allowed to read them: see its roots);
the server's JSON records become the same ``VideoResult`` objects a local run produces, so
every output format is identical.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from typing import Any

from .errors import UsageError
from .results import Prediction, VideoResult

TIMEOUT_SECONDS = 600.0


def classify_remote(server: str, paths: Iterable[str], labels: str, top_k: int) -> Iterator[VideoResult]:
    url = server.rstrip("/") + "/classify"
    for path in paths:
        body = json.dumps({"path": os.path.abspath(path), "labels": labels, "top_k": top_k}).encode("utf-8")
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
                (record,) = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise UsageError(f"{server}: {path}: {_error(exc)}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise UsageError(f"cannot reach the xclip server at {server} ({reason})") from None
        yield _result(record, path)


def _result(record: dict[str, Any], path: str) -> VideoResult:
    """A server record back into a result, with the path as this user gave it."""
    return VideoResult(
        path=path,
        predictions=tuple(Prediction(p["label"], p["probability"], p["logit"]) for p in record["predictions"]),
        model=record["model"],
        labelset=record["labelset"],
        timestamps=tuple(record["timestamps"]),
        duration=record["duration"],
        width=record["width"],
        height=record["height"],
        views=record.get("views", 1),
        error=record["error"],
        warnings=tuple(record.get("warnings", ())),
    )


def _error(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read())["error"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {exc.code}"
