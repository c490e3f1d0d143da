"""Hostile inputs: every file of the catalogue gets a result or a one-line reason, never a traceback."""

from __future__ import annotations

import csv
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from catalogue import CASES, Case, build_all
from helpers import LABELS_TEXT, decode_all, invoke
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from xclip_cli.errors import ExitCode, ModelLoadError, VideoError
from xclip_cli.media.decode import sample_video
from xclip_cli.media.probe import unreadable_reason
from xclip_cli.media.sampling import SAMPLINGS

IDS = [case.name for case in CASES]
COLOUR_CASES = {"ten-bit.mp4", "four-four-four.mp4", "full-range.mp4"}  # flat (200, 40, 90) pictures


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_all(tmp_path_factory.mktemp("catalogue"))


def test_the_catalogue_is_big_enough() -> None:
    assert len(CASES) >= 25
    assert len(set(IDS)) == len(IDS)


@pytest.mark.parametrize("sampling", SAMPLINGS)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_library_outcome(catalogue: dict[str, Path], case: Case, sampling: str) -> None:
    # Keyframe sampling changes which frames, never whether a file classifies or what is said about it.
    path = catalogue[case.name]
    if not case.ok:
        with pytest.raises(VideoError) as info:
            sample_video(path, 8, sampling=sampling)
        assert case.reason in info.value.reason
        assert info.value.path == str(path)
        assert "\n" not in str(info.value)
        return
    sampled = sample_video(path, 8, sampling=sampling)
    assert len(sampled.frames) == 8
    assert all(frame.dtype == np.uint8 and frame.ndim == 3 for frame in sampled.frames)
    if case.warning:
        assert any(case.warning in warning for warning in sampled.warnings), sampled.warnings
    else:
        assert sampled.warnings == ()
    if case.frames_checked:
        # Bit-identical to a full decode from the start, whatever the timestamps and seeks did.
        reference = decode_all(path)
        for index, frame in zip(sampled.plan.frame_indices, sampled.frames, strict=True):
            assert np.array_equal(frame, reference[index]), index
    if case.name in COLOUR_CASES:
        assert np.abs(sampled.frames[0].reshape(-1, 3).mean(0) - (200, 40, 90)).max() < 4


def test_exact_cases_in_detail(catalogue: dict[str, Path]) -> None:
    starts_late = sample_video(catalogue["starts-at-10s.mp4"], 4)
    assert starts_late.plan.timestamps[0] == pytest.approx(3 / 12)  # relative to the first frame, not 10 s
    restarted = sample_video(catalogue["restarting-timestamps.ts"], 8)
    assert restarted.info.num_frames == 48  # both recordings, not 24 frames twice
    assert restarted.plan.duration == pytest.approx(4.0)
    raw = sample_video(catalogue["raw-stream.h264"], 8)
    assert raw.info.num_frames == 24 and raw.plan.duration == pytest.approx(24 / 25)  # no timestamps: 25 fps
    rotated = sample_video(catalogue["phone-rotated.mp4"], 2)
    assert (rotated.info.width, rotated.info.height) == (48, 64)
    assert sample_video(catalogue["uhd-4k.mp4"], 2).frames[0].shape == (2160, 3840, 3)


def test_damage_is_reported_not_hidden(catalogue: dict[str, Path]) -> None:
    truncated = sample_video(catalogue["cut-off-faststart.mp4"], 8)
    assert truncated.plan.duration < 2.5  # planned over what is there, not the declared 4 s
    assert any("of the 4.00 s it declares" in warning for warning in truncated.warnings)
    damaged = sample_video(catalogue["damaged-middle.mp4"], 8)
    reference = decode_all(catalogue["standard.mp4"])  # not the same file: frames are told by content
    assert len(reference) == 24
    intact = [i for i, frame in zip(damaged.plan.frame_indices, damaged.frames, strict=True) if frame.any()]
    assert len(intact) == 8  # every slot holds a picture: the damaged ones hold a neighbour


