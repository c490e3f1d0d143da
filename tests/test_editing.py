"""Timelines for editing tools (otio, edl, fcpxml): written here, read back by OpenTimelineIO's own
adapters (the fcpx_xml adapter reads our FCPXML; ElementTree gives its exact times), frames
counted at each file's rate, EDL events cut from their files with ffmpeg."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from fractions import Fraction
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import av
import numpy as np
import opentimelineio as otio
import pytest
from helpers import encode_video, frame_number, frame_pixels, invoke, need_program, write_video

from xclip_cli.errors import ExitCode, MissingDependency
from xclip_cli.media.rates import FrameRate, nominal_rate, probe_frame_rate
from xclip_cli.output.editing import NAME_LIMIT, write_selects, write_timeline_edit
from xclip_cli.output.edl import EDL_TAG
from xclip_cli.output.writers import EXTENSION_FORMATS, holds_xclip_output
from xclip_cli.results import Moment, Timeline, Window

# Labels and a file name each format must survive: markup, quotes, commas, a line break,
# control characters, non-ASCII, a very long label; '#' and '%20' would break a naive file URL.
HOSTILE_LABELS = ("<b>tom & jerry</b>", "a, b; 'c' \"d\"", "two\nlines\r\n", "café 動画\x01", "long " * 60)
HOSTILE_NAME = "café, 'quoted' \"x\" #1 %20 動画.mp4"


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small clips whose frames carry their numbers: 25 fps, 30 fps under a hostile name,
    29.97 fps, and a variable-rate one."""
    folder = tmp_path_factory.mktemp("editing")
    gaps = [1, 1, 1, 4, 4, 1, 1, 8, 2, 2, 2, 2]  # in 1/20 s
    return {
        "25": write_video(folder / "kitchen.mp4", num_frames=60, rate=25),
        "30": write_video(folder / HOSTILE_NAME, num_frames=45, rate=30),
        "ntsc": encode_video(
            folder / "ntsc.mkv", [frame_pixels(i, 64, 48) for i in range(30)], rate=Fraction(30000, 1001)
        ),  # type: ignore[arg-type]
        "vfr": encode_video(
            folder / "vfr.mkv",
            [frame_pixels(i, 64, 48) for i in range(len(gaps))],
            rate=20,
            pts=[sum(gaps[:i]) for i in range(len(gaps))],
        ),
    }


def timeline_of(path: Path, labels: tuple[str, ...] = ("cooking", "dancing", "surfing")) -> Timeline:
    """Three segments of a 2.4 s video whose boundaries fall inside frames at 25 fps:
    [0, 0.75), [0.75, 1.3), [1.3, 2.4): frames [0, 19), [18, 33), [32, 60)."""
    scores = [np.array(p) for p in ((0.7, 0.2, 0.1), (0.1, 0.8, 0.1), (0.1, 0.1, 0.8))]
    extents = [(0.0, 1.0, 0.0, 0.75), (0.5, 1.5, 0.75, 1.3), (1.4, 2.4, 1.3, 2.4)]
    windows = tuple(Window(*extent, probabilities) for extent, probabilities in zip(extents, scores, strict=True))
    return Timeline(str(path), "tiny", "household", 2.4, 1.0, 0.5, windows, labels)


def written(function: object, *args: object, **kwargs: object) -> tuple[str, tuple[str, ...]]:
    stream = io.StringIO()
    warnings = function(*args, stream=stream, **kwargs)  # type: ignore[operator]
    return stream.getvalue(), warnings


def read(text: str, fmt: str, rate: float = 25) -> otio.schema.Timeline:
    if fmt == "edl":
        return otio.adapters.read_from_string(text, "cmx_3600", rate=rate)
    if fmt == "fcpxml":
        (timeline,) = otio.adapters.read_from_string(text, "fcpx_xml")
        return timeline
    return otio.adapters.read_from_string(text, "otio_json")


KEPT: list[otio.schema.Timeline] = []  # a clip read back lives only as long as its timeline


def clips(text: str, fmt: str, rate: float = 25) -> list[otio.schema.Clip]:
    """The clips of a file read back, in order (gaps left out)."""
    KEPT.append(read(text, fmt, rate))
    return list(KEPT[-1].find_clips())


def frames(time_range: otio.opentime.TimeRange) -> tuple[int, int]:
    """(first frame, frames) at the range's own rate."""
    return round(time_range.start_time.value), round(time_range.duration.value)


def path_of(url: str) -> str:
    """The path a file URL names, decoded once (OpenTimelineIO's filepath_from_url decodes
    twice: it reads a file named '%20' as ' ')."""
    return url if "://" not in url else url2pathname(urlparse(url).path)


