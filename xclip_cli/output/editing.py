"""Timelines for editing tools: OpenTimelineIO's JSON (``otio``), a CMX 3600 EDL (``edl``) and
Final Cut Pro X XML (``fcpxml``), from a timeline (``xclip timeline``) or moments (``xclip search``).

What they hold:

- A timeline: the whole video as one clip (its file as the media), with a marker per segment
  named ``cooking 87%`` (label, probability) whose range is the segment's and whose comment lists
  its top labels, one per line.
- Selects (``write_selects``): one clip per moment, in the order given (best first), each the
  moment's stretch of its file, named by the query and score (``a goal celebration 21.3``).

Frames: every time is a frame number at a file's own rate (``media.rates.probe_frame_rate``:
the rate its header states, snapped to the standard rate it stands for). A range covers every
frame on screen during it: its start is the frame showing then (rounded down), its end the
frame boundary at or after it (rounded up); the frame a timeline boundary falls inside goes to
both segments. A variable-rate file has no rate to count at: it is counted at the timeline's
rate (the first constant-rate file's, else 25 fps), with a warning. An EDL has one rate for
everything, a SMPTE timecode rate (the timeline's, else the nearest one): files at another rate
are counted in its frames (converted through seconds, again covering every frame), with a
warning; the otio and fcpxml formats keep each file's rate (an FCPXML project, too, runs at one
rate: clips at another are placed on its frames, as Final Cut conforms them).

Text: OpenTimelineIO's JSON keeps every character. Names are made one line (control
characters and line breaks become spaces) and at most ``NAME_LIMIT`` characters; full labels
stay in the comment and the metadata. OTIO and FCPXML locate files by ``file://`` URL
(percent-encoded, so any file name survives); an EDL names them by plain path (``output.edl``
on its reel names, markers and names). FCPXML is written here with the standard library
(``output.fcpxml`` says why), so ``fcpxml`` needs no extra package; ``otio`` and ``edl`` need
``pip install 'xclip-cli[edit]'``.
"""

from __future__ import annotations

import math
import os
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import TYPE_CHECKING, Any, TextIO

from xclip_cli.errors import MissingDependency
from xclip_cli.output.timecodes import cue_lines
from xclip_cli.results import Moment, Segment, Timeline

if TYPE_CHECKING:
    from xclip_cli.media.rates import FrameRate

EDIT_FORMATS = ("otio", "edl", "fcpxml")
NEEDS = {"otio": ("opentimelineio",), "edl": ("opentimelineio", "otio_cmx3600_adapter"), "fcpxml": ()}
DEFAULT_RATE = Fraction(25)  # frames per second of a timeline whose every file has a variable rate
FRAME_EPSILON = 1e-6  # frames: float noise on a time that is exactly a frame boundary
NAME_LIMIT = 120  # characters in a clip or marker name
LINE_LIMIT = 10_000  # characters in a line of a comment or a file name (no limit a label would reach)
# Marker colours by label, in order of first appearance (OpenTimelineIO's names; an EDL's LOC colours).
MARKER_COLOURS = ("RED", "GREEN", "BLUE", "CYAN", "MAGENTA", "YELLOW", "ORANGE", "PURPLE")
GENERATOR = "xclip-cli"
# How our OTIO and FCPXML files begin (writers.holds_xclip_output): a timeline whose metadata is
# ours first, or the FCPXML prologue with our comment (output.fcpxml.PROLOGUE).
EDIT_STARTS = (
    r'\{\s*"OTIO_SCHEMA":\s*"Timeline\.\d+",\s*"metadata":\s*\{\s*"xclip":'
    r"|<\?xml [^>]*\?>\s*<!DOCTYPE fcpxml>\s*<!-- xclip-cli -->"
)


@dataclass(frozen=True)
class Source:
    """One video file of an edit, counted at ``rate``."""

    path: str  # as given
    location: str  # absolute path (a URL stays as given)
    rate: Fraction  # frames per second its frames are counted at here
    frames: int  # its length in those frames
    probe: FrameRate


