"""`xclip scan`: every file gets a row, reruns resume, shards partition, kills lose nothing."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import LABELS_TEXT, invoke, paused_mid_scan, write_video

from xclip_cli.errors import ExitCode, UsageError
from xclip_cli.labels import resolve_labels
from xclip_cli.media.discovery import Shard, find_videos, read_path_list
from xclip_cli.results import CSV_COLUMNS
from xclip_cli.store.results_file import LEGACY_CSV_COLUMNS, finished_paths

BEFORE_SAMPLING = (  # the CSV header xclip-cli 0.3 wrote (--top-k 5)
    "path",
    "status",
    "top1_label",
    "top1_probability",
    "top2_label",
    "top2_probability",
    "top3_label",
    "top3_probability",
    "top4_label",
    "top4_probability",
    "top5_label",
    "top5_probability",
    "top_k",
    "duration",
    "width",
    "height",
    "views",
    "model",
    "precision",
    "labelset",
    "labelset_digest",
    "error",
    "warnings",
)


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == list(CSV_COLUMNS)
        return list(reader)


def scan(model: Path, *args: str, stdin: str | None = None):
    return invoke(["scan", *args, "--model", str(model), "--labels", LABELS_TEXT, "-q"], input=stdin)


@pytest.fixture
def footage(tmp_path: Path, clip_dir: Path) -> Path:
    """Good clips (one in a sub-folder), a web page named .mp4, an empty file, a truncated clip."""
    folder = tmp_path / "footage"
    (folder / "day 2").mkdir(parents=True)
    good = (clip_dir / "a.mp4").read_bytes()
    (folder / "a.mp4").write_bytes(good)
    (folder / "day 2" / "b.mp4").write_bytes((clip_dir / "b.mp4").read_bytes())
    (folder / "page.mp4").write_text("<html>Bad Gateway</html>")
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "cut.mp4").write_bytes(good[: len(good) // 3])
    (folder / "notes.txt").write_text("not a video, not scanned")
    return folder


GOOD = ("a.mp4", "b.mp4")  # in the footage fixture; the other videos are broken


def expected_exit(paths: list[str]) -> ExitCode:
    """The exit code of a scan of these footage paths."""
    good = sum(Path(path).name in GOOD for path in paths)
    if good == len(paths):
        return ExitCode.OK
    return ExitCode.ALL_FAILED if good == 0 else ExitCode.PARTIAL


def test_every_file_gets_a_row_and_partial_failure_exit_code(tiny_model_dir: Path, footage: Path) -> None:
    out = footage.parent / "results.csv"
    result = scan(tiny_model_dir, str(footage), "-o", str(out))
    assert result.exit_code == ExitCode.PARTIAL, result.stderr
    status = {Path(row["path"]).name: row["status"] for row in rows(out)}
    assert status == {"a.mp4": "ok", "b.mp4": "ok", "page.mp4": "error", "empty.mp4": "error", "cut.mp4": "error"}
    assert all(row["error"] for row in rows(out) if row["status"] == "error")


def test_all_failed_exit_code(tiny_model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "x.mp4").write_text("nope")
    result = scan(tiny_model_dir, str(tmp_path), "-o", str(tmp_path / "r.csv"))
    assert result.exit_code == ExitCode.ALL_FAILED


def test_rerun_resumes_without_duplicates(tiny_model_dir: Path, footage: Path) -> None:
    out = footage.parent / "results.csv"
    model = shutil.copytree(tiny_model_dir, footage.parent / "model")
    first = scan(model, str(footage), "-o", str(out), "--shard", "0/2")
    every = list(find_videos([str(footage)]))
    in_shard = [path for path in every if path in Shard(0, 2)]
    assert first.exit_code == expected_exit(in_shard)
    partial = [row["path"] for row in rows(out)]
    second = scan(model, str(footage), "-o", str(out))
    assert second.exit_code == expected_exit(every)  # the code tells of every row in the file, earlier ones too
    paths = [row["path"] for row in rows(out)]
    assert paths[: len(partial)] == partial  # appended, earlier rows kept as they were
    assert sorted(paths) == sorted(find_videos([str(footage)]))
    assert len(paths) == len(set(paths)) == 5
    # A third run has nothing left to do and does not even load the model (its weights are gone).
    (model / "model.safetensors").unlink()
    third = invoke(["scan", str(footage), "-o", str(out), "--model", str(model), "--labels", LABELS_TEXT])
    assert third.exit_code == ExitCode.PARTIAL and "nothing to do" in third.stderr  # the error rows remain
    assert f"{out}: 3 rows are errors; --retry-failed classifies those videos again" in third.stderr


def test_shards_partition_the_inputs(tiny_model_dir: Path, footage: Path) -> None:
    outs = [footage.parent / f"part{i}.csv" for i in range(2)]
    for index, out in enumerate(outs):
        scan(tiny_model_dir, str(footage), "-o", str(out), "--shard", f"{index}/2")
    shards = [{row["path"] for row in rows(out)} for out in outs]  # an empty shard still writes its header
    assert not shards[0] & shards[1]
    assert shards[0] | shards[1] == set(find_videos([str(footage)]))


def test_shard_membership_is_stable_and_validated() -> None:
    paths = [f"/videos/{i}.mp4" for i in range(200)]
    parts = [[p for p in paths if p in Shard(i, 3)] for i in range(3)]
    assert sorted(p for part in parts for p in part) == sorted(paths) and all(parts)
    assert [p for p in paths[:50] if p in Shard(1, 3)] == [p for p in parts[1] if p in paths[:50]]
    for text in ("2/2", "a/b", "1", "-1/3", "0/0"):
        with pytest.raises(UsageError):
            Shard.parse(text)


def test_paths_from_stdin_with_spaces_and_non_ascii(tiny_model_dir: Path, tmp_path: Path, clip_dir: Path) -> None:
    names = ["with space.mp4", "ünïcødé 名前.mp4", "-leading-dash.mp4", "=formula.mp4"]
    for name in names:
        (tmp_path / name).write_bytes((clip_dir / "a.mp4").read_bytes())
    listing = "".join(f"{tmp_path / name}\n" for name in names)
    out = tmp_path / "r.csv"
    result = scan(tiny_model_dir, "--from-file", "-", "-o", str(out), stdin=listing)
    assert result.exit_code == 0, result.stderr
    written = [row["path"] for row in rows(out)]
    assert written == [str(tmp_path / name) for name in names]
    assert finished_paths(out) == {str(tmp_path / name) for name in names}


def test_nul_separated_list_files_and_stdin(tiny_model_dir: Path, tmp_path: Path, clip_dir: Path) -> None:
    names = ["with space.mp4", "new\nline.mp4", "sep\u2028arator.mp4"]  # none splits a NUL list
    for name in names:
        (tmp_path / name).write_bytes((clip_dir / "a.mp4").read_bytes())
    listing = "".join(f"{tmp_path / name}\0" for name in names)
    (tmp_path / "list0").write_text(listing, encoding="utf-8")
    for args, stdin in ((["--from-file", str(tmp_path / "list0")], None), (["--from-file", "-"], listing)):
        out = tmp_path / "r.csv"
        result = scan(tiny_model_dir, *args, "-o", str(out), "--overwrite", stdin=stdin)
        assert result.exit_code == 0, result.stderr
        assert [row["path"] for row in rows(out)] == [str(tmp_path / name) for name in names]


def test_read_path_list() -> None:
    assert list(read_path_list(["a.mp4\n", "\n", "  \n", "b c.mp4\r\n", "d.mp4"])) == ["a.mp4", "b c.mp4", "d.mp4"]
    assert list(read_path_list(["a\0b\n", "c\0\0d"])) == ["a", "b\nc", "d"]
    assert list(read_path_list(["a\0b\0\n"])) == ["a", "b"]  # an echo's newline after the last NUL
    with pytest.raises(UsageError, match=r"^list\.txt: NUL-separated paths from line 2 on, after 1 newline"):
        list(read_path_list(["a\n", "b\0c"], "list.txt"))


def test_formula_paths_are_neutralised_and_still_resume(
    tiny_model_dir: Path, tmp_path: Path, clip_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "v").mkdir()
    video = "=HYPERLINK(1).mp4"
    (tmp_path / "v" / video).write_bytes((clip_dir / "a.mp4").read_bytes())
    out = tmp_path / "r.csv"
    monkeypatch.chdir(tmp_path / "v")
    assert scan(tiny_model_dir, "--from-file", "-", "-o", str(out), stdin=f"{video}\n").exit_code == 0
    assert rows(out)[0]["path"] == "'" + video
    again = invoke(
        ["scan", "--from-file", "-", "-o", str(out), "-l", LABELS_TEXT, "-m", str(tiny_model_dir)], input=f"{video}\n"
    )
    assert again.exit_code == 0 and "nothing to do: all 1 videos are already in" in again.stderr
    assert len(rows(out)) == 1


def test_glob_ext_and_recursion(footage: Path) -> None:
    everything = {Path(p).name for p in find_videos([str(footage)])}
    assert everything == {"a.mp4", "b.mp4", "page.mp4", "empty.mp4", "cut.mp4"}
    assert {Path(p).name for p in find_videos([str(footage)], recursive=False)} == everything - {"b.mp4"}
    assert {Path(p).name for p in find_videos([str(footage)], pattern="day 2/*")} == {"b.mp4"}
    assert {Path(p).name for p in find_videos([str(footage)], extensions=frozenset({"txt"}))} == {"notes.txt"}
    order = [os.path.relpath(p, footage) for p in find_videos([str(footage)])]
    assert order == ["a.mp4", "cut.mp4", "empty.mp4", "page.mp4", "day 2/b.mp4"]  # sorted, folder by folder


def test_symlink_loops_are_not_followed(tmp_path: Path, clip_dir: Path) -> None:
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "a.mp4").write_bytes((clip_dir / "a.mp4").read_bytes())
    (tmp_path / "clips" / "loop").symlink_to(tmp_path / "clips")
    assert [Path(p).name for p in find_videos([str(tmp_path / "clips")])] == ["a.mp4"]


def test_partial_last_row_is_trimmed_before_appending(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    complete = ",".join(["/x/a.mp4", "error", *[""] * (len(CSV_COLUMNS) - 3), "/x/a.mp4"])  # resolved_path last
    out.write_text(",".join(CSV_COLUMNS) + "\r\n" + complete + "\r\n/x/b.mp4,ok,c,0.", encoding="utf-8")
    assert finished_paths(out) == {"/x/a.mp4"}
    assert out.read_bytes().endswith(b",/x/a.mp4\r\n")


def test_a_foreign_csv_is_not_appended_to(tiny_model_dir: Path, footage: Path) -> None:
    out = footage.parent / "other.csv"
    out.write_text("name,size\nx,1\n")
    result = scan(tiny_model_dir, str(footage), "-o", str(out))
    assert result.exit_code == ExitCode.OUTPUT
    assert "not an xclip results file" in result.stderr
    assert out.read_text() == "name,size\nx,1\n"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
@pytest.mark.heavy
def test_killed_scan_loses_no_rows_and_resumes(tiny_model_dir: Path, tmp_path: Path, sig: signal.Signals) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    for index in range(40):
        write_video(folder / f"clip{index:02d}.mp4", num_frames=10, size=(32, 24))
    out = tmp_path / "r.csv"
    command = [sys.executable, "-m", "xclip_cli", "scan", str(folder), "-o", str(out), "-q"]
    command += ["--model", str(tiny_model_dir), "--labels", LABELS_TEXT]
    # Paused mid-way, the scan cannot finish before the signal under test arrives, however fast it runs.
    process = paused_mid_scan(command, out, after=3, total=40)
    process.send_signal(sig)
    if sig == signal.SIGINT:
        process.send_signal(signal.SIGCONT)  # the pending SIGINT is delivered as it resumes
    code = process.wait(timeout=60)
    assert code == (ExitCode.INTERRUPTED if sig == signal.SIGINT else -signal.SIGKILL)
    if sig == signal.SIGINT:
        said = process.stderr.read().decode() if process.stderr else ""
        assert said == f"xclip: interrupted: {out} holds every finished video; rerun the same command to resume\n"
    finished = [row["path"] for row in rows(out)]
    assert 3 <= len(finished) < 40  # stopped mid-way, every row before it complete
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    paths = [row["path"] for row in rows(out)]
    assert paths[: len(finished)] == finished
    assert sorted(paths) == sorted(str(p) for p in folder.iterdir())


def test_an_empty_folder_says_so(tmp_path: Path) -> None:
    result = invoke(["scan", str(tmp_path), "-o", str(tmp_path / "r.csv"), "--model", "/no/model"])
    assert result.exit_code == 0
    assert result.stderr.strip() == "xclip: nothing to do: no videos found"


def test_an_empty_shard_leaves_a_header_only_csv(tiny_model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    out = tmp_path / "part.csv"
    result = scan(tiny_model_dir, str(tmp_path / "empty"), "-o", str(out))
    assert result.exit_code == ExitCode.OK and rows(out) == []


@pytest.fixture
def two_clips(tmp_path: Path, clip_dir: Path) -> Path:
    folder = tmp_path / "two"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4"):
        (folder / name).write_bytes((clip_dir / name).read_bytes())
    return folder


@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["--labels", "cooking, surfing"], "made with other labels, prompts or templates under the same --labels name"),
        (["--labels", "sports"], "made with --labels 'inline', this run uses 'sports'"),
        (["--clips", "2"], "made with 1 view(s) per video (--clips x --crops), this run uses 2"),
        (["--top-k", "2"], "--top-k"),
        (["--model", "OTHER"], "made with --model"),
        (["--precision", "bf16"], "made with --precision fp32, this run uses bf16"),
        (["--sampling", "keyframes"], "made with --sampling exact, this run uses keyframes"),
        (["-f", "FLIPPED"], "rows, this run writes"),
    ],
    ids=["same-name-other-prompts", "other-set", "views", "top-k", "model", "precision", "sampling", "other-format"],
)
def test_a_resume_made_otherwise_is_refused_and_the_file_untouched(
    tiny_model_dir: Path, other_model_dir: Path, two_clips: Path, suffix: str, change: list[str], message: str
) -> None:
    out = two_clips.parent / f"results.{suffix}"
    first = invoke(["scan", str(two_clips / "a.mp4"), "-o", str(out), "-m", str(tiny_model_dir), "-l", LABELS_TEXT])
    assert first.exit_code == ExitCode.OK, first.stderr
    before = out.read_bytes()
    flipped = "jsonl" if suffix == "csv" else "csv"  # -f naming the other format than the file holds
    change = [{"OTHER": str(other_model_dir), "FLIPPED": flipped}.get(arg, arg) for arg in change]
    args = ["scan", str(two_clips), "-o", str(out), "-m", str(tiny_model_dir), "-l", LABELS_TEXT, *change]
    again = invoke(args)
    assert again.exit_code == ExitCode.USAGE, again.stderr
    assert again.stderr.startswith(f"xclip: error: {out}: ") and message in again.stderr
    assert again.stderr.rstrip().endswith("use --overwrite or another -o") and again.stderr.count("\n") == 1
    assert out.read_bytes() == before
    if change[:2] == ["--labels", "sports"] and suffix == "csv":  # once: --overwrite is the way out
        assert invoke([*args, "--overwrite"]).exit_code == ExitCode.OK


def test_the_same_model_named_two_ways_resumes(
    tiny_model_dir: Path, two_clips: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = two_clips.parent / "results.csv"
    assert scan(tiny_model_dir, str(two_clips / "a.mp4"), "-o", str(out)).exit_code == ExitCode.OK
    monkeypatch.chdir(tiny_model_dir.parent)
    relative = os.path.relpath(tiny_model_dir)
    assert scan(Path(relative), str(two_clips), "-o", str(out)).exit_code == ExitCode.OK
    assert [Path(row["path"]).name for row in rows(out)] == ["a.mp4", "b.mp4"]


@pytest.mark.parametrize("header", [LEGACY_CSV_COLUMNS, BEFORE_SAMPLING], ids=["0.1", "0.3"])
def test_a_results_file_of_an_older_version_is_refused(
    tiny_model_dir: Path, two_clips: Path, header: tuple[str, ...]
) -> None:
    out = two_clips.parent / "results.csv"
    out.write_text(",".join(header) + "\n", encoding="utf-8")
    result = scan(tiny_model_dir, str(two_clips), "-o", str(out))
    assert result.exit_code == ExitCode.USAGE and "written by an older xclip-cli" in result.stderr


def test_a_jsonl_file_from_before_sampling_resumes_as_exact(tiny_model_dir: Path, two_clips: Path) -> None:
    out = two_clips.parent / "results.jsonl"
    assert scan(tiny_model_dir, str(two_clips / "a.mp4"), "-o", str(out)).exit_code == ExitCode.OK
    record = json.loads(out.read_text(encoding="utf-8"))
    del record["sampling"], record["keyframe_substitutes"]  # as xclip-cli 0.3 wrote it
    out.write_text(json.dumps(record) + "\n", encoding="utf-8")
    keyed = scan(tiny_model_dir, str(two_clips), "-o", str(out), "--sampling", "keyframes")
    assert keyed.exit_code == ExitCode.USAGE and "made with --sampling exact" in keyed.stderr
    assert scan(tiny_model_dir, str(two_clips), "-o", str(out)).exit_code == ExitCode.OK


def test_scan_csv_has_cells_for_each_label_asked_for(tiny_model_dir: Path, two_clips: Path) -> None:
    out = two_clips.parent / "results.csv"
    assert scan(tiny_model_dir, str(two_clips), "-o", str(out), "--top-k", "2").exit_code == ExitCode.OK
    with open(out, newline="", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    for row in table:
        ranked = [[row[f"top{rank}_label"], float(row[f"top{rank}_probability"])] for rank in (1, 2)]
        assert ranked == json.loads(row["top_k"])
        assert row["labelset_digest"] == resolve_labels(LABELS_TEXT).digest
