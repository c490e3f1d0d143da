"""The ``xclip`` command, driven through CliRunner and as a real subprocess."""

from __future__ import annotations

import csv
import io
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import LABELS_TEXT, invoke, need_program, readme_lines

import xclip_cli
from xclip_cli.errors import ExitCode
from xclip_cli.results import CSV_COLUMNS


def classify(model: Path, *args: str, stdin: str | None = None):
    return invoke(["classify", *args, "--model", str(model), "--labels", LABELS_TEXT], input=stdin)


def test_json_output_is_data_only_on_stdout(tiny_model_dir: Path, clip_dir: Path) -> None:
    result = classify(tiny_model_dir, str(clip_dir / "a.mp4"), str(clip_dir / "b.mp4"), "--format", "json")
    assert result.exit_code == 0, result.stderr
    records = json.loads(result.stdout)
    assert [r["path"] for r in records] == [str(clip_dir / "a.mp4"), str(clip_dir / "b.mp4")]
    first = records[0]
    assert first["status"] == "ok" and first["error"] is None
    assert first["model"] == str(tiny_model_dir) and first["labelset"] == "inline"
    assert len(first["predictions"]) == 3
    assert sum(p["probability"] for p in first["predictions"]) == pytest.approx(1.0, abs=1e-5)
    assert {p["label"] for p in first["predictions"]} == {"cooking", "dancing", "skateboarding"}
    assert len(first["timestamps"]) == 8 and first["duration"] == pytest.approx(3.0)
    assert (first["width"], first["height"]) == (64, 48)
    assert (records[1]["width"], records[1]["height"]) == (48, 64)


def test_top_k_and_jsonl(tiny_model_dir: Path, clip_dir: Path) -> None:
    result = classify(tiny_model_dir, str(clip_dir / "a.mp4"), "--format", "jsonl", "-k", "2")
    assert result.exit_code == 0, result.stderr
    (line,) = result.stdout.splitlines()
    predictions = json.loads(line)["predictions"]
    assert len(predictions) == 2 and predictions[0]["probability"] >= predictions[1]["probability"]


def test_table_is_the_default(tiny_model_dir: Path, clip_dir: Path) -> None:
    result = classify(tiny_model_dir, str(clip_dir / "a.mp4"))
    assert result.exit_code == 0, result.stderr
    assert "rank" in result.stdout and "probability" in result.stdout
    assert all(label in result.stdout for label in ("cooking", "dancing", "skateboarding"))