@dataclass(frozen=True)
class Mark:
    """A marker on a cut: frames ``start`` to ``end`` (exclusive) of its source."""

    start: int
    end: int
    name: str
    comment: str
    colour: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Cut:
    """One clip on the track: frames ``start`` to ``end`` (exclusive) of its source."""

    source: Source
    start: int
    end: int
    name: str
    marks: tuple[Mark, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Edit:
    """What an editing format writes: clips on one video track, played one after another."""

    name: str
    rate: Fraction  # the timeline's rate
    cuts: tuple[Cut, ...]
    metadata: dict[str, Any]
    warnings: tuple[str, ...] = ()


def require_edit_format(fmt: str) -> None:
    """``MissingDependency`` saying how to install what ``fmt`` needs, unless it is importable."""
    for module in NEEDS[fmt]:
        try:
            __import__(module)
        except ImportError:
            raise MissingDependency(
                f"-f {fmt} needs OpenTimelineIO: pip install 'xclip-cli[edit]' "
                "(in a source checkout: pip install -e '.[edit]')"
            ) from None


def write_timeline_edit(
    timeline: Timeline,
    segments: Sequence[Segment],
    fmt: str,
    stream: TextIO,
    rates: Mapping[str, FrameRate] | None = None,
) -> tuple[str, ...]:
    """Write ``timeline`` (reported as ``segments``) as ``fmt`` (``EDIT_FORMATS``): its video as
    one clip, a marker per segment. ``rates``: frame rates already known, by path (the video is
    probed otherwise). Returns warnings, each naming its file (variable rate, rates converted)."""
    require_edit_format(fmt)
    warnings: list[str] = []
    sources, rate = _sources([timeline.path], rates or {}, warnings)
    (source,) = sources.values()
    colours: dict[str, str] = {}
    marks = []
    for segment in segments:
        start, end = frame_span(segment.start, segment.end, source.rate, source.frames)
        colour = colours.setdefault(segment.label, MARKER_COLOURS[len(colours) % len(MARKER_COLOURS)])
        record = segment.to_record()
        details = {key: record[key] for key in ("start", "end", "label", "probability", "windows", "predictions")}
        comment = "\n".join(one_line(line, LINE_LIMIT) for line in cue_lines(segment))  # the top labels
        marks.append(Mark(start, end, mark_name(segment.label, f"{segment.probability:.0%}"), comment, colour,
                          {"xclip": details}))  # fmt: skip
    name = os.path.basename(timeline.path)
    cut = Cut(source, 0, source.frames, one_line(name), tuple(marks))
    metadata = {"command": "timeline", "path": timeline.path, "model": timeline.model, "labelset": timeline.labelset}
    edit = _edit(f"{name} ({timeline.labelset})", rate, [cut], metadata, warnings)
    return _write(edit, fmt, stream)


def write_selects(
    moments: Sequence[Moment], fmt: str, stream: TextIO, rates: Mapping[str, FrameRate] | None = None
) -> tuple[str, ...]:
    """Write ``moments`` as ``fmt`` (``EDIT_FORMATS``): a "selects" timeline of one clip per
    moment, in the order given, each its stretch of its file, named ``query score``. ``rates``:
    frame rates already known, by path (each file is probed once otherwise). Returns warnings."""
    require_edit_format(fmt)
    warnings: list[str] = []
    sources, rate = _sources([moment.path for moment in moments], rates or {}, warnings)
    cuts = []
    for rank, moment in enumerate(moments, start=1):
        source = sources[moment.path]
        start, end = frame_span(moment.start, moment.end, source.rate, source.frames)
        name = mark_name(moment.query, f"{moment.score:.1f}")
        cuts.append(Cut(source, start, end, name, metadata={"xclip": moment.to_record(rank)}))
    queries = " / ".join(dict.fromkeys(moment.query for moment in moments)) or "no moments"
    edit = _edit(f"{queries} (selects)", rate, cuts, {"command": "search"}, warnings)
    return _write(edit, fmt, stream)


def timeline_writer(fmt: str) -> Callable[[Timeline, Sequence[Segment], bool, TextIO], tuple[str, ...]]:
    """``write_timeline_edit`` for ``fmt`` in the form ``writers.TIMELINE_WRITERS`` holds."""

    def write(timeline: Timeline, segments: Sequence[Segment], merged: bool, stream: TextIO) -> tuple[str, ...]:
        return write_timeline_edit(timeline, segments, fmt, stream)

    return write


# --- frames ---------------------------------------------------------------------------------


def frame_span(start: float, end: float, rate: Fraction, frames: int) -> tuple[int, int]:
    """Frames ``[first, last + 1)`` on screen from ``start`` to ``end`` seconds at ``rate``:
    the start rounded down, the end rounded up, within ``frames`` and at least one frame."""
    per_second = float(rate)
    first = max(0, min(math.floor(start * per_second + FRAME_EPSILON), frames - 1))
    last = min(frames, math.ceil(end * per_second - FRAME_EPSILON))
    return first, max(first + 1, last)


def fps(rate: Fraction) -> str:
    """``25``, ``29.97``, ``23.976``."""
    return f"{float(rate):.3f}".rstrip("0").rstrip(".")


def _sources(
    paths: Sequence[str], rates: Mapping[str, FrameRate], warnings: list[str]
) -> tuple[dict[str, Source], Fraction]:
    """Each distinct path's rate and length, and the timeline's rate (the first constant-rate
    file's, else ``DEFAULT_RATE``); variable-rate files are counted at it, with a warning."""
    from xclip_cli.media.rates import probe_frame_rate

    probes = {path: rates[path] if path in rates else probe_frame_rate(path) for path in dict.fromkeys(paths)}
    rate = next((probe.rate for probe in probes.values() if probe.constant), DEFAULT_RATE)
    sources = {}
    for path, probe in probes.items():
        location = path if "://" in path else os.path.abspath(path)
        if probe.constant:
            sources[path] = Source(path, location, probe.rate, max(1, probe.frames), probe)
            continue
        warnings.append(
            f"{path}: variable frame rate: counted at {fps(rate)} fps, the timeline's rate "
            "(an editor may place its marks a frame off)"
        )
        sources[path] = Source(path, location, rate, max(1, math.ceil(probe.duration * rate - FRAME_EPSILON)), probe)
    return sources, rate


def _edit(name: str, rate: Fraction, cuts: list[Cut], metadata: dict[str, Any], warnings: list[str]) -> Edit:
    from xclip_cli import __version__

    tagged = {"xclip": {"generator": f"{GENERATOR} {__version__}", **metadata}}
    return Edit(one_line(name), rate, tuple(cuts), tagged, tuple(warnings))


def regrid(edit: Edit, rate: Fraction) -> Edit:
    """``edit`` with every file counted at ``rate``: frames of files at another rate converted
    through seconds, covering the same stretch (start rounded down, end up)."""

    def move(start: int, end: int, old: Source, new: Source) -> tuple[int, int]:
        return frame_span(float(start / old.rate), float(end / old.rate), new.rate, new.frames)

    cuts = []
    for cut in edit.cuts:
        old = cut.source
        if old.rate == rate:
            cuts.append(cut)
            continue
        new = replace(old, rate=rate, frames=max(1, math.ceil(float(old.frames / old.rate * rate) - FRAME_EPSILON)))
        marks = []
        for mark in cut.marks:
            first, last = move(mark.start, mark.end, old, new)
            marks.append(replace(mark, start=first, end=last))
        start, end = move(cut.start, cut.end, old, new)
        cuts.append(replace(cut, source=new, start=start, end=end, marks=tuple(marks)))
    return replace(edit, rate=rate, cuts=tuple(cuts))


# --- text -----------------------------------------------------------------------------------


def printable(text: str, replacement: str = " ") -> str:
    """``text`` with control characters (line breaks too) replaced, and lone surrogates (file-name
    bytes that are not UTF-8) and the two code points XML forbids made U+FFFD."""
    return "".join(
        replacement
        if unicodedata.category(char) == "Cc"
        else "\ufffd"
        if unicodedata.category(char) == "Cs" or char in "\ufffe\uffff"
        else char
        for char in text
    )


def utf8(value: Any) -> Any:
    """``value`` (text, or lists and dicts of it) as valid UTF-8, which OpenTimelineIO's core
    needs: file-name bytes that are not UTF-8 (lone surrogates) become U+FFFD; all else is kept."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if isinstance(value, dict):
        return {utf8(key): utf8(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [utf8(item) for item in value]
    return value


def one_line(text: str, limit: int = NAME_LIMIT) -> str:
    """``text`` as a one-line name: printable, runs of white space one space, at most ``limit``
    characters (cut with an ellipsis)."""
    folded = " ".join(printable(text).split())
    return folded if len(folded) <= limit else folded[: limit - 1].rstrip() + "…"


def mark_name(text: str, score: str) -> str:
    """``cooking 87%``: ``text`` made a name, shortened so that ``score`` always fits."""
    return f"{one_line(text, NAME_LIMIT - len(score) - 1)} {score}"


# --- the formats ----------------------------------------------------------------------------


def _write(edit: Edit, fmt: str, stream: TextIO) -> tuple[str, ...]:
    if fmt == "fcpxml":
        from xclip_cli.output.fcpxml import write_fcpxml

        write_fcpxml(edit, stream)
        return edit.warnings
    if fmt == "otio":
        import opentimelineio as otio

        stream.write(otio.adapters.write_to_string(otio_timeline(edit), "otio_json") + "\n")
        return edit.warnings
    if fmt != "edl":
        raise ValueError(f"format {fmt!r}: expected one of {', '.join(EDIT_FORMATS)}")
    from xclip_cli.output.edl import edl_text

    text, warnings = edl_text(edit)
    stream.write(text)
    return edit.warnings + tuple(warnings)


def otio_timeline(edit: Edit, reels: Mapping[str, str] | None = None) -> Any:
    """``edit`` as an OpenTimelineIO timeline. With ``reels`` (a reel name per path), as the
    CMX 3600 adapter is to write it: times in whole timecode frames, plain paths, reel names."""
    import opentimelineio as otio
    from opentimelineio.opentime import RationalTime, TimeRange

    edl = reels is not None
    timeline = otio.schema.Timeline(name=edit.name, metadata=utf8(edit.metadata))
    track = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    timeline.tracks.append(track)
    for cut in edit.cuts:
        source = cut.source
        rate = round(source.rate) if edl else float(source.rate)  # timecode counts 29.97 fps as 30 (NDF)

        def span(start: int, end: int, rate: float = rate) -> Any:
            return TimeRange(RationalTime(start, rate), RationalTime(end - start, rate))

        if edl:
            target = printable(source.location, "?")
        else:
            target = source.location if "://" in source.location else file_url(source.location)
        reference = otio.schema.ExternalReference(target_url=target, available_range=span(0, source.frames))
        clip = otio.schema.Clip(name=cut.name, media_reference=reference, source_range=span(cut.start, cut.end))
        clip.metadata.update(utf8(cut.metadata))
        if reels is not None:
            clip.metadata["cmx_3600"] = {"reel": reels[source.path]}
        for mark in cut.marks:
            clip.markers.append(
                otio.schema.Marker(
                    mark.name, span(mark.start, mark.end), mark.colour, utf8(mark.metadata), mark.comment
                )
            )
        track.append(clip)
    return timeline


def file_url(path: str) -> str:
    """A ``file://`` URL of an absolute path."""
    from pathlib import Path

    return Path(path).as_uri()  # percent-encoded: '#', '%' and undecodable bytes survive
