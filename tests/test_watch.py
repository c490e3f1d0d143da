"""``xclip scan --watch``: files that arrive are classified once, only once complete.

The settling rule is tested with an injected clock on real files; the watched scan as users
run it, in a subprocess with the real watcher: files copied in slowly, in a subfolder, in a
burst, deleted before they settle; SIGTERM, a restart that resumes, Ctrl-C.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import LABELS_TEXT, interruptible, invoke, write_video

from xclip_cli.errors import ExitCode, UsageError
from xclip_cli.jobs.scan import AGAIN
from xclip_cli.media.discovery import collect_paths, watched
from xclip_cli.media.watch import Arrived, Settling, WatchOptions, recently_changed


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_file_is_due_once_unchanged_for_the_settle_time(tmp_path: Path) -> None:
    clock = Clock()
    settling = Settling(2.0, clock)
    path = tmp_path / "a.mp4"
    path.write_bytes(b"first part")
    settling.saw(str(path))
    clock.now += 1.9
    assert settling.due() == []
    with open(path, "ab") as handle:  # still being written: it settles from now
        handle.write(b", second part")
    clock.now += 1.0
    assert settling.due() == []
    clock.now += 1.9
    assert settling.due() == []
    clock.now += 0.1
    assert settling.due() == [str(path)]
    clock.now += 10
    assert settling.due() == []  # handed on once
    settling.saw(str(path))  # an event without a change: settles again from now (a new arrival)
    clock.now += 2.0
    assert settling.due() == [str(path)]


def test_an_empty_file_waits_for_its_first_bytes(tmp_path: Path) -> None:
    clock = Clock()
    settling = Settling(1.0, clock)
    path = tmp_path / "a.mp4"
    path.write_bytes(b"")  # created, its data still to come (a slow upload)
    settling.saw(str(path))
    clock.now += 60
    assert settling.due() == []
    path.write_bytes(b"data")
    assert settling.due() == []
    clock.now += 1.0
    assert settling.due() == [str(path)]


def test_arrivals_look_inside_a_folder_moved_in_and_survive_an_undecodable_name(tmp_path: Path) -> None:
    """The real watcher: a folder moved into the watched one brings no event for its files; a
    file name that is not UTF-8 makes watchfiles raise. Both, then the files still arrive."""
    import threading

    from xclip_cli.media.watch import arrivals

    inbox, staging = tmp_path / "inbox", tmp_path / "staging" / "batch"
    inbox.mkdir()
    staging.mkdir(parents=True)
    (staging / "moved.mp4").write_bytes(b"a video")
    stop = threading.Event()
    name = watched([str(inbox)])
    found = arrivals([str(inbox)], name, WatchOptions(settle=0.3, tick=0.1), stop, lambda: collect_paths([str(inbox)]))

    def arrive() -> None:
        time.sleep(0.5)  # the watcher listens by now (it lists the folder once it does)
        (inbox / os.fsdecode(b"caf\xe9.txt")).write_bytes(b"x")
        time.sleep(0.3)
        os.rename(staging, inbox / "batch")
        (inbox / "plain.mp4").write_bytes(b"another video")

    threading.Thread(target=arrive, daemon=True).start()
    threading.Timer(30, stop.set).start()  # a bound, should the files never arrive
    seen: set[str] = set()
    for batch in found:
        seen |= set(batch.paths)
        if {str(inbox / "batch" / "moved.mp4"), str(inbox / "plain.mp4")} <= seen:
            stop.set()
    assert seen == {str(inbox / "batch" / "moved.mp4"), str(inbox / "plain.mp4")}


def test_reclassify_changed_needs_a_results_file() -> None:
    from xclip_cli.jobs.scan import ScanOptions

    with pytest.raises(UsageError, match="--reclassify-changed replaces rows of an -o results file"):
        ScanOptions(reclassify_changed=True)


def test_a_file_gone_before_it_settles_is_dropped_without_an_error(tmp_path: Path) -> None:
    clock = Clock()
    settling = Settling(1.0, clock)
    kept, gone, renamed = tmp_path / "kept.mp4", tmp_path / "gone.mp4", tmp_path / "part.mp4"
    for path in (kept, gone, renamed):
        path.write_bytes(b"x")
        settling.saw(str(path))
    gone.unlink()
    renamed.rename(tmp_path / "done.mp4")
    clock.now += 1.0
    assert settling.due() == [str(kept)]
    assert settling.pending == {}
    settling.saw(str(gone))  # an event for a file that is gone already
    assert settling.pending == {}


def test_files_changed_just_before_the_watch_settle_first(tmp_path: Path) -> None:
    old, new = tmp_path / "old.mp4", tmp_path / "new.mp4"
    old.write_bytes(b"x")
    new.write_bytes(b"x")
    os.utime(old, (1000.0, 1000.0))
    os.utime(new, (1009.0, 1009.0))
    assert recently_changed([str(old), str(new)], settle=5.0, now=1010.0) == [str(new)]


def test_watched_names_a_file_as_the_scan_finds_it(tmp_path: Path) -> None:
    root = tmp_path / "inbox"
    (root / "sub").mkdir(parents=True)
    for name in ("a.mp4", "b.MKV", "notes.txt", "sub/c.mp4", *(f"s{index}.mp4" for index in range(20))):
        (root / name).write_bytes(b"x")
    for kwargs in ({}, {"recursive": False}, {"extensions": "mkv"}, {"pattern": "sub/*"}, {"shard": "1/3"}):
        name = watched([str(root)], **kwargs)  # type: ignore[arg-type]
        named = {name(str(path)) for path in root.rglob("*")} - {None}
        assert named == set(collect_paths([str(root)], **kwargs)), kwargs  # type: ignore[arg-type]
    assert watched([str(root)])(str(tmp_path / "elsewhere.mp4")) is None


def test_watch_options_are_checked() -> None:
    with pytest.raises(UsageError, match="--settle"):
        WatchOptions(settle=0)


# --- the watched scan, as users run it ----------------------------------------------------------

# Seconds. The copies below pause 0.7 s between chunks: longer than the watcher's 0.5 s tick, and
# 2.3 s shorter than this, the slack for this test process being held off a loaded CPU mid-copy
# (a pause that outlasted the settle time would rightly let the half file be read).
SETTLE = 3.0


def rows_of(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def wait_for_rows(out: Path, count: int, process: subprocess.Popen[bytes], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while len(rows_of(out)) < count:
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        assert time.monotonic() < deadline, f"{len(rows_of(out))} rows of {count}"
        time.sleep(0.05)


def copy_slowly(source: Path, target: Path, out: Path, rows: int) -> None:
    """Copy in four chunks with pauses; no row for it may appear while it is being written."""
    data = source.read_bytes()
    step = len(data) // 4 + 1
    with open(target, "wb") as handle:
        for start in range(0, len(data), step):
            handle.write(data[start : start + step])
            handle.flush()
            time.sleep(0.7)
            assert len(rows_of(out)) == rows, "a file was read before it was complete"


@pytest.mark.heavy
def test_a_watched_folder_classifies_each_arrival_once_when_complete(tiny_model_dir: Path, tmp_path: Path) -> None:
    inbox, out = tmp_path / "inbox", tmp_path / "r.csv"
    inbox.mkdir()
    write_video(inbox / "there.mp4", num_frames=12, size=(32, 24))
    source = write_video(tmp_path / "source.mp4", num_frames=40, size=(64, 48))
    command = [sys.executable, "-m", "xclip_cli", "scan", str(inbox), "-o", str(out), "--watch"]
    command += ["--settle", str(SETTLE), "--model", str(tiny_model_dir), "--labels", LABELS_TEXT]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=interruptible)
    wait_for_rows(out, 1, process)
    (inbox / "sub").mkdir()
    copy_slowly(source, inbox / "sub" / "slow.mp4", out, rows=1)
    wait_for_rows(out, 2, process)
    (inbox / "gone.mp4").write_bytes(source.read_bytes()[:1000])
    time.sleep(0.3)
    (inbox / "gone.mp4").unlink()
    for index in range(50):
        shutil.copy(inbox / "there.mp4", inbox / f"burst{index:02d}.mp4")
    wait_for_rows(out, 52, process)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == ExitCode.OK  # a service manager's stop is a normal end
    said = process.stderr.read().decode() if process.stderr else ""
    assert "xclip: 52 ok, 0 failed" in said and f"xclip: wrote {out}" in said, said
    watched_rows = {row["path"]: row for row in rows_of(out)}
    assert len(rows_of(out)) == 52 and str(inbox / "gone.mp4") not in watched_rows
    plain = tmp_path / "plain.csv"
    subprocess.run(
        [*command[:5], "-o", str(plain), "--model", str(tiny_model_dir), "--labels", LABELS_TEXT, "-q"], check=True
    )
    assert {row["path"]: row for row in rows_of(plain)} == watched_rows  # the same rows as a plain scan

    # A restart resumes: what arrived while it was stopped; with --reclassify-changed a file
    # written over is classified again, its row replaced; then Ctrl-C ends it as any scan.
    shutil.copy(source, inbox / "meanwhile.mp4")
    os.utime(inbox / "meanwhile.mp4", (time.time() - 60, time.time() - 60))  # complete long ago
    command.append("--reclassify-changed")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=interruptible)
    wait_for_rows(out, 53, process)  # meanwhile.mp4, from the first pass
    shutil.copy(inbox / "there.mp4", inbox / "later.mp4")
    wait_for_rows(out, 54, process)  # through the watcher: it listens now, and hears the next write
    shutil.copy(source, inbox / "burst07.mp4")  # another video under a known name
    deadline = time.monotonic() + 120
    while rows_of(out)[-1]["path"] != str(inbox / "burst07.mp4"):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == ExitCode.INTERRUPTED
    rows = rows_of(out)
    paths = [row["path"] for row in rows]
    assert len(paths) == len(set(paths)) == 54 and paths[-3:-1] == [
        str(inbox / n) for n in ("meanwhile.mp4", "later.mp4")
    ]
    assert rows[-1]["warnings"] == AGAIN and rows[-1]["top_k"] != watched_rows[str(inbox / "burst07.mp4")]["top_k"]


def test_arrivals_are_classified_once_each_with_the_model_loaded_once(tiny_model_dir: Path, tmp_path: Path) -> None:
    """``scan_videos`` with batches that arrive: videos it has rows for (from the first pass or
    an earlier batch, under another name too) are skipped; the model opens once for all."""
    from xclip_cli.jobs.classify import LocalExecutor
    from xclip_cli.jobs.scan import ScanOptions, scan_videos
    from xclip_cli.labels import inline_labelset
    from xclip_cli.model.open import open_backend

    clips = [str(write_video(tmp_path / f"c{index}.mp4", num_frames=12, size=(32, 24))) for index in range(3)]
    loads = []

    def load():  # type: ignore[no-untyped-def]
        loads.append(1)
        return open_backend(str(tiny_model_dir), "cpu", "fp32", "torch")

    out, arrived = tmp_path / "r.csv", []
    batches = [Arrived((clips[0], clips[1])), Arrived((clips[1], os.path.relpath(clips[0]))), Arrived((clips[2],))]
    summary = scan_videos(
        clips[:1], inline_labelset(LABELS_TEXT), LocalExecutor("tiny", "fp32", load), ScanOptions(output=out),
        arrivals=batches, on_arrival=arrived.append,
    )  # fmt: skip
    assert [row["path"] for row in rows_of(out)] == clips and summary.done == 3
    assert arrived == [1, 1] and loads == [1]


def test_a_file_written_again_replaces_its_row_only_when_asked(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A video with a row (from an earlier run, or this one) whose file the OS reports written
    again: kept as it is by default; with ``reclassify_changed`` its row is replaced (removed,
    then the new one appended, saying so), and the counts stay one row per video."""
    from xclip_cli.jobs.classify import LocalExecutor
    from xclip_cli.jobs.scan import ScanOptions, scan_videos
    from xclip_cli.labels import inline_labelset
    from xclip_cli.model.open import open_backend

    clips = [str(write_video(tmp_path / f"c{index}.mp4", num_frames=12, size=(32, 24))) for index in range(3)]
    out, labels = tmp_path / "r.csv", inline_labelset(LABELS_TEXT)
    model = str(tiny_model_dir)
    executor = LocalExecutor(model, "fp32", lambda: open_backend(model, "cpu", "fp32", "torch"))
    scan_videos(clips[:2], labels, executor, ScanOptions(output=out))  # an earlier run: rows for c0 and c1
    before = {row["path"]: row for row in rows_of(out)}
    write_video(Path(clips[0]), num_frames=12, size=(32, 24), pattern="flat")  # c0 replaced by another video
    replaced = Arrived((clips[0], clips[2]), written=frozenset({clips[0], clips[2]}))
    kept = scan_videos(clips[:2], labels, executor, ScanOptions(output=out), arrivals=[replaced])
    assert [row["path"] for row in rows_of(out)] == [*clips] and kept.counts.done == 3
    assert {path: row for path, row in before.items()} == {row["path"]: row for row in rows_of(out)[:2]}

    written = Arrived((clips[0],), written=frozenset({clips[0]}))
    again = scan_videos(clips, labels, executor, ScanOptions(output=out, reclassify_changed=True), arrivals=[written])
    rows = rows_of(out)
    assert [row["path"] for row in rows] == [clips[1], clips[2], clips[0]]  # c0's old row gone, its new one last
    assert rows[-1]["warnings"] == AGAIN and rows[-1]["top_k"] != before[clips[0]]["top_k"]
    assert again.counts.done == 3 and (again.done, again.replaced) == (1, 1)
    listed = Arrived((clips[1],))  # found by a listing, not written: never classified again
    scan_videos(clips, labels, executor, ScanOptions(output=out, reclassify_changed=True), arrivals=[listed])
    assert rows_of(out) == rows


