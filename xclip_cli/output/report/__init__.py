"""``--report report.html``: one self-contained page to look at results instead of reading them.

The page holds everything (no network, no external files): the results as a JSON block, the
thumbnails as base64 JPEGs, the styles and a small script that draws a card per video (or per
timeline segment, or per moment a search found, under its query), loads a card's images only
when it scrolls into view (``#all`` in the address loads them all, for printing), and filters
by label, path and status (``#q=TEXT`` presets the filter, for links). Text reaches the page
through ``textContent`` only, so paths and labels can never become markup.
"""

from __future__ import annotations

import bisect
import html
import json
import os
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes

from xclip_cli.errors import OutputError, VideoError
from xclip_cli.media.thumbnails import base64_jpegs
from xclip_cli.results import Moment, Segment, Timeline, VideoResult
from xclip_cli.store.atomic import write_text_atomic


def scan_report(results: Sequence[VideoResult], thumbnails: Mapping[str, Sequence[str]], title: str) -> dict[str, Any]:
    """The page's data for a scan: a card per video (``thumbnails``: path -> base64 JPEGs)."""
    videos = []
    for result in results:
        videos.append(
            {
                "path": _shown(result.path),
                "status": result.status,
                "labels": [[p.label, p.probability] for p in result.predictions],
                "tags": None if result.tags is None else [[tag.label, tag.score] for tag in result.tags],
                "error": result.error,
                "warnings": list(result.warnings),
                "duration": result.duration,
                "size": f"{result.width}x{result.height}" if result.width and result.height else None,
                "thumbs": list(thumbnails.get(result.path) or base64_jpegs(result.thumbnails)),
            }
        )
    models = sorted({result.model for result in results if result.model})
    labelsets = sorted({result.labelset for result in results if result.labelset})
    return {"kind": "scan", "title": title, "models": models, "labelsets": labelsets, "videos": videos}


def timeline_report(timeline: Timeline, segments: Sequence[Segment], merged: bool) -> dict[str, Any]:
    """The page's data for a timeline: the segments on a time axis, a thumbnail each."""
    rows = []
    owners = [window.owns_from for window in timeline.windows]
    for number, segment in enumerate(segments):
        # Raw windows are the segments themselves; a merged segment shows the window owning its middle.
        middle = (segment.start + segment.end) / 2
        at = number if not merged else max(0, bisect.bisect_right(owners, middle) - 1)
        window = timeline.windows[min(at, len(timeline.windows) - 1)]
        rows.append(
            {
                "start": segment.start,
                "end": segment.end,
                "label": segment.label,
                "probability": segment.probability,
                "windows": segment.windows,
                "labels": [[p.label, p.probability] for p in segment.predictions],
                "tags": None if segment.tags is None else [[tag.label, tag.score] for tag in segment.tags],
                "thumbs": base64_jpegs([window.thumbnail] if window.thumbnail else []),
            }
        )
    return {
        "kind": "timeline",
        "title": f"xclip timeline: {_shown(timeline.path)}",
        "path": _shown(timeline.path),
        "model": timeline.model,
        "labelset": timeline.labelset,
        "duration": timeline.duration,
        "window": timeline.window,
        "stride": timeline.stride,
        "merged": merged,
        "shots": None if timeline.shots is None else len(timeline.shots) + 1,
        "warnings": list(timeline.warnings),
        "segments": rows,
    }


def moments_report(
    moments: Sequence[Moment],
    queries: Sequence[str],
    thumbnails: Mapping[tuple[str, tuple[float, float]], Sequence[bytes] | VideoError],
    page: Path,
    title: str,
    model: str = "",
    windows: str = "",
) -> dict[str, Any]:
    """The page's data for a moment search: each query (in order, a query given twice once) with
    its moments best first, each with the frames of its best window (``thumbnails``: (path,
    best) -> JPEGs, or why none) and a link that plays it (``video_link``, from ``page``'s
    folder). ``model`` and ``windows`` (as the index's manifest says) head the page."""
    groups: dict[str, list[dict[str, Any]]] = {query: [] for query in queries}
    for moment in dict.fromkeys(moments):  # a query given twice found the same moments twice
        shown, href = video_link(moment.path, page, moment.start, moment.end)
        frames = thumbnails.get((moment.path, moment.best), ())
        groups.setdefault(moment.query, []).append(
            {
                "path": shown,
                "href": href,
                "start": moment.start,
                "end": moment.end,
                "best": list(moment.best),
                "score": moment.score,
                "windows": moment.windows,
                "thumbs": [] if isinstance(frames, VideoError) else base64_jpegs(frames),
                "problem": frames.reason if isinstance(frames, VideoError) else None,
            }
        )
    return {
        "kind": "moments",
        "title": title,
        "model": model,
        "windows": windows,
        "queries": [{"query": _shown(query), "moments": rows} for query, rows in groups.items()],
    }


def video_link(path: str, page: Path, start: float, end: float) -> tuple[str, str]:
    """(the path as the page shows it, a link that opens the video at ``start``-``end``): from
    the page's folder when the video lies below it (the folder can move, or be shared, with
    its videos), else a ``file://`` address; a media fragment (``#t=12.5,20``) gives the time.
    The path is percent-encoded byte by byte (``#``, ``?``, ``%`` and ``:`` included): it stays a
    path, never a scheme or a second fragment."""
    absolute = Path(os.path.abspath(path))
    relative = os.path.relpath(absolute, os.path.abspath(page.parent))
    fragment = f"#t={_seconds(start)},{_seconds(end)}"
    if relative == os.pardir or relative.startswith(os.pardir + os.sep):
        return _shown(str(absolute)), absolute.as_uri() + fragment
    posix = Path(relative).as_posix()
    return _shown(posix), "./" + quote_from_bytes(os.fsencode(posix)) + fragment


def _seconds(value: float) -> str:
    """Seconds as a media fragment gives them: at most 3 decimals, no exponent (``12.5``, ``20``)."""
    return f"{value:.3f}".rstrip("0").rstrip(".")


def page_template() -> str:
    """The page with its styles and script in place: ``page.html``, ``page.css`` and ``page.js``
    beside this module (package data), one self-contained file with ``__TITLE__`` and
    ``__DATA__`` left to fill."""
    files = resources.files(__name__)
    page = (files / "page.html").read_text(encoding="utf-8")
    style, script = ((files / name).read_text(encoding="utf-8") for name in ("page.css", "page.js"))
    return page.replace("/*__STYLE__*/\n", style).replace("/*__SCRIPT__*/\n", script)


def write_report(data: Mapping[str, Any], path: Path) -> None:
    """Write the page atomically (a reader never sees half a report)."""
    # ASCII JSON (file names need not be UTF-8), with every "<" escaped: inside <script>,
    # "</script>" would end the element and "<!--" change how the rest is parsed.
    payload = json.dumps(data, ensure_ascii=True, allow_nan=False).replace("<", "\\u003c")
    head, tail = page_template().split("__DATA__")
    page = head.replace("__TITLE__", html.escape(_shown(str(data.get("title", "xclip report"))))) + payload + tail
    try:
        write_text_atomic(path, page)  # permissions as for any output file (not a private temporary's)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the report ({exc.strerror or exc})") from None


def _shown(text: str) -> str:
    """Text as a page can show it: bytes of a file name that are not UTF-8 (held as surrogates)
    become U+FFFD, which is what a browser would draw for them anyway."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