# --------------------------------------------------------------------------- rates


@pytest.mark.parametrize(("name", "rate", "constant", "count"), [
    ("25", Fraction(25), True, 60), ("30", Fraction(30), True, 45),
    ("ntsc", Fraction(30000, 1001), True, 30), ("vfr", Fraction(20), False, 12),
])  # fmt: skip
def test_probe_finds_each_files_rate(
    videos: dict[str, Path], name: str, rate: Fraction, constant: bool, count: int
) -> None:
    probed = probe_frame_rate(videos[name])
    assert (probed.rate, probed.constant, probed.frames) == (rate, constant, count)
    assert (probed.width, probed.height, probed.audio) == (64, 48, False)


def test_stated_rates_snap_to_the_standard_rate_they_stand_for() -> None:
    assert nominal_rate(Fraction(2997, 100)) == Fraction(30000, 1001)  # Matroska in milliseconds
    assert nominal_rate(Fraction(23976, 1000)) == Fraction(24000, 1001)
    assert nominal_rate(Fraction(15)) == 15 and nominal_rate(Fraction(25)) == 25


# --------------------------------------------------------------------------- timelines


@pytest.mark.parametrize("fmt", ["otio", "edl", "fcpxml"])
def test_a_timeline_reads_back_as_one_clip_with_a_marker_per_segment(videos: dict[str, Path], fmt: str) -> None:
    video = videos["25"]
    text, warnings = written(write_timeline_edit, timeline_of(video), timeline_of(video).segments(), fmt)
    assert warnings == ()
    (clip,) = clips(text, fmt)
    assert frames(clip.source_range) == (0, 60) and clip.source_range.duration.rate == 25
    assert path_of(clip.media_reference.target_url) == os.path.abspath(video)
    names = ["cooking 70%", "dancing 80%", "surfing 80%"]
    spans = [(0, 19), (18, 15), (32, 28)]  # every frame on screen: starts rounded down, ends up
    got = [(marker.name, *frames(marker.marked_range)) for marker in clip.markers]
    if fmt == "edl":  # LOC lines: the start only, in capitals
        assert clip.name == "kitchen.mp4" and clip.metadata["cmx_3600"]["reel"] == "kitchen"
        assert got == [(name.upper(), start, 0) for name, (start, _) in zip(names, spans, strict=True)]
        assert [marker.color for marker in clip.markers] == ["RED", "GREEN", "BLUE"]  # one per label
        return
    assert got == [(name, *span) for name, span in zip(names, spans, strict=True)]
    if fmt == "otio":
        assert clip.markers[0].comment == "cooking 70%\ndancing 20%\nsurfing 10%"
        assert clip.markers[1].metadata["xclip"]["label"] == "dancing"
    else:
        notes = [marker.get("note") for marker in ET.fromstring(text).iter("marker")]
        assert notes[0] == "cooking 70%\ndancing 20%\nsurfing 10%"


def test_a_29_97_fps_file_is_counted_in_its_own_frames(videos: dict[str, Path]) -> None:
    video = videos["ntsc"]  # 30 frames at 30000/1001 fps: 1.001 s
    timeline = timeline_of(video)  # its segments end at 2.4 s: past the end, clamped
    otio_text, _ = written(write_timeline_edit, timeline, timeline.segments(), "otio")
    (clip,) = clips(otio_text, "otio")
    assert clip.source_range.duration.rate == pytest.approx(30000 / 1001)
    assert [frames(marker.marked_range) for marker in clip.markers] == [(0, 23), (22, 8), (29, 1)]
    edl, _ = written(write_timeline_edit, timeline, timeline.segments(), "edl")
    assert "FCM: NON-DROP FRAME" in edl and "00:00:00:00 00:00:01:00" in edl  # 30 frames, counted as 30 (NDF)
    root = ET.fromstring(written(write_timeline_edit, timeline, timeline.segments(), "fcpxml")[0])
    assert {f.get("frameDuration") for f in root.iter("format")} == {"1001/30000s"}
    assert [m.get("start") for m in root.iter("marker")] == ["0s", "11011/15000s", "29029/30000s"]


