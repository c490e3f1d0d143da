"""The data people keep: one writer per results file, one row per video whatever path named it,
failures retried on request, a page on Ctrl-C, nobody's file overwritten by accident."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import LABELS_TEXT, invoke, paused_mid_scan, write_video

from xclip_cli.errors import ExitCode, UsageError
from xclip_cli.results import CSV_COLUMNS
from xclip_cli.store.locks import lock_path


def rows_of(path: Path) -> list[dict[str, str]]:
    return rows(path)


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def scan_command(model: Path, folder: Path, out: Path, *extra: str) -> list[str]:
    command = [sys.executable, "-m", "xclip_cli", "scan", str(folder), "-o", str(out), "-q"]
    return [*command, "--model", str(model), "--labels", LABELS_TEXT, "--backend", "torch", *extra]


def wait_for_rows(out: Path, count: int, process: subprocess.Popen[bytes]) -> None:
    """Poll (no fixed sleep decides the outcome) until ``out`` holds ``count`` rows."""
    deadline = time.monotonic() + 120
    while not out.exists() or out.read_text(encoding="utf-8").count("\n") < count + 1:
        assert process.poll() is None, "the scan ended before it wrote the rows waited for"
        assert time.monotonic() < deadline
        time.sleep(0.02)


@pytest.fixture
def many(tmp_path: Path) -> Path:
    folder = tmp_path / "many"
    folder.mkdir()
    for index in range(12):
        write_video(folder / f"clip{index:02d}.mp4", num_frames=10, size=(32, 24))
    return folder


# --------------------------------------------------------------------------- 1. one writer


@pytest.mark.heavy
def test_a_second_scan_into_the_same_file_is_refused_and_a_killed_one_does_not_block(
    tiny_model_dir: Path, many: Path, tmp_path: Path
) -> None:
    """Two real processes: the second is refused in one line naming the first; the first goes on
    to write every video once; a SIGKILLed writer leaves no lock that blocks the rerun."""
    out = tmp_path / "r.csv"
    command = scan_command(tiny_model_dir, many, out)
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_rows(out, 1, first)
        first.send_signal(signal.SIGSTOP)  # it holds the lock, mid-scan, for as long as the test needs
        second = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert second.returncode == ExitCode.OUTPUT, second.stderr
        said = second.stderr.strip().splitlines()
        assert len(said) == 1
        assert said[0] == (
            f"xclip: error: {out}: another xclip is writing it (pid {first.pid}: xclip scan {many} -o {out} -q "
            f"--model {tiny_model_dir} --labels {LABELS_TEXT} --backend torch); wait for it to end, or give this run "
            "its own output"
        )
        # Eval and classify into the same file meet the same lock.
        other = invoke(["classify", str(many / "clip00.mp4"), "-o", str(out), "--model", str(tiny_model_dir)])
        assert other.exit_code == ExitCode.OUTPUT and "another xclip is writing it" in other.stderr
        first.send_signal(signal.SIGCONT)
        assert first.wait(timeout=120) == 0
    finally:
        first.kill()
    paths = [row["path"] for row in rows(out)]
    assert sorted(paths) == sorted(str(path) for path in many.iterdir())  # each video once, no junk row
    assert not lock_path(out).exists()  # a clean exit removes its lock file

    out.unlink()
    killed = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_rows(out, 2, killed)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=60)
    assert lock_path(out).exists()  # left behind, but no process holds it
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    paths = [row["path"] for row in rows(out)]
    assert sorted(paths) == sorted(str(path) for path in many.iterdir())


# --------------------------------------------------------------------------- 2. one video, one row


def test_one_file_named_three_ways_and_through_a_symlink_is_one_row(
    tiny_model_dir: Path, clip_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    footage = tmp_path / "footage" / "phone"
    footage.mkdir(parents=True)
    for name in ("a.mp4", "b.mp4"):
        (footage / name).write_bytes((clip_dir / name).read_bytes())
    (tmp_path / "link").symlink_to(footage, target_is_directory=True)
    out = tmp_path / "r.csv"
    model = ["--model", str(tiny_model_dir), "--labels", LABELS_TEXT, "-q"]
    monkeypatch.chdir(tmp_path / "footage")
    assert invoke(["scan", "phone", "-o", str(out), *model]).exit_code == 0
    assert [row["path"] for row in rows(out)] == ["phone/a.mp4", "phone/b.mp4"]  # as the user gave them
    assert [row["resolved_path"] for row in rows(out)] == [str(footage / "a.mp4"), str(footage / "b.mp4")]
    for named in (str(footage), "../footage/phone", str(tmp_path / "link")):
        again = invoke(["scan", named, "-o", str(out), *model[:-1]])
        assert again.exit_code == 0, again.stderr
        assert "nothing to do: all 2 videos are already in" in again.stderr
    monkeypatch.chdir(tmp_path)  # from another folder, the relative rows still name the same files
    assert "nothing to do" in invoke(["scan", "footage/phone", "-o", str(out), *model[:-1]]).stderr
    assert len(rows(out)) == 2
    # One scan that names a video twice (a symlink beside its target) classifies it once.
    (footage / "same.mp4").symlink_to(footage / "a.mp4")
    both = tmp_path / "both.csv"
    assert invoke(["scan", str(footage), "-o", str(both), *model]).exit_code == 0
    assert [Path(row["path"]).name for row in rows(both)] == ["a.mp4", "b.mp4"]


def test_a_results_file_of_0_4_is_brought_up_to_date_when_resumed_from_its_folder(
    tiny_model_dir: Path, clip_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    footage = tmp_path / "footage"
    footage.mkdir()
    for name in ("a.mp4", "b.mp4"):
        (footage / name).write_bytes((clip_dir / name).read_bytes())
    out = tmp_path / "r.csv"
    model = ["--model", str(tiny_model_dir), "--labels", LABELS_TEXT, "-q"]
    monkeypatch.chdir(tmp_path)
    assert invoke(["scan", "footage", "-o", str(out), *model]).exit_code == 0
    old = [{key: value for key, value in row.items() if key != "resolved_path"} for row in rows(out)[:1]]
    with open(out, "w", newline="", encoding="utf-8") as handle:  # as xclip-cli 0.4 wrote it: no resolved_path
        writer = csv.DictWriter(handle, [column for column in CSV_COLUMNS if column != "resolved_path"])
        writer.writeheader()
        writer.writerows(old)
    before = out.read_bytes()
    monkeypatch.chdir(footage)  # from elsewhere, "footage/a.mp4" leads nowhere: refused, file untouched
    refused = invoke(["scan", ".", "-o", str(out), *model])
    assert refused.exit_code == ExitCode.USAGE
    assert "written by xclip-cli 0.4 with paths relative to the folder it ran in" in refused.stderr
    assert out.read_bytes() == before
    monkeypatch.chdir(tmp_path)
    resumed = invoke(["scan", str(footage), "-o", str(out), *model])
    assert resumed.exit_code == 0, resumed.stderr
    assert [(row["path"], row["resolved_path"]) for row in rows(out)] == [
        ("footage/a.mp4", str(footage / "a.mp4")),
        (str(footage / "b.mp4"), str(footage / "b.mp4")),
    ]


# --------------------------------------------------------------------------- 3. retrying failures


def test_retry_failed_replaces_error_rows_and_the_exit_code_tells_of_errors_left(
    tiny_model_dir: Path, clip_dir: Path, tmp_path: Path
) -> None:
    footage = tmp_path / "footage"
    footage.mkdir()
    (footage / "a.mp4").write_bytes((clip_dir / "a.mp4").read_bytes())
    (footage / "late.mp4").write_bytes(b"")  # still being copied when the first scan ran
    (footage / "page.mp4").write_text("<html>Bad Gateway</html>")
    for suffix in ("csv", "jsonl"):
        out = tmp_path / f"r.{suffix}"
        (footage / "late.mp4").write_bytes(b"")
        command = ["scan", str(footage), "-o", str(out), "--model", str(tiny_model_dir), "--labels", LABELS_TEXT]
        assert invoke([*command, "-q"]).exit_code == ExitCode.PARTIAL
        rerun = invoke(command)
        assert rerun.exit_code == ExitCode.PARTIAL  # nothing to do, but two rows are errors
        assert f"xclip: {out}: 2 rows are errors; --retry-failed classifies those videos again" in rerun.stderr
        (footage / "late.mp4").write_bytes((clip_dir / "b.mp4").read_bytes())
        retried = invoke([*command, "-q", "--retry-failed"])
        assert retried.exit_code == ExitCode.PARTIAL  # page.mp4 is still no video
        text = out.read_text(encoding="utf-8")
        paths = (
            [row["path"] for row in rows(out)]
            if suffix == "csv"
            else [line.split('"')[3] for line in text.splitlines()]
        )
        assert sorted(paths) == sorted(str(path) for path in footage.iterdir())  # one row each
        statuses = dict(zip(paths, ([row["status"] for row in rows(out)] if suffix == "csv" else [
            "ok" if '"status": "ok"' in line else "error" for line in text.splitlines()
        ]), strict=True))  # fmt: skip
        assert statuses == {
            str(footage / "a.mp4"): "ok",
            str(footage / "late.mp4"): "ok",
            str(footage / "page.mp4"): "error",
        }
    both = invoke(["scan", str(footage), "-o", str(tmp_path / "r.csv"), "--retry-failed", "--overwrite"])
    assert both.exit_code == ExitCode.USAGE and "give one of them" in both.stderr


# --------------------------------------------------------------------------- 4. Ctrl-C and the page


@pytest.mark.heavy
def test_ctrl_c_during_a_scan_with_a_report_still_writes_the_page(
    tiny_model_dir: Path, many: Path, tmp_path: Path
) -> None:
    out, page = tmp_path / "r.csv", tmp_path / "page.html"
    command = scan_command(tiny_model_dir, many, out, "--report", str(page))
    process = paused_mid_scan(command, out, after=2, total=12)
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGCONT)  # the pending SIGINT is delivered as it resumes
    assert process.wait(timeout=60) == ExitCode.INTERRUPTED
    said = process.stderr.read().decode() if process.stderr else ""
    assert said == (
        f"xclip: interrupted: {out} holds every finished video ({page} shows them); rerun the same command to resume\n"
    )
    done = [row["path"] for row in rows(out)]
    html = page.read_text(encoding="utf-8")
    assert all(os.path.basename(path) in html for path in done)


# --------------------------------------------------------------------------- 5. nobody's file overwritten


@pytest.mark.heavy
def test_output_over_a_file_that_is_not_xclip_output_needs_overwrite(
    tiny_model_dir: Path, clip_dir: Path, tmp_path: Path
) -> None:
    precious = tmp_path / "precious.csv"
    precious.write_text("name,amount\nrent,900\n", encoding="utf-8")
    command = ["classify", str(clip_dir / "a.mp4"), "--model", str(tiny_model_dir), "--labels", LABELS_TEXT]
    refused = invoke([*command, "-o", str(precious)])
    assert refused.exit_code == ExitCode.OUTPUT
    assert refused.stderr == f"xclip: error: {precious}: exists and holds no xclip output; --overwrite writes over it\n"
    assert precious.read_text(encoding="utf-8") == "name,amount\nrent,900\n"
    assert invoke([*command, "-o", str(precious), "--overwrite"]).exit_code == 0
    assert precious.read_text(encoding="utf-8").startswith("path,status,")
    assert invoke([*command, "-o", str(precious)]).exit_code == 0  # its own output is replaced as asked
    for fmt in ("json", "jsonl"):
        mine = tmp_path / f"mine.{fmt}"
        assert invoke([*command, "-o", str(mine)]).exit_code == 0
        assert invoke([*command, "-o", str(mine)]).exit_code == 0
    subtitles = tmp_path / "film.srt"
    subtitles.write_text("1\n00:00:01,000 --> 00:00:02,500\nWhere were you?\n\n", encoding="utf-8")
    timeline = ["timeline", str(clip_dir / "a.mp4"), "--model", str(tiny_model_dir), "--labels", LABELS_TEXT, "-q"]
    assert invoke([*timeline, "--window", "0.5", "-o", str(subtitles)]).exit_code == ExitCode.OUTPUT
    assert "Where were you?" in subtitles.read_text(encoding="utf-8")
    ours = tmp_path / "ours.srt"
    for _ in range(2):  # its own subtitles are replaced as asked
        assert invoke([*timeline, "--window", "0.5", "-o", str(ours)]).exit_code == 0


# --------------------------------------------------------------------------- found in review


def test_a_symlink_to_a_results_file_shares_its_lock(tmp_path: Path) -> None:
    from xclip_cli.store.locks import Busy, exclusive

    real, link = tmp_path / "real.csv", tmp_path / "link.csv"
    real.write_text("path,status\n", encoding="utf-8")
    link.symlink_to(real)
    with exclusive(real), pytest.raises(Busy, match="another xclip is writing it"), exclusive(link):
        pass


def test_a_row_cut_inside_a_quoted_newline_is_trimmed_and_later_rows_read_back(tmp_path: Path) -> None:
    from xclip_cli.store.table import AppendOnlyCsv, read_rows

    out = tmp_path / "r.csv"
    out.write_bytes(b'path,status\r\na.mp4,ok\r\n"new\nline')  # killed inside a file name holding a newline
    with AppendOnlyCsv(out, ("path", "status")) as table:
        table.write_rows([["b.mp4", "ok"], ["c\nd.mp4", "ok"]])
    assert read_rows(out) == (("path", "status"), [["a.mp4", "ok"], ["b.mp4", "ok"], ["c\nd.mp4", "ok"]])


def test_old_files_are_checked_before_they_are_changed_and_error_rows_may_name_lost_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xclip_cli.store.results_file import RunSettings, read_earlier

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.mp4").write_bytes(b"")
    columns = [column for column in CSV_COLUMNS if column != "resolved_path"]
    settings = {"model": "m", "labelset": "l", "labelset_digest": "d", "views": "1", "precision": "fp32"}
    row = dict.fromkeys(columns, "") | settings | {"sampling": "exact"}
    rows = [row | {"path": "a.mp4", "status": "ok"}, row | {"path": "gone.mp4", "status": "error"}]
    out = tmp_path / "r.csv"
    with open(out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)
    before = out.read_bytes()
    other = RunSettings("other-model", "l", "d", 1, 5, 3)
    with pytest.raises(UsageError, match="made with --model m"):
        read_earlier(out, other, "csv")
    assert out.read_bytes() == before  # refused: not brought up to date either
    earlier = read_earlier(out, RunSettings("m", "l", "d", 1, 5, 3), "csv")
    assert earlier.ok == {str(tmp_path / "a.mp4")} and earlier.failed == {str(tmp_path / "gone.mp4")}
    assert rows_of(out)[0]["resolved_path"] == str(tmp_path / "a.mp4")
    # JSONL of 0.4 is not rewritten, but read from another folder it is refused, not doubled.
    jsonl = tmp_path / "r.jsonl"
    jsonl.write_text('{"path": "a.mp4", "status": "ok", "model": "m", "labelset": "l"}\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path.parent)
    with pytest.raises(UsageError, match=r"a\.mp4 is not found from here"):
        read_earlier(jsonl, None, "jsonl")


def test_what_counts_as_xclip_output(tmp_path: Path) -> None:
    from xclip_cli.output.writers import holds_xclip_output

    cases = {
        "no-newline.bin": ("x" * 70_000, False),  # no line at all in the first 64 KB: not ours, no crash
        "manifest.jsonl": ('{"path": "a.mp4", "label": "cooking"}\n', False),  # another tool's records
        "ours.jsonl": ('{"path": "a \\" b.mp4", "resolved_path": "/x", "status": "ok"}\n', True),
        "wrapped-title.txt": ("some/long/folder/\nname/video.mp4\n┏━━━━┓\n", True),  # a table with a long title
    }
    for name, (text, ours) in cases.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        assert holds_xclip_output(tmp_path / name) is ours, name
