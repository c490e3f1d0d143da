"""``--report report.html``: one self-contained page to look at results instead of reading them.

The page holds everything (no network, no external files): the results as a JSON block, the
thumbnails as base64 JPEGs, the styles and a small script that draws a card per video (or per
timeline segment), loads a card's images only when it scrolls into view (``#all`` in the
address loads them all, for printing), and filters by label, path and status (``#q=TEXT``
presets the filter, for links). Text reaches
the page through ``textContent`` only, so paths and labels can never become markup.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import OutputError
from .report_page import PAGE
from .results import Segment, Timeline, VideoResult


def scan_report(results: Sequence[VideoResult], thumbnails: Mapping[str, Sequence[str]], title: str) -> dict[str, Any]:
    """The page's data for a scan: a card per video (``thumbnails``: path -> base64 JPEGs)."""
    videos = []
    for result in results:
        videos.append(
            {
                "path": result.path,
                "status": result.status,
                "labels": [[p.label, p.probability] for p in result.predictions],
                "error": result.error,
                "warnings": list(result.warnings),
                "duration": result.duration,
                "size": f"{result.width}x{result.height}" if result.width and result.height else None,
                "thumbs": list(thumbnails.get(result.path) or _encoded(result.thumbnails)),
            }
        )
    models = sorted({result.model for result in results if result.model})
    labelsets = sorted({result.labelset for result in results if result.labelset})
    return {"kind": "scan", "title": title, "models": models, "labelsets": labelsets, "videos": videos}


def timeline_report(timeline: Timeline, segments: Sequence[Segment], merged: bool) -> dict[str, Any]:
    """The page's data for a timeline: the segments on a time axis, a thumbnail each."""
    rows = []
    for segment in segments:
        middle = (segment.start + segment.end) / 2
        # The window that owns the segment's middle (merged), or the segment's own window (raw).
        window = min(
            timeline.windows,
            key=lambda w: (not (w.owns_from <= middle <= w.owns_to), abs((w.start + w.end) / 2 - middle)),
        )
        rows.append(
            {
                "start": segment.start,
                "end": segment.end,
                "label": segment.label,
                "probability": segment.probability,
                "windows": segment.windows,
                "labels": [[p.label, p.probability] for p in segment.predictions],
                "thumbs": _encoded([window.thumbnail] if window.thumbnail else []),
            }
        )
    return {
        "kind": "timeline",
        "title": f"xclip timeline: {timeline.path}",
        "path": timeline.path,
        "model": timeline.model,
        "labelset": timeline.labelset,
        "duration": timeline.duration,
        "window": timeline.window,
        "stride": timeline.stride,
        "merged": merged,
        "warnings": list(timeline.warnings),
        "segments": rows,
    }


def write_report(data: Mapping[str, Any], path: Path) -> None:
    """Write the page atomically (a reader never sees half a report)."""
    payload = json.dumps(data, ensure_ascii=False, allow_nan=False)
    # Inside <script>, "</" could close the element and "<!--" open a comment: escape both.
    payload = payload.replace("</", "<\\/").replace("<!--", "<\\!--")
    html = PAGE.replace("__TITLE__", _html_escape(str(data.get("title", "xclip report")))).replace("__DATA__", payload)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=folder, suffix=".tmp", delete=False) as handle:
            handle.write(html)
        os.replace(handle.name, path)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the report ({exc.strerror or exc})") from None


def _encoded(jpegs: Sequence[bytes]) -> list[str]:
    return [base64.b64encode(jpeg).decode("ascii") for jpeg in jpegs]


def _html_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
