"""Timelines in the formats players and editors read: SRT and WebVTT subtitles, ffmpeg chapters.

Each segment becomes one cue (or chapter): its top labels (as many as the segments were made
with: ``--top-k``, 1 by default for these formats) with their probabilities, as ``cooking 87%``.
Times are whole milliseconds; cues keep the segments' order and never run backwards, so a
player shows them as the timeline says. Times given on the command line are read by
``parse_time``, as ffmpeg reads them.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from typing import TextIO

from xclip_cli.results import Segment, Timeline

CUE_FORMATS = ("srt", "vtt", "chapters")
CUE_TOP_K = 1  # labels per cue unless --top-k says otherwise
CHAPTER_EXTENSIONS = ("ffmetadata",)  # -o NAME.ffmetadata picks chapters; other names need -f chapters
# What ffmpeg's -ss and -t read: S[.f], or [HH:]MM:SS[.f] with minutes and seconds below 60.
_TIME = re.compile(r"(\d+(?:\.\d*)?|\.\d+)|(?:(\d+):)?([0-5]?\d):([0-5]?\d(?:\.\d*)?)")


def parse_time(text: str) -> float:
    """Seconds from a time as ffmpeg reads one: ``90``, ``90.5``, ``1:30`` (MM:SS) or
    ``00:01:30.5`` (HH:MM:SS), fractions allowed; ``ValueError`` saying what is expected otherwise."""
    match = _TIME.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a time: expected seconds, MM:SS or HH:MM:SS (e.g. 90, 1:30, 00:01:30.5)")
    plain, hours, minutes, seconds = match.groups()
    if plain is not None:
        return float(plain)
    return int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)


def cue_lines(segment: Segment) -> list[str]:
    """``["cooking 87%", ...]``: the segment's label (as in every other format), then its other
    top labels, one per line."""
    ranked = [(segment.label, segment.probability)]
    ranked += [(p.label, p.probability) for p in segment.predictions if p.label != segment.label]
    count = max(1, len(segment.predictions))
    # Whitespace folded: a newline or blank line inside a label would end the cue.
    return [f"{' '.join(label.split())} {probability:.0%}" for label, probability in ranked[:count]]


def _milliseconds(segments: Sequence[Segment]) -> list[tuple[int, int]]:
    """(start, end) of each segment in ms: in order, at least 1 ms long, and each ending where
    the next starts at the latest (raw windows overlap; one cue at a time is what players show)."""
    starts, floor = [], 0
    for segment in segments:
        floor = max(floor, round(segment.start * 1000))
        starts.append(floor)
    spans = []
    for number, (segment, start) in enumerate(zip(segments, starts, strict=True)):
        end = round(segment.end * 1000)
        if number + 1 < len(starts) and starts[number + 1] > start:
            end = min(end, starts[number + 1])
        spans.append((start, max(start + 1, end)))
    return spans


def _clock(ms: int, separator: str) -> str:
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{millis:03d}"


def write_srt(timeline: Timeline, segments: Sequence[Segment], merged: bool, stream: TextIO) -> None:
    """SubRip: numbered cues, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, the text, a blank line."""
    for number, (segment, (start, end)) in enumerate(zip(segments, _milliseconds(segments), strict=True), start=1):
        text = "\n".join(cue_lines(segment))
        stream.write(f"{number}\n{_clock(start, ',')} --> {_clock(end, ',')}\n{text}\n\n")
    stream.flush()


def write_vtt(timeline: Timeline, segments: Sequence[Segment], merged: bool, stream: TextIO) -> None:
    """WebVTT: the header, then cues; ``&``, ``<`` and ``>`` escaped as the format requires."""
    stream.write("WEBVTT\n\n")
    for segment, (start, end) in zip(segments, _milliseconds(segments), strict=True):
        text = "\n".join(html.escape(line, quote=False) for line in cue_lines(segment))  # &, <, >
        stream.write(f"{_clock(start, '.')} --> {_clock(end, '.')}\n{text}\n\n")
    stream.flush()


def write_chapters(timeline: Timeline, segments: Sequence[Segment], merged: bool, stream: TextIO) -> None:
    """ffmpeg's FFMETADATA: one ``[CHAPTER]`` per segment, in milliseconds.

    ``ffmpeg -i in.mp4 -i chapters.txt -map 0 -map_metadata 0 -map_chapters 1 -c copy
    -movflags use_metadata_tags out.mp4`` writes them into a video, keeping its own metadata.
    """
    stream.write(";FFMETADATA1\n")
    for segment, (start, end) in zip(segments, _milliseconds(segments), strict=True):
        title = _ffmetadata_escape(", ".join(cue_lines(segment)))
        stream.write(f"\n[CHAPTER]\nTIMEBASE=1/1000\nSTART={start}\nEND={end}\ntitle={title}\n")
    stream.flush()


def _ffmetadata_escape(text: str) -> str:
    """FFMETADATA values escape ``=``, ``;``, ``#``, ``\\`` and newlines with a backslash."""
    for char in ("\\", "=", ";", "#", "\n"):
        text = text.replace(char, "\\" + char)
    return text