def test_timeout_turns_a_file_into_an_error(catalogue: dict[str, Path]) -> None:
    with pytest.raises(VideoError, match=r"gave up after 0 s \(--timeout\)"):
        sample_video(catalogue["standard.mp4"], 8, timeout=0)
    assert len(sample_video(catalogue["standard.mp4"], 8, timeout=60).frames) == 8


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_cli_exit_code_and_one_line(tiny_model_dir: Path, catalogue: dict[str, Path], case: Case) -> None:
    path = str(catalogue[case.name])
    # A folder named as an argument is refused up front (see test_cli); from a list it is one failed video.
    named, stdin = (["-"], path + "\n") if os.path.isdir(path) else ([path], None)
    result = invoke(
        ["classify", *named, "--model", str(tiny_model_dir), "--labels", LABELS_TEXT, "--format", "jsonl"], input=stdin
    )
    lines = result.stderr.splitlines()
    if case.ok:
        assert result.exit_code == ExitCode.OK, result.stderr
        assert json.loads(result.stdout)["status"] == "ok"
        if case.warning:  # warnings only, each naming the file; the exit code stays 0
            assert lines and all(line.startswith(f"xclip: warning: {path}: ") for line in lines)
            assert any(case.warning in line for line in lines)
        else:
            assert lines == []
    else:
        assert result.exit_code == ExitCode.ALL_FAILED
        assert len(lines) == 1 and lines[0].startswith(f"xclip: error: {path}: ") and case.reason in lines[0]
        record = json.loads(result.stdout)
        assert record["status"] == "error" and case.reason in record["error"]
    assert "Traceback" not in result.stderr