def test_a_variable_rate_file_is_counted_at_the_timelines_rate_with_a_warning(videos: dict[str, Path]) -> None:
    video = videos["vfr"]  # 12 frames over 1.45 s
    timeline = timeline_of(video)
    text, warnings = written(write_timeline_edit, timeline, timeline.segments(), "otio")
    (warning,) = warnings
    assert warning.startswith(f"{video}: variable frame rate: counted at 25 fps") and "\n" not in warning
    (clip,) = clips(text, "otio")
    assert clip.source_range.duration.rate == 25 and frames(clip.source_range) == (0, 37)  # ceil(1.45 s x 25)
    # Among others, it gets the first constant-rate file's rate.
    moments = [
        Moment("q", str(video), 0.0, 0.5, 2.0, (0.0, 0.5)),
        Moment("q", str(videos["30"]), 0.0, 0.5, 1.0, (0.0, 0.5)),
    ]
    text, warnings = written(write_selects, moments, "otio")
    assert [clip.source_range.duration.rate for clip in clips(text, "otio")] == [30, 30]
    assert len(warnings) == 1 and "counted at 30 fps" in warnings[0]


# --------------------------------------------------------------------------- selects


def selects(videos: dict[str, Path]) -> list[Moment]:
    """Moments in score order, from two files at 25 and 30 fps, one of them twice."""
    thirty, kitchen = str(videos["30"]), str(videos["25"])
    return [
        Moment("a goal celebration", thirty, 0.5, 1.0, 21.34, (0.5, 1.0), 2),
        Moment("a goal celebration", kitchen, 1.0, 1.9, 20.0, (1.0, 1.9)),
        Moment("a goal celebration", thirty, 0.0, 0.2, 18.5, (0.0, 0.2)),
    ]


def test_selects_are_one_clip_per_moment_in_order_at_each_files_rate(videos: dict[str, Path]) -> None:
    moments = selects(videos)
    text, warnings = written(write_selects, moments, "otio")
    assert warnings == ()
    found = clips(text, "otio")
    assert [clip.name for clip in found] == [
        "a goal celebration 21.3",
        "a goal celebration 20.0",
        "a goal celebration 18.5",
    ]
    assert [path_of(clip.media_reference.target_url) for clip in found] == [os.path.abspath(m.path) for m in moments]
    assert [(frames(clip.source_range), clip.source_range.start_time.rate) for clip in found] == [
        ((15, 15), 30),
        ((25, 23), 25),
        ((0, 6), 30),  # 1.9 s x 25 = 47.5: frame 47 is on screen
    ]
    assert found[0].metadata["xclip"]["score"] == 21.34 and found[0].metadata["xclip"]["windows"] == 2


def test_selects_in_an_edl_share_its_rate_and_keep_their_names_in_markers(videos: dict[str, Path]) -> None:
    text, warnings = written(write_selects, selects(videos), "edl")
    assert warnings == (
        f"{videos['25']}: 25 fps, counted at the EDL's 30 fps (an EDL has one rate; otio and fcpxml keep each file's)",
    )
    found = clips(text, "edl", rate=30)
    assert [clip.name for clip in found] == [HOSTILE_NAME, "kitchen.mp4", HOSTILE_NAME]
    assert [clip.metadata["cmx_3600"]["reel"] for clip in found] == ["cafequot", "kitchen", "cafequot"]
    # kitchen's frames 25 to 48 at 25 fps are 1.0 to 1.92 s: frames 30 to 58 at 30 fps.
    assert [frames(clip.source_range) for clip in found] == [(15, 15), (30, 28), (0, 6)]
    assert [[m.name for m in clip.markers] for clip in found] == [
        ["A GOAL CELEBRATION 21.3"],
        ["A GOAL CELEBRATION 20.0"],
        ["A GOAL CELEBRATION 18.5"],
    ]
    assert text.count(EDL_TAG) == 3


def test_selects_in_fcpxml_sit_on_the_projects_frames(videos: dict[str, Path]) -> None:
    text, _ = written(write_selects, selects(videos), "fcpxml")
    found = clips(text, "fcpxml")
    assert [clip.name for clip in found] == [
        "a goal celebration 21.3",
        "a goal celebration 20.0",
        "a goal celebration 18.5",
    ]
    assert [path_of(clip.media_reference.target_url) for clip in found] == [
        os.path.abspath(m.path) for m in selects(videos)
    ]
    root = ET.fromstring(text)
    assert {f.get("id"): f.get("frameDuration") for f in root.iter("format")} == {"r1": "1/30s", "r3": "1/25s"}
    assert root.find(".//sequence").get("format") == "r1"  # the first file's rate
    timing = [(c.get("offset"), c.get("start"), c.get("duration")) for c in root.iter("asset-clip")]
    assert timing == [("0s", "1/2s", "1/2s"), ("1/2s", "1s", "14/15s"), ("43/30s", "0s", "1/5s")]