@pytest.mark.heavy
def test_a_watched_folder_on_ray(onnx_ready: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    """--engine ray: Ray starts once for the scan and its batches; SIGTERM still ends it between
    videos with exit 0, and the rows equal the local engine's."""
    from test_ray_engine import PROBABILITY_TOLERANCE  # an actor's threads against the local engine's

    inbox, out = tmp_path / "inbox", tmp_path / "r.csv"
    inbox.mkdir()
    write_video(inbox / "there.mp4", num_frames=12, size=(32, 24))
    model = ["--model", str(tiny_model_dir), "--labels", LABELS_TEXT, "--backend", "onnx", "-q"]
    command = [sys.executable, "-m", "xclip_cli", "scan", str(inbox), *model]
    watching = [*command, "-o", str(out), "--watch", "--settle", str(SETTLE), "--engine", "ray"]
    process = subprocess.Popen(watching, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=interruptible)
    wait_for_rows(out, 1, process, seconds=180)
    shutil.copy(inbox / "there.mp4", inbox / "later.mp4")
    wait_for_rows(out, 2, process, seconds=180)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == ExitCode.OK, process.stderr.read().decode() if process.stderr else ""
    plain = tmp_path / "plain.csv"
    subprocess.run([*command, "-o", str(plain)], check=True)
    on_ray = {row["path"]: row for row in rows_of(out)}
    local = {row["path"]: row for row in rows_of(plain)}
    assert on_ray.keys() == local.keys() and len(rows_of(out)) == 2
    for path, row in local.items():
        assert [float(on_ray[path][f"top{k}_probability"]) for k in (1, 2, 3)] == pytest.approx(
            [float(row[f"top{k}_probability"]) for k in (1, 2, 3)], abs=PROBABILITY_TOLERANCE
        )


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        (["--settle", "2"], "xclip: error: --settle needs --watch"),
        (["--poll"], "xclip: error: --poll needs --watch"),
        (["--reclassify-changed"], "xclip: error: --reclassify-changed needs --watch"),
        (["--watch", "--from-file", "-"], "xclip: error: --watch watches folders: give folders, not --from-file"),
        (["--watch", "--settle", "0"], "xclip: error: --settle 0: expected a positive number of seconds"),
    ],
)
def test_watch_options_that_cannot_mean_what_was_asked_are_refused_in_one_line(
    tmp_path: Path, arguments: list[str], said: str
) -> None:
    write_video(tmp_path / "a.mp4", num_frames=12, size=(32, 24))
    out = tmp_path / "r.csv"
    result = invoke(["scan", str(tmp_path), "-o", str(out), "--model", "/no/model", *arguments], input="")
    assert (result.exit_code, result.stderr) == (ExitCode.USAGE, said + "\n")
    assert not out.exists()