@pytest.mark.heavy
def test_scan_of_the_catalogue_gives_every_file_its_row(tiny_model_dir: Path, catalogue: dict[str, Path]) -> None:
    listing = "\n".join(str(path) for path in catalogue.values()) + "\n"
    out = Path(next(iter(catalogue.values()))).parent.parent / "catalogue-results.csv"
    command = [sys.executable, "-m", "xclip_cli", "scan", "--from-file", "-", "--model", str(tiny_model_dir)]
    command += ["--labels", LABELS_TEXT, "-o", str(out), "--overwrite"]
    done = subprocess.run(command, input=listing, capture_output=True, text=True, timeout=300)
    assert done.returncode == ExitCode.PARTIAL, done.stderr
    with open(out, newline="", encoding="utf-8") as handle:
        rows = {row["path"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {str(path) for path in catalogue.values()}
    for case in CASES:
        row = rows[str(catalogue[case.name])]
        assert row["status"] == ("ok" if case.ok else "error"), case.name
        assert case.reason in row["error"] if not case.ok else row["error"] == ""
        assert case.warning in row["warnings"] if case.warning else row["warnings"] == "", case.name
    # stderr: one line per problem, naming the file; no traceback and no ffmpeg chatter.
    assert "Traceback" not in done.stderr and "@ 0x" not in done.stderr
    failures = sum(not case.ok for case in CASES)
    assert done.stderr.count("xclip: error: ") == failures
    assert f"{len(CASES) - failures} ok, {failures} failed" in done.stderr


@pytest.mark.heavy
def test_verbose_lets_ffmpeg_speak(tiny_model_dir: Path, catalogue: dict[str, Path]) -> None:
    command = [sys.executable, "-m", "xclip_cli", "classify", str(catalogue["damaged-middle.mp4"])]
    command += ["--model", str(tiny_model_dir), "--labels", LABELS_TEXT, "--format", "jsonl"]
    quiet = subprocess.run(command, capture_output=True, text=True, timeout=120)
    verbose = subprocess.run([*command, "--verbose"], capture_output=True, text=True, timeout=120)
    assert quiet.returncode == verbose.returncode == ExitCode.OK
    assert [line for line in quiet.stderr.splitlines() if not line.startswith("xclip: warning: ")] == []
    assert len(verbose.stderr.splitlines()) > len(quiet.stderr.splitlines())


@pytest.mark.parametrize("name", ["-starts-with-dash.mp4", "new\nline.mp4", "ünï cødé 動画.mp4", "=cmd()|' x.mp4"])
def test_awkward_paths_are_written_back_exactly(
    tiny_model_dir: Path, clip_dir: Path, tmp_path: Path, name: str
) -> None:
    path = tmp_path / name
    path.write_bytes((clip_dir / "a.mp4").read_bytes())
    result = invoke(
        ["classify", "--model", str(tiny_model_dir), "--labels", LABELS_TEXT, "--format", "jsonl", "--", str(path)]
    )
    assert result.exit_code == ExitCode.OK, result.stderr
    assert json.loads(result.stdout)["path"] == str(path)
    out = tmp_path / "out.csv"
    for _ in range(2):  # the rerun finds the path in the CSV and skips it
        scanned = invoke(
            ["scan", str(tmp_path), "--model", str(tiny_model_dir), "--labels", LABELS_TEXT, "-o", str(out)]
        )
        assert scanned.exit_code == ExitCode.OK, scanned.stderr
    with open(out, newline="", encoding="utf-8") as handle:
        paths = [row["path"] for row in csv.DictReader(handle)]
    assert paths == [str(path)]


@pytest.mark.heavy
def test_file_names_that_are_not_utf8_go_through_as_bytes(tiny_model_dir: Path, clip_dir: Path, tmp_path: Path) -> None:
    """`ls | xclip classify -` and scan -o: the name's bytes come back, and the rerun resumes."""
    folder = tmp_path / "footage"
    folder.mkdir()
    name = b"caf\xe9 latin-1.mp4"  # how an old camera or a Windows share may name a file
    (folder / os.fsdecode(name)).write_bytes((clip_dir / "a.mp4").read_bytes())
    model = ["--model", str(tiny_model_dir), "--labels", LABELS_TEXT]
    xclip = [sys.executable, "-m", "xclip_cli"]
    listed = subprocess.run(
        [*xclip, "classify", "-", *model, "-f", "jsonl"],
        input=name + b"\n",
        cwd=folder,
        capture_output=True,
        timeout=120,
    )
    assert listed.returncode == ExitCode.OK, listed.stderr
    record = json.loads(listed.stdout.decode("utf-8", "surrogateescape"))
    assert os.fsencode(record["path"]) == name and record["status"] == "ok"
    out = tmp_path / "out.csv"
    for expected in ("", "nothing to do"):
        scanned = subprocess.run(
            [*xclip, "scan", str(folder), *model, "-o", str(out)], capture_output=True, timeout=120
        )
        assert scanned.returncode == ExitCode.OK and expected in scanned.stderr.decode(), scanned.stderr
    lines = out.read_bytes().splitlines()
    assert len(lines) == 2 and lines[1].startswith(os.fsencode(folder) + b"/" + name + b",ok,")


def test_a_pickled_checkpoint_cannot_run_code(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A pytorch_model.bin whose pickle runs a command is refused, and the command never runs."""
    folder = tmp_path / "evil-checkpoint"
    folder.mkdir()
    for item in tiny_model_dir.iterdir():
        if item.suffix != ".safetensors":
            (folder / item.name).write_bytes(item.read_bytes())
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    import pickle

    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"weights": Payload()}))
    from xclip_cli.model.torch.runner import XClipRunner

    with pytest.raises(ModelLoadError):
        XClipRunner.from_pretrained(str(folder), device="cpu")
    assert not marker.exists()


def test_no_remote_code_is_ever_trusted() -> None:
    package = Path(__file__).parent.parent / "xclip_cli"
    for source in package.glob("*.py"):
        assert "trust_remote_code=True" not in source.read_text(encoding="utf-8"), source


@settings(max_examples=200, deadline=None)
@given(head=st.binary(max_size=64), text=st.text(max_size=64))
def test_any_bytes_get_a_plain_reason(tmp_path_factory: pytest.TempPathFactory, head: bytes, text: str) -> None:
    path = tmp_path_factory.mktemp("sniff") / "x.mp4"
    for content in (head, text.encode("utf-8")):
        path.write_bytes(content)
        reason = unreadable_reason(str(path))
        assert reason and "\n" not in reason


@settings(max_examples=200, deadline=None)
@given(
    segments=st.lists(
        st.tuples(st.integers(min_value=-1000, max_value=1000), st.integers(min_value=1, max_value=30)),
        min_size=1,
        max_size=5,
    ),
    step=st.integers(min_value=1, max_value=10),
)
def test_restarting_timestamps_unwrap_to_one_timeline(segments: list[tuple[int, int]], step: int) -> None:
    """Recordings joined end to end (each with rising timestamps) become one rising timeline."""
    from xclip_cli.media.decode import _unwrap_restarts

    ends = [first + (count - 1) * step for first, count in segments]
    assume(all(later[0] != end for end, later in zip(ends, segments[1:], strict=False)))  # no repeated stamp
    packets = []
    for first, count in segments:
        packets += [(first + i * step, first + i * step, i == 0) for i in range(count)]
    shifted, keyframes, restarted = _unwrap_restarts(packets)
    assert len(shifted) == len(packets)
    assert all(b > a for a, b in itertools.pairwise(shifted))
    assert len(keyframes) == len(segments)
    expected_restart = any(
        later[0] < earlier[0] + (earlier[1] - 1) * step for earlier, later in itertools.pairwise(segments)
    )
    assert restarted == expected_restart