def test_no_moments_is_an_empty_timeline() -> None:
    for fmt in ("otio", "fcpxml"):
        text, warnings = written(write_selects, [], fmt)
        assert warnings == () and clips(text, fmt) == []
    text, warnings = written(write_selects, [], "edl")
    assert text == "TITLE: no moments (selects)\nFCM: NON-DROP FRAME\n" and len(read(text, "edl").tracks) == 0


# --------------------------------------------------------------------------- ffmpeg cuts


def test_every_edl_event_cut_with_ffmpeg_has_the_stated_frames(videos: dict[str, Path], tmp_path: Path) -> None:
    ffmpeg = need_program("ffmpeg")
    moments = [selects(videos)[1], Moment("q", str(videos["25"]), 0.1, 0.5, 3.0, (0.1, 0.5)), selects(videos)[0]]
    text, _ = written(write_selects, moments, "edl")  # at 25 fps: the first file's
    for number, clip in enumerate(clips(text, "edl", rate=25)):
        start, count = frames(clip.source_range)
        source = clip.media_reference.target_url  # the path the EDL names
        cut = tmp_path / f"{number}.mkv"
        subprocess.run(
            [
                ffmpeg,
                "-v",
                "error",
                "-ss",
                f"{start / 25}",
                "-i",
                source,
                "-t",
                f"{count / 25}",
                "-an",
                "-c:v",
                "ffv1",
                str(cut),
            ],
            check=True,
            timeout=60,
        )
        with av.open(str(cut)) as container:
            pictures = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
        rate = probe_frame_rate(source).rate
        # The frames of the source that show from start to start + count at 25 fps.
        first, last = -(-start * rate // 25), -(-(start + count) * rate // 25)
        assert (len(pictures), frame_number(pictures[0])) == (last - first, first), (source, start, count)
        if rate == 25:
            assert len(pictures) == count


# --------------------------------------------------------------------------- hostile text


def test_hostile_labels_and_paths_survive_every_format(videos: dict[str, Path], tmp_path: Path) -> None:
    undecodable = os.fsdecode(b"bad \xff line\nbreak.mp4")  # not UTF-8, and a line break
    video = tmp_path / undecodable
    shutil.copy(videos["30"], video)
    timeline = timeline_of(video, HOSTILE_LABELS[:3])
    segments = timeline.segments()
    names = ["<b>tom & jerry</b> 70%", "a, b; 'c' \"d\" 80%", "two lines 80%"]
    moments = [Moment(HOSTILE_LABELS[4] + "\n" + HOSTILE_LABELS[3], str(video), 0.0, 1.0, 5.0, (0.0, 1.0))]
    for fmt in ("otio", "fcpxml"):
        (clip,) = clips(written(write_timeline_edit, timeline, segments, fmt)[0], fmt, rate=30)
        assert [marker.name for marker in clip.markers] == names
        assert path_of(clip.media_reference.target_url) == os.path.abspath(video).encode(
            errors="surrogateescape"
        ).decode(errors="replace")
        assert urlparse(clip.media_reference.target_url).path.endswith(
            "bad%20%FF%20line%0Abreak.mp4"
        )  # the bytes, exactly
        (selected,) = clips(written(write_selects, moments, fmt)[0], fmt, rate=30)
        assert selected.name.startswith("long long") and selected.name.endswith("… 5.0")
        assert NAME_LIMIT - 5 <= len(selected.name) <= NAME_LIMIT
    otio_text = written(write_timeline_edit, timeline, segments, "otio")[0]
    assert clips(otio_text, "otio")[0].markers[2].metadata["xclip"]["label"] == "two\nlines\r\n"  # kept whole
    edl, _ = written(write_timeline_edit, timeline, segments, "edl")
    assert "\r" not in edl and all(line.isascii() or line.startswith("*") for line in edl.splitlines())
    (clip,) = clips(edl, "edl", rate=30)
    assert [marker.name for marker in clip.markers] == [name.upper() for name in names]
    assert clip.media_reference.target_url == os.path.abspath(tmp_path) + "/bad \ufffd line?break.mp4"
    assert clip.metadata["cmx_3600"]["reel"] == "badlineb"


def test_paths_with_commas_quotes_and_non_ascii_are_exact_in_every_format(videos: dict[str, Path]) -> None:
    video = str(videos["30"])
    for fmt in ("otio", "edl", "fcpxml"):
        timeline = timeline_of(Path(video), ("cooking", "a 'quoted' label", "café"))
        (clip,) = clips(written(write_timeline_edit, timeline, timeline.segments(), fmt)[0], fmt, rate=30)
        assert path_of(clip.media_reference.target_url) == os.path.abspath(video), fmt


# --------------------------------------------------------------------------- installs, CLI, -o


def test_without_opentimelineio_otio_and_edl_say_how_to_install(
    videos: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    timeline = timeline_of(videos["25"])
    monkeypatch.setitem(sys.modules, "otio_cmx3600_adapter", None)  # what an install without the extra sees
    with pytest.raises(MissingDependency, match=r"^-f edl needs OpenTimelineIO: pip install 'xclip-cli\[edit\]'"):
        write_timeline_edit(timeline, timeline.segments(), "edl", io.StringIO())
    monkeypatch.setitem(sys.modules, "opentimelineio", None)
    with pytest.raises(MissingDependency, match=r"pip install 'xclip-cli\[edit\]'"):
        write_timeline_edit(timeline, timeline.segments(), "otio", io.StringIO())
    assert written(write_timeline_edit, timeline, timeline.segments(), "fcpxml")[0].startswith("<?xml")  # needs none
    # Before any work: a model that does not exist is never reached.
    result = invoke(["timeline", str(videos["25"]), "--model", str(videos["25"]) + ".missing", "-f", "otio"])
    assert result.exit_code == ExitCode.MISSING
    assert result.stderr.splitlines() == [
        "xclip: error: -f otio needs OpenTimelineIO: pip install 'xclip-cli[edit]' "
        "(in a source checkout: pip install -e '.[edit]')"
    ]


def test_xclip_timeline_writes_an_edl_and_may_replace_it(
    videos: dict[str, Path], tiny_model_dir: Path, tmp_path: Path
) -> None:
    base = [
        "timeline",
        str(videos["25"]),
        "--model",
        str(tiny_model_dir),
        "--labels",
        "cooking, dancing",
        "--window",
        "1",
    ]
    document = invoke([*base, "-f", "json"])
    assert document.exit_code == 0, document.stderr
    segments = json.loads(document.stdout)["segments"]
    out = tmp_path / "when.edl"
    for _ in range(2):  # the second run replaces its own EDL without --overwrite
        result = invoke([*base, "-o", str(out)])
        assert result.exit_code == 0, result.stderr
    (clip,) = clips(out.read_text(encoding="utf-8"), "edl")
    assert frames(clip.source_range) == (0, 60)
    assert [(m.name, frames(m.marked_range)[0]) for m in clip.markers] == [
        (f"{s['label']} {s['probability']:.0%}".upper(), int(s["start"] * 25 + 1e-6)) for s in segments
    ]
    assert {EXTENSION_FORMATS[fmt] for fmt in ("otio", "edl", "fcpxml")} == {"otio", "edl", "fcpxml"}  # -o x.otio


def test_only_our_editing_files_may_be_replaced_without_overwrite(videos: dict[str, Path], tmp_path: Path) -> None:
    timeline = timeline_of(videos["25"])
    for fmt in ("otio", "edl", "fcpxml"):
        ours = tmp_path / f"ours.{fmt}"
        ours.write_text(written(write_timeline_edit, timeline, timeline.segments(), fmt)[0], encoding="utf-8")
        assert holds_xclip_output(ours), fmt
    edited = read((tmp_path / "ours.edl").read_text(encoding="utf-8"), "edl")  # an editor's export of our timeline
    others = {
        "theirs.edl": otio.adapters.write_to_string(edited, "cmx_3600"),
        "theirs.otio": otio.adapters.write_to_string(
            read((tmp_path / "ours.fcpxml").read_text(encoding="utf-8"), "fcpxml"), "otio_json"
        ),
        "theirs.fcpxml": (tmp_path / "ours.fcpxml").read_text(encoding="utf-8").replace("<!-- xclip-cli -->\n", ""),
    }
    for name, text in others.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        assert not holds_xclip_output(tmp_path / name), name
    big = "".join(written(write_selects, [selects(videos)[1]] * 700, "edl")[0])  # past the 64 KB looked at
    (tmp_path / "big.edl").write_text(big, encoding="utf-8")
    assert len(big) > 65536 and holds_xclip_output(tmp_path / "big.edl")


def test_frame_rate_given_is_not_probed(tmp_path: Path) -> None:
    # A file that is not there: the rate given stands in for the probe.
    moments = [Moment("q", str(tmp_path / "gone.mp4"), 1.0, 2.0, 1.0, (1.0, 2.0))]
    rates = {moments[0].path: FrameRate(Fraction(50), True, 500, 10.0)}
    (clip,) = clips(written(write_selects, moments, "otio", rates=rates)[0], "otio")
    assert frames(clip.source_range) == (50, 50) and clip.source_range.duration.rate == 50