def test_csv_to_file(tiny_model_dir: Path, clip_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "results.csv"
    result = classify(tiny_model_dir, str(clip_dir / "a.mp4"), "--format", "csv", "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert rows[0]["status"] == "ok" and rows[0]["top1_label"] in [label.strip() for label in LABELS_TEXT.split(",")]


def test_paths_from_stdin(tiny_model_dir: Path, clip_dir: Path, tmp_path: Path) -> None:
    odd = tmp_path / "a clip – ünïcode.mp4"
    odd.write_bytes((clip_dir / "a.mp4").read_bytes())
    stdin = f"{clip_dir / 'a.mp4'}\n\n{odd}\n"
    result = classify(tiny_model_dir, "-", "--format", "jsonl", stdin=stdin)
    assert result.exit_code == 0, result.stderr
    assert [json.loads(line)["path"] for line in result.stdout.splitlines()] == [str(clip_dir / "a.mp4"), str(odd)]


def test_nul_separated_paths_from_stdin(tiny_model_dir: Path, clip_dir: Path, tmp_path: Path) -> None:
    # find -print0: a newline is part of a name, and the list may end with or without a NUL.
    odd = tmp_path / "two\nlines.mp4"
    odd.write_bytes((clip_dir / "a.mp4").read_bytes())
    for stdin in (f"{clip_dir / 'a.mp4'}\0{odd}\0", f"{clip_dir / 'a.mp4'}\0{odd}"):
        result = classify(tiny_model_dir, "-", "--format", "jsonl", stdin=stdin)
        assert result.exit_code == 0, result.stderr
        assert [json.loads(line)["path"] for line in result.stdout.splitlines()] == [str(clip_dir / "a.mp4"), str(odd)]


def test_a_path_with_a_nul_byte_is_one_line_not_a_traceback(tiny_model_dir: Path, clip_dir: Path) -> None:
    result = classify(tiny_model_dir, str(clip_dir / "a.mp4"), "no\0such.mp4", "-f", "jsonl")
    assert result.exit_code == ExitCode.PARTIAL, result.stderr
    assert "a path cannot contain a NUL byte" in result.stderr and "internal error" not in result.stderr
    # A list that turns NUL-separated after newline-separated paths was split wrongly: refused.
    result = classify(tiny_model_dir, "-", "-f", "jsonl", stdin=f"{clip_dir / 'a.mp4'}\nb.mp4\0c.mp4\0")
    assert result.exit_code == ExitCode.USAGE
    assert "stdin: NUL-separated paths from line 2 on, after 1 newline-separated" in result.stderr


def test_builtin_and_yaml_label_sets(tiny_model_dir: Path, clip_dir: Path, tmp_path: Path) -> None:
    result = invoke(
        ["classify", str(clip_dir / "a.mp4"), "--model", str(tiny_model_dir), "--labels", "hmdb51", "-f", "json"]
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)[0]["labelset"] == "hmdb51"
    labels = tmp_path / "mine.yaml"
    labels.write_text("name: mine\ntemplates: ['a video of {}']\nlabels: [cats, {name: dogs, prompts: [dog, puppy]}]\n")
    result = invoke(
        ["classify", str(clip_dir / "a.mp4"), "--model", str(tiny_model_dir), "-l", str(labels), "-f", "json"]
    )
    assert result.exit_code == 0, result.stderr
    assert {p["label"] for p in json.loads(result.stdout)[0]["predictions"]} == {"cats", "dogs"}


def test_start_end_restrict_timestamps(tiny_model_dir: Path, clip_dir: Path) -> None:
    result = classify(tiny_model_dir, str(clip_dir / "a.mp4"), "-f", "json", "--start", "1", "--end", "2")
    assert result.exit_code == 0, result.stderr
    assert all(1.0 <= t < 2.0 for t in json.loads(result.stdout)[0]["timestamps"])
    result = classify(tiny_model_dir, str(clip_dir / "a.mp4"), "--start", "2", "--end", "1")
    assert result.exit_code == ExitCode.USAGE
    assert "--end 1 must be after --start 2" in result.stderr


def test_start_end_take_clock_times_and_name_a_bad_one(tiny_model_dir: Path, clip_dir: Path) -> None:
    result = classify(tiny_model_dir, str(clip_dir / "a.mp4"), "-f", "json", "--start", "0:01", "--end", "00:00:02.0")
    assert result.exit_code == 0, result.stderr
    assert all(1.0 <= t < 2.0 for t in json.loads(result.stdout)[0]["timestamps"])
    result = classify(tiny_model_dir, str(clip_dir / "a.mp4"), "--end", "1:75")
    assert result.exit_code == ExitCode.USAGE
    assert "Invalid value for '--end': '1:75' is not a time: expected seconds, MM:SS or HH:MM:SS" in result.stderr


def test_an_end_past_the_video_is_clamped_with_a_warning(tiny_model_dir: Path, clip_dir: Path) -> None:
    result = classify(tiny_model_dir, str(clip_dir / "a.mp4"), "-f", "json", "--start", "2", "--end", "50")
    assert result.exit_code == 0, result.stderr
    warning = "--end 50 s is past the end of the video (3.00 s): sampled up to its end"
    assert result.stderr.count(warning) == 1
    (record,) = json.loads(result.stdout)
    assert record["warnings"] == [warning] and all(2.0 <= t < 3.0 for t in record["timestamps"])
    result = classify(tiny_model_dir, str(clip_dir / "a.mp4"), "-f", "json", "--end", "3")  # the end itself
    assert result.exit_code == 0 and "past the end" not in result.stderr


def test_partial_and_total_failure_exit_codes(tiny_model_dir: Path, clip_dir: Path, tmp_path: Path) -> None:
    fake = tmp_path / "page.mp4"
    fake.write_text("<html>404</html>")
    result = classify(tiny_model_dir, str(clip_dir / "a.mp4"), str(fake), "-f", "jsonl")
    assert result.exit_code == ExitCode.PARTIAL
    statuses = [json.loads(line)["status"] for line in result.stdout.splitlines()]
    assert statuses == ["ok", "error"]
    assert (
        result.stderr.strip()
        == f"xclip: error: {fake}: an HTML page, not a video (a failed download or an error page saved as video?)"
    )

    result = classify(tiny_model_dir, str(fake), str(tmp_path / "missing.mp4"))
    assert result.exit_code == ExitCode.ALL_FAILED
    assert len(result.stderr.strip().splitlines()) == 2
    assert "Traceback" not in result.stderr


def test_the_readme_jq_line_names_each_video_and_why_it_failed(
    tiny_model_dir: Path, clip_dir: Path, tmp_path: Path
) -> None:
    fake = tmp_path / "page.mp4"
    fake.write_text("<html>404</html>")
    result = classify(tiny_model_dir, str(clip_dir / "a.mp4"), str(fake), "-f", "jsonl")
    assert result.exit_code == ExitCode.PARTIAL, result.stderr
    (line,) = readme_lines("find footage -name '*.mp4' | xclip classify - --format jsonl | jq ")
    program = shlex.split(line.split("| jq ")[1])
    shown = subprocess.run([need_program("jq"), *program], input=result.stdout, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    top = json.loads(result.stdout.splitlines()[0])["predictions"][0]["label"]
    assert shown.stdout.splitlines() == [
        f"{clip_dir / 'a.mp4'}\t{top}",
        f"{fake}\tERROR: an HTML page, not a video (a failed download or an error page saved as video?)",
    ]


def test_only_missing_videos_fail_before_the_model_loads(clip_dir: Path, tmp_path: Path) -> None:
    # The model does not exist either: the missing videos are reported first.
    missing = [str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4")]
    result = invoke(["classify", *missing, "--model", str(tmp_path / "no-model")])
    assert result.exit_code == ExitCode.ALL_FAILED
    assert result.stderr.splitlines() == [f"xclip: error: {path}: no such file" for path in missing]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--labels", "no-such-set"], ExitCode.LABELS, "unknown label set 'no-such-set'"),
        (["--labels", "missing.yaml"], ExitCode.LABELS, "missing.yaml: label set file not found"),
        (["--model", "/no/such/model"], ExitCode.MODEL, "cannot load model from /no/such/model: no such folder"),
        (["--model", "."], ExitCode.MODEL, "no config.json (not a save_pretrained folder)"),
        (["--format", "xml"], ExitCode.USAGE, "--format 'xml'"),
        (["--device", "tpu"], ExitCode.USAGE, "--device 'tpu'"),
        (["-o", "/no/such/dir/out.csv"], ExitCode.OUTPUT, "/no/such/dir/out.csv: cannot write output (no folder"),
        (["-o", "/tmp"], ExitCode.OUTPUT, "/tmp: cannot write output (it is a directory)"),
    ],
)
def test_errors_are_one_line_with_exit_codes(
    tiny_model_dir: Path, clip_dir: Path, args: list[str], code: ExitCode, message: str
) -> None:
    base = ["classify", str(clip_dir / "a.mp4"), "--model", str(tiny_model_dir), "--labels", LABELS_TEXT]
    result = invoke([*base, *args])
    assert result.exit_code == code, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("xclip: error: ") and message in line
    assert result.stdout == ""


def test_unknown_hub_id_without_network_says_what_to_do(clip_dir: Path) -> None:
    # No network here (nor on CI): one quick hub query, not minutes of per-file retries.
    started = time.monotonic()
    result = invoke(["classify", str(clip_dir / "a.mp4"), "--model", "microsoft/xclip-nope"])
    assert result.exit_code == ExitCode.MODEL
    assert "--model PATH" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert time.monotonic() - started < 60


def test_labels_list_and_show() -> None:
    result = invoke(["labels", "list"])
    assert result.exit_code == 0
    assert "kinetics400" in result.stdout and "400" in result.stdout
    result = invoke(["labels", "show", "ucf101"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("# ucf101: 101 labels")
    assert "apply eye makeup" in lines and len(lines) == 2 + 101


def test_models_marks_the_zero_shot_checkpoint() -> None:
    result = invoke(["models"])
    assert result.exit_code == 0
    line = next(line for line in result.stdout.splitlines() if "xclip-base-patch16-zero-shot" in line)
    assert "★" in line and "32" in line


def test_version_names_what_it_runs_on() -> None:
    from importlib.metadata import version

    result = invoke(["--version"])
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        f"xclip-cli {xclip_cli.__version__}",
        f"torch {version('torch')}",
        f"transformers {version('transformers')}",
        f"PyAV {version('av')}",
        f"ONNX Runtime {version('onnxruntime')}",  # in the dev extras
        "default device: cpu",  # the test machines have no GPU
    ]


def test_help_has_examples_and_exit_codes_and_help_cmd_works() -> None:
    for command in ("classify", "scan", "embed", "eval", "search", "serve", "timeline"):
        text = invoke([command, "--help"]).stdout
        assert f"\n    xclip {command} " in text.split("Examples:")[1], command
        assert "  0  success" in text.split("Exit codes:")[1] and "README" not in text
        assert invoke(["help", command]).stdout.strip() == text.strip()
    listing = invoke(["--help"]).stdout
    assert "..." not in listing.split("Commands:")[1]  # no summary cut short
    assert "--format [table|json|jsonl|csv]" in invoke(["classify", "--help"]).stdout
    assert "--precision [fp32|bf16|int8]" in invoke(["scan", "--help"]).stdout
    timeline = invoke(["timeline", "--help"]).stdout.split("Examples:")[1]
    assert "-o match.srt" in timeline and "-o chapters.ffmetadata" in timeline  # its time-coded formats
    unknown = invoke(["help", "nope"])
    assert (
        unknown.exit_code == ExitCode.USAGE and unknown.stderr == "xclip: error: no command 'nope'; see xclip --help\n"
    )


def run_module(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "xclip_cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        input=stdin,
        timeout=300,
    )


@pytest.mark.heavy
def test_python_dash_m_end_to_end(tiny_model_dir: Path, clip_dir: Path) -> None:
    completed = run_module(
        "classify", "-", "--model", str(tiny_model_dir), "--labels", LABELS_TEXT, "--format", "jsonl",
        stdin=f"{clip_dir / 'a.mp4'}\n",
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    record = json.loads(completed.stdout)
    assert record["status"] == "ok" and len(record["predictions"]) == 3
    assert completed.stderr == ""  # no transformers warnings or progress bars


def test_help_and_labels_list_do_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from xclip_cli.cli import app\n"
        "commands = (['--help'], ['labels', 'list'], ['labels', 'show', 'sports'], ['models'], ['classify', '-h'])\n"
        "for args in commands:\n"
        "    assert CliRunner().invoke(app, args).exit_code == 0, args\n"
        "heavy = [m for m in ('torch', 'transformers', 'av') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr


def test_output_over_an_input_video_is_refused(tiny_model_dir: Path, clip_dir: Path, tmp_path: Path) -> None:
    video = tmp_path / "copy.mp4"
    video.write_bytes((clip_dir / "a.mp4").read_bytes())
    for fmt in (["-f", "csv"], []):  # the same refusal, whatever the -o extension says
        result = classify(tiny_model_dir, str(video), *fmt, "-o", str(video))
        assert result.exit_code == ExitCode.OUTPUT
        assert result.stderr == f"xclip: error: {video}: cannot write output over one of the input videos\n"
        assert video.read_bytes() == (clip_dir / "a.mp4").read_bytes()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start", "nan"], "Invalid value for '--start': 'nan' is not a time"),
        (["--end", "0"], "--end 0 must be after --start 0"),
    ],
)
def test_bad_ranges_are_usage_errors(tiny_model_dir: Path, clip_dir: Path, args: list[str], message: str) -> None:
    result = classify(tiny_model_dir, str(clip_dir / "a.mp4"), *args)
    assert result.exit_code == ExitCode.USAGE
    assert message in result.stderr


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".csv"])
def test_format_follows_the_output_extension(tiny_model_dir: Path, clip_dir: Path, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"results{suffix}"
    result = classify(tiny_model_dir, str(clip_dir / "a.mp4"), str(clip_dir / "b.mp4"), "-o", str(out))
    assert result.exit_code == 0, result.stderr
    text = out.read_text(encoding="utf-8")
    paths = [str(clip_dir / "a.mp4"), str(clip_dir / "b.mp4")]
    if suffix == ".csv":
        assert text.splitlines()[0] == ",".join(CSV_COLUMNS) and len(text.splitlines()) == 3
    elif suffix == ".json":  # one array: a JSONL file of two lines would not parse as one document
        assert [record["path"] for record in json.loads(text)] == paths
    else:
        assert [json.loads(line)["path"] for line in text.splitlines()] == paths


def test_empty_stdin_is_an_error_not_silence(tiny_model_dir: Path) -> None:
    result = classify(tiny_model_dir, "-", "-f", "jsonl", stdin="")
    assert result.exit_code == ExitCode.USAGE
    assert "no videos to classify" in result.stderr


def test_one_label_is_refused_unless_tagged(tiny_model_dir: Path, clip_dir: Path, tmp_path: Path) -> None:
    # A YAML list indented unevenly collapses into one label: ranking it alone says 100% for anything.
    collapsed = tmp_path / "two.yaml"
    collapsed.write_text("labels:\n- cooking\n - eating\n", encoding="utf-8")
    base = ["--model", str(tiny_model_dir), "-f", "json"]
    video = str(clip_dir / "a.mp4")
    for command in (["classify", video], ["scan", str(clip_dir)], ["timeline", video]):
        result = invoke([*command, *base[:2], "--labels", str(collapsed)])
        assert result.exit_code == ExitCode.LABELS and result.stdout == "", command
        assert result.stderr == (
            f"xclip: error: --labels {collapsed}: only one label, 'cooking - eating' (a YAML list indented unevenly?); "
            "ranking one label gives it probability 1 for every video: add labels to tell it from, "
            "or score it on its own with --multi-label\n"
        )
    result = invoke(["eval", str(tmp_path), "--model", str(tiny_model_dir), "--labels", "sports,"])
    assert result.exit_code == ExitCode.LABELS and "--labels sports,: only one label, 'sports'" in result.stderr
    # Tagging scores a label on its own: one is fine.
    result = invoke(["classify", video, *base, "--labels", "sports,", "--multi-label"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)[0]["predictions"][0]["label"] == "sports"


def test_a_file_in_the_current_folder_does_not_shadow_a_builtin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "sports").write_text("not: [a label set")
    monkeypatch.chdir(tmp_path)
    result = invoke(["labels", "show", "sports"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("# sports:")


def test_closed_stdout_exits_141_quietly() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "xclip_cli", "labels", "show", "kinetics600"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    # Close the reading end at once: the output (15 kB) would fit in the pipe buffer, so a
    # reader that first takes a line could let the writer finish without ever seeing EPIPE.
    process.stdout.close()  # like `| head -0`, before the tool has printed anything
    assert process.wait(timeout=60) == ExitCode.BROKEN_PIPE
    assert process.stderr.read() == b""


@pytest.mark.parametrize("fast", [True, False])
def test_bf16_warns_only_where_it_is_slower(
    tiny_model_dir: Path, clip_dir: Path, monkeypatch: pytest.MonkeyPatch, fast: bool
) -> None:
    import xclip_cli.model.device

    monkeypatch.setattr(xclip_cli.model.device, "bf16_is_fast", lambda device: fast)
    result = classify(tiny_model_dir, str(clip_dir / "a.mp4"), "--precision", "bf16", "-f", "json")
    assert result.exit_code == 0, result.stderr
    assert ("no bfloat16 units" in result.stderr) is not fast
    assert json.loads(result.stdout)[0]["status"] == "ok"
    bad = classify(tiny_model_dir, str(clip_dir / "a.mp4"), "--precision", "fp16")
    assert bad.exit_code == ExitCode.USAGE and "--precision 'fp16'" in bad.stderr


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["classify", "V", "-o", "out.srt"], "out.srt: xclip classify writes table, json, jsonl, csv, not .srt"),
        (["classify", "V", "-o", "out.xlsx"], "not .xlsx; end the file name in one of those or give --format"),
        (["classify", "V", "-o", "out.txt"], "not .txt"),
        (
            ["timeline", "V", "-o", "out.txt"],
            "xclip timeline writes table, json, jsonl, csv, srt, vtt, chapters, otio, edl, fcpxml, not .txt",
        ),
        (["timeline", "V", "--plot", "out.gif"], "--plot out.gif: writes .png or .svg or .pdf or .jpg or .jpeg files"),
        (
            ["search", "IDX", "dogs", "-o", "hits.html"],
            "xclip search writes table, json, jsonl, csv, otio, edl, fcpxml, not .html",
        ),
        (["scan", "V", "-o", "out.json"], "xclip scan writes csv, jsonl, not .json"),
        (["eval", "DATA", "-o", "predictions.json"], "-o predictions.json: writes .csv files"),
        (["eval", "DATA", "--confusion", "confusion.txt"], "--confusion confusion.txt: writes .csv files"),
    ],
)
def test_an_output_name_that_names_no_format_is_refused_before_the_model_loads(
    clip_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    fill = {"V": str(clip_dir / "a.mp4"), "IDX": str(tmp_path), "DATA": str(clip_dir)}
    result = invoke([fill.get(arg, arg) for arg in command] + ["--model", "/no/such/model"])
    assert result.exit_code == ExitCode.USAGE, result.stderr  # not MODEL: nothing was loaded
    assert result.stderr.startswith("xclip: error: ") and message in result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_format_wins_over_an_unknown_extension(tiny_model_dir: Path, clip_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "results.txt"
    result = classify(tiny_model_dir, str(clip_dir / "a.mp4"), "-f", "csv", "-o", str(out))
    assert result.exit_code == ExitCode.OK, result.stderr
    assert out.read_text(encoding="utf-8").splitlines()[0] == ",".join(CSV_COLUMNS)
    assert result.stderr == f"xclip: wrote {out}\n"


def test_a_folder_points_to_scan_before_the_model_loads(clip_dir: Path) -> None:
    result = invoke(["classify", str(clip_dir), "--model", "/no/such/model"])
    assert result.exit_code == ExitCode.USAGE
    assert (
        result.stderr
        == f"xclip: error: {clip_dir} is a folder: use xclip scan {clip_dir} to classify the videos in it\n"
    )


def test_a_format_other_than_the_extension_is_written_with_a_warning(
    tiny_model_dir: Path, clip_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "results.csv"
    result = classify(tiny_model_dir, str(clip_dir / "a.mp4"), "-f", "json", "-o", str(out))
    assert result.exit_code == ExitCode.OK
    assert result.stderr.splitlines()[0] == f"xclip: warning: writing json into {out}, as --format says"
    assert json.loads(out.read_text(encoding="utf-8"))[0]["status"] == "ok"


def test_keyframe_sampling_says_what_it_used(tiny_model_dir: Path, tmp_path: Path) -> None:
    from helpers import write_video

    path = write_video(tmp_path / "clip.mp4", num_frames=48, gop=6, options={"g": "6", "bf": "2", "sc_threshold": "0"})
    keyed = classify(tiny_model_dir, str(path), "-f", "json", "--sampling", "keyframes")
    exact = classify(tiny_model_dir, str(path), "-f", "json")
    assert keyed.exit_code == exact.exit_code == ExitCode.OK, keyed.stderr
    (record,), (reference,) = json.loads(keyed.stdout), json.loads(exact.stdout)
    assert (record["sampling"], reference["sampling"]) == ("keyframes", "exact")
    assert reference["keyframe_substitutes"] == 0 and record["keyframe_substitutes"] == 8
    # 8 segments of 0.5 s at 12 fps, keyframes every 0.5 s: the timestamps are the keyframes'.
    assert record["timestamps"] == pytest.approx([i * 0.5 for i in range(8)])
    table = classify(tiny_model_dir, str(path), "--sampling", "keyframes")
    assert "keyframes sampling (8 substitutes)" in " ".join(table.stdout.split())  # the caption may wrap


def test_an_unknown_sampling_is_one_line(tiny_model_dir: Path, clip_dir: Path) -> None:
    result = classify(tiny_model_dir, str(clip_dir / "a.mp4"), "--sampling", "fast")
    assert result.exit_code == ExitCode.USAGE
    assert result.stderr == "xclip: error: --sampling fast: expected one of exact, keyframes\n"
