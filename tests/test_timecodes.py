"""Timelines as SRT and WebVTT subtitles and ffmpeg chapters, read back by real parsers."""

from __future__ import annotations

import io
import itertools
import json
import shlex
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import srt
import webvtt
from helpers import MARKUP_LABELS, invoke, need_program, readme_lines, write_video

from xclip_cli.errors import ExitCode
from xclip_cli.output.timecodes import parse_time, write_chapters, write_srt, write_vtt
from xclip_cli.results import Segment, Timeline, Window

# What a phone writes into its videos, and what muxing chapters in must keep.
PHONE_TAGS = {
    "creation_time": "2024-05-01T10:20:30.000000Z",
    "location": "+48.8584+002.2945/",
    "make": "Apple",
    "model": "iPhone 15",
}


def timeline(labels: tuple[str, ...] = MARKUP_LABELS, duration: float = 3725.5) -> Timeline:
    """Windows of 4 s every 2 s over an hour-long video, each topped by the next label in turn."""
    windows = []
    starts = [*np.arange(0, duration - 4, 2.0).tolist(), duration - 4]
    for i, start in enumerate(starts):
        probabilities = np.full(len(labels), 0.3 / (len(labels) - 1))
        probabilities[(i // 3) % len(labels)] = 0.7  # runs of three windows: merged segments
        owns_from = 0.0 if i == 0 else start + 1
        owns_to = duration if i == len(starts) - 1 else start + 3
        windows.append(Window(start, start + 4, owns_from, owns_to, probabilities))
    return Timeline("v.mp4", "m", "s", duration, 4.0, 2.0, tuple(windows), labels)


def segments(top_k: int = 1) -> tuple[Segment, ...]:
    return timeline().segments(top_k=top_k)


def render(writer, top_k: int = 1) -> str:
    stream = io.StringIO()
    writer(timeline(), segments(top_k), True, stream)
    return stream.getvalue()


def expected_text(segment: Segment) -> str:
    return f"{' '.join(segment.label.split())} {segment.probability:.0%}"


@pytest.mark.parametrize("top_k", [1, 3])
def test_srt_parses_back_to_the_segments(top_k: int) -> None:
    cues = list(srt.parse(render(write_srt, top_k)))
    assert len(cues) == len(segments(top_k)) > 100
    for cue, segment in zip(cues, segments(top_k), strict=True):
        assert cue.start.total_seconds() == pytest.approx(segment.start, abs=5e-4)
        assert cue.end.total_seconds() == pytest.approx(segment.end, abs=5e-4)
        lines = cue.content.split("\n")
        assert lines[0] == expected_text(segment) and len(lines) == top_k
    assert cues[-1].end.total_seconds() == pytest.approx(3725.5)  # past an hour: HH:MM:SS,mmm


@pytest.mark.parametrize("top_k", [1, 3])
def test_vtt_parses_back_to_the_segments(top_k: int) -> None:
    captions = webvtt.from_buffer(io.StringIO(render(write_vtt, top_k))).captions
    assert len(captions) == len(segments(top_k))
    for caption, segment in zip(captions, segments(top_k), strict=True):
        assert caption.start_in_seconds + caption.start_time.milliseconds / 1000 == pytest.approx(
            segment.start, abs=5e-4
        )
        assert caption.end_in_seconds + caption.end_time.milliseconds / 1000 == pytest.approx(segment.end, abs=5e-4)
        raw = caption.raw_text.split("\n")
        assert len(raw) == top_k
        unescaped = raw[0].replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
        assert unescaped == expected_text(segment)
        assert "<" not in caption.raw_text  # markup in a label is text, not a tag


def test_chapters_are_read_by_ffmpeg_and_muxed_into_a_video(tmp_path: Path) -> None:
    chapters_file = tmp_path / "chapters.txt"
    chapters_file.write_text(render(write_chapters), encoding="utf-8")
    with av.open(str(chapters_file), format="ffmetadata") as metadata:
        parsed = metadata.chapters()
    expected = segments()
    assert [chapter["metadata"]["title"] for chapter in parsed] == [expected_text(s) for s in expected]
    assert [float(c["start"] * c["time_base"]) for c in parsed] == pytest.approx([s.start for s in expected], abs=5e-4)
    assert [float(c["end"] * c["time_base"]) for c in parsed] == pytest.approx([s.end for s in expected], abs=5e-4)
    # The README's recipe, run by the real ffmpeg on a phone-like clip: its chapters go in and
    # the clip's own metadata (creation time, GPS location, make and model) stays.
    ffmpeg = need_program("ffmpeg")
    plain, source, muxed = write_video(tmp_path / "plain.mp4"), tmp_path / "match.mp4", tmp_path / "out.mp4"
    tags = [arg for key, value in PHONE_TAGS.items() for arg in ("-metadata", f"{key}={value}")]
    tagging = [ffmpeg, "-v", "error", "-i", str(plain), "-c", "copy", *tags, "-movflags", "use_metadata_tags"]
    subprocess.run([*tagging, str(source)], check=True)
    (recipe,) = readme_lines("ffmpeg -i ")
    args = [{"match.mp4": str(source), "chapters.txt": str(chapters_file)}.get(a, a) for a in shlex.split(recipe)]
    assert args[-1] == "match-chapters.mp4"
    subprocess.run([ffmpeg, "-v", "error", *args[1:-1], str(muxed)], check=True)
    entries = "format_tags:stream_tags:chapter"
    probe = [need_program("ffprobe"), "-v", "error", "-of", "json", "-show_entries", entries, str(muxed)]
    probed = json.loads(subprocess.run(probe, check=True, capture_output=True, text=True).stdout)
    assert PHONE_TAGS.items() <= probed["format"]["tags"].items()
    assert probed["streams"][0]["tags"]["creation_time"] == PHONE_TAGS["creation_time"]
    back = probed["chapters"]
    assert [c["tags"]["title"] for c in back] == [expected_text(s) for s in expected]
    assert [Fraction(c["start"]) * Fraction(c["time_base"]) for c in back] == [
        Fraction(round(s.start * 1000), 1000) for s in expected
    ]


def cue_line_counts(text: str, kind: str, tmp_path: Path) -> list[int]:
    """Lines per cue (labels per cue), as each format's own parser reads the text."""
    if kind == "srt":
        return [len(cue.content.split("\n")) for cue in srt.parse(text)]
    if kind == "vtt":
        return [len(caption.raw_text.split("\n")) for caption in webvtt.from_buffer(io.StringIO(text)).captions]
    path = tmp_path / "read-back.ffmetadata"
    path.write_text(text, encoding="utf-8")
    with av.open(str(path), format="ffmetadata") as metadata:
        return [len(chapter["metadata"]["title"].split(", ")) for chapter in metadata.chapters()]


@pytest.mark.parametrize(
    ("args", "kind", "per_cue"),
    [
        (["-o", "OUT/cues.srt"], "srt", 1),
        (["-o", "OUT/cues.vtt", "--top-k", "2"], "vtt", 2),
        (["-o", "OUT/chapters.ffmetadata"], "chapters", 1),
        (["-f", "chapters", "-o", "OUT/chapters.txt"], "chapters", 1),
        (["-f", "srt", "-k", "2"], "srt", 2),
    ],
    ids=["srt-by-extension", "vtt-top-2", "ffmetadata-extension", "chapters-as-txt", "srt-on-stdout"],
)
def test_the_cli_writes_cue_formats(
    tiny_model_dir: Path, tmp_path: Path, args: list[str], kind: str, per_cue: int
) -> None:
    video = write_video(tmp_path / "clip.mp4", num_frames=48)
    args = [arg.replace("OUT", str(tmp_path)) for arg in args]
    base = ["timeline", str(video), "-m", str(tiny_model_dir), "-l", "cooking, dancing", "--window", "1"]
    result = invoke([*base, *args])
    assert result.exit_code == ExitCode.OK, result.stderr
    text = Path(args[args.index("-o") + 1]).read_text(encoding="utf-8") if "-o" in args else result.stdout
    counts = cue_line_counts(text, kind, tmp_path)
    assert counts and set(counts) == {per_cue}


def test_a_txt_output_without_a_format_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.mp4", num_frames=12)
    result = invoke(["timeline", str(video), "-m", str(tiny_model_dir), "-o", str(tmp_path / "chapters.txt")])
    assert result.exit_code == ExitCode.USAGE
    assert (
        "srt, vtt, chapters, otio, edl, fcpxml, not .txt" in result.stderr and not (tmp_path / "chapters.txt").exists()
    )


def test_raw_windows_become_cues_one_after_another() -> None:
    # --no-merge: windows of 4 s every 2 s overlap; players show one cue at a time.
    stream = io.StringIO()
    raw = timeline().segments(merge=False, top_k=1)
    write_srt(timeline(), raw, False, stream)
    cues = list(srt.parse(stream.getvalue()))
    assert len(cues) == len(raw)
    assert all(a.end <= b.start for a, b in itertools.pairwise(cues))
    assert [cue.start.total_seconds() for cue in cues] == pytest.approx([w.start for w in raw], abs=5e-4)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90.5", 90.5), (".5", 0.5), ("1:30", 90), ("01:30.5", 90.5), ("00:01:30.5", 90.5), ("2:00:00", 7200)],
)
def test_times_read_as_ffmpeg_reads_them(text: str, seconds: float) -> None:
    assert parse_time(text) == seconds


@pytest.mark.parametrize("text", ["", "-1", "1e3", "inf", "nan", "1:75", "90:00", "1:60:00", ":30", "1:30:", "1:2:3:4"])
def test_what_is_not_a_time_is_refused_saying_what_is(text: str) -> None:
    with pytest.raises(ValueError, match=r"is not a time: expected seconds, MM:SS or HH:MM:SS"):
        parse_time(text)


@pytest.mark.parametrize(
    ("name", "fmt", "warned"),
    [
        ("x.srt", "csv", True),
        ("x.vtt", "srt", True),
        ("x.ffmetadata", "vtt", True),
        ("x.csv", "chapters", True),
        ("x.ffmetadata", "chapters", False),  # chapters' own extension
        ("x.txt", "chapters", False),  # an extension that names no format
    ],
)
def test_a_format_other_than_the_extension_says_is_written_with_a_warning(
    tiny_model_dir: Path, tmp_path: Path, name: str, fmt: str, warned: bool
) -> None:
    video = write_video(tmp_path / "clip.mp4", num_frames=12)
    out = tmp_path / name
    result = invoke(["timeline", str(video), "-m", str(tiny_model_dir), "-l", "a, b", "-o", str(out), "-f", fmt])
    assert result.exit_code == ExitCode.OK, result.stderr
    warning = f"xclip: warning: writing {fmt} into {out}, as --format says"
    assert (warning in result.stderr.splitlines()) is warned and out.stat().st_size > 0
