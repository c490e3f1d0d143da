"""Output writers: golden files for every format, plus the properties each format promises.

Golden files live in tests/data/golden: results, timeline and search in every format
({table.txt,json,jsonl,csv}), timelines and search selects for editors ({otio,edl,fcpxml})
and the eval report (table, json). After an intended
change of an output format, regenerate them with

    XCLIP_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_writers.py -q

then read the diff (``git diff tests/data/golden``) before committing.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from xclip_cli import __version__
from xclip_cli.jobs.evaluate import compute_metrics
from xclip_cli.media.rates import FrameRate
from xclip_cli.output.editing import EDIT_FORMATS, write_selects, write_timeline_edit
from xclip_cli.output.writers import (
    TIMELINE_WRITERS,
    WRITERS,
    CsvWriter,
    JsonlWriter,
    JsonWriter,
    TableWriter,
    Writer,
    write_eval_report,
    write_search,
)
from xclip_cli.results import CSV_COLUMNS, Moment, Prediction, SearchHit, Tag, Timeline, VideoResult, Window

GOLDEN = Path(__file__).parent / "data" / "golden"
UPDATE_GOLDEN = os.environ.get("XCLIP_UPDATE_GOLDEN") == "1"
# Environment variables Rich reads to size the console or force colours onto a non-terminal.
RICH_ENV = ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "LINES", "JUPYTER_COLUMNS")

MODEL = "microsoft/xclip-base-patch32"
RESULTS = (
    VideoResult(
        path="videos/kitchen.mp4",
        resolved_path="/footage/videos/kitchen.mp4",
        predictions=(
            Prediction("cooking", 0.7123456789, 24.125),
            Prediction("washing dishes", 0.2, 22.8),
            Prediction("eating a meal", 0.0876543211, 21.5),
        ),
        model=MODEL,
        precision="fp32",
        labelset="household",
        labelset_digest="0123456789ab",
        timestamps=(0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5),
        duration=4.25,
        width=640,
        height=360,
    ),
    VideoResult(
        path="vidéo ünïcode.mp4",
        predictions=(Prediction("[bold]x[/bold]", 0.99, 30.0), Prediction("café au lait", 0.01, 25.4)),
        model=MODEL,
        precision="fp32",
        labelset="inline",
        labelset_digest="ba9876543210",
        timestamps=(0.0, 1.25),
        duration=2.5,
        width=360,
        height=640,
        views=12,
        sampling="keyframes",
        keyframe_substitutes=2,
        tags=(Tag("[bold]x[/bold]", 0.8125, 0.5), Tag("café au lait", 0.5, 0.5)),
        tags_digest="c0ffee123456",
        warnings=("truncated or damaged: frames cover only 2.50 s of the 9.00 s it declares", "second, kept apart"),
    ),
    VideoResult(
        path="missing.mp4",
        model=MODEL,
        precision="fp32",
        labelset="household",
        labelset_digest="0123456789ab",
        error="cannot open video (No such file or directory)",
    ),
)


@pytest.fixture(autouse=True)
def fixed_console_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same Rich output whatever the terminal running the tests: 100 columns, no forced colour."""
    monkeypatch.setenv("COLUMNS", "100")
    for name in RICH_ENV:
        monkeypatch.delenv(name, raising=False)


def render(fmt: str, results: tuple[VideoResult, ...] | list[VideoResult] = RESULTS) -> str:
    stream = io.StringIO()
    writer = WRITERS[fmt](stream)
    for result in results:
        writer.write(result)
    writer.close()
    return stream.getvalue()


def ok(path: str = "clip.mp4", labels: tuple[str, ...] = ("a",)) -> VideoResult:
    predictions = tuple(Prediction(label, 1.0 / len(labels), 20.0) for label in labels)
    return VideoResult(
        path=path,
        predictions=predictions,
        model="m",
        labelset="s",
        timestamps=(0.0,),
        duration=1.0,
        width=32,
        height=24,
    )


# --------------------------------------------------------------------------- golden files

GOLDEN_FILES = {"table": "results.table.txt", "json": "results.json", "jsonl": "results.jsonl", "csv": "results.csv"}
SUFFIXES = {"table": "table.txt", "json": "json", "jsonl": "jsonl", "csv": "csv"}
CUE_SUFFIXES = {"srt": "srt", "vtt": "vtt", "chapters": "ffmetadata"}  # timelines only


def fixed_timeline() -> Timeline:
    """Three windows of a 10 s video: two agree on 'cooking', the last says 'dancing'."""
    labels = ("cooking", "dancing", "[b]x[/b]")
    scores = [(0.7, 0.2, 0.1), (0.6, 0.3, 0.1), (0.1, 0.8, 0.1)]
    windows = tuple(
        Window(start, start + 4.0, owns_from, owns_to, np.array(p), np.array([20.0, 19.0, 18.0]))
        for (start, owns_from, owns_to), p in zip(
            [(0.0, 0.0, 3.0), (2.0, 3.0, 6.0), (6.0, 6.0, 10.0)], scores, strict=True
        )
    )
    return Timeline("videos/kitchen.mp4", MODEL, "household", 10.0, 4.0, 2.0, windows, labels, ("a warning",))


def render_timeline(fmt: str) -> str:
    stream = io.StringIO()
    timeline = fixed_timeline()
    TIMELINE_WRITERS[fmt](timeline, timeline.segments(merge=True, top_k=2), True, stream)
    return stream.getvalue()


def render_search(fmt: str) -> str:
    stream = io.StringIO()
    hits = [SearchHit("videos/kitchen.mp4", 24.5), SearchHit("=formula.mp4", -3.25)]
    write_search(hits, "a person cooking", fmt, stream)
    return stream.getvalue()


# Editing formats name files by absolute path and time them at the files' rates, given here.
KITCHEN = "/footage/videos/kitchen.mp4"
EDIT_RATES = {
    KITCHEN: FrameRate(Fraction(25), True, 250, 10.0, 640, 360, True),
    '/footage/café, "late".mov': FrameRate(Fraction(30000, 1001), True, 300, 10.01, 1920, 1080, False),
}


def render_edit(fmt: str) -> str:
    stream = io.StringIO()
    timeline = replace(fixed_timeline(), path=KITCHEN)
    write_timeline_edit(timeline, timeline.segments(merge=True, top_k=2), fmt, stream, rates=EDIT_RATES)
    return stream.getvalue().replace(__version__, "VERSION")  # not a change of format


def render_selects(fmt: str) -> str:
    stream = io.StringIO()
    late = next(path for path in EDIT_RATES if path != KITCHEN)
    moments = [
        Moment("a person's hands", late, 2.5, 4.0, 24.25, (2.5, 4.0), 2),
        Moment("a person's hands", KITCHEN, 0.0, 2.02, 21.0, (0.0, 2.02)),
    ]
    write_selects(moments, fmt, stream, rates=EDIT_RATES)
    return stream.getvalue().replace(__version__, "VERSION")


def render_eval(fmt: str) -> str:
    stream = io.StringIO()
    report = compute_metrics(np.array([0, 0, 1]), [[0, 1], [1, 0], [1, 0]], ["cooking", "dancing"], failed=1)
    write_eval_report(report, "household", fmt, stream)
    return stream.getvalue()


GOLDEN_CASES = {
    **{f"results.{SUFFIXES[fmt]}": (render, fmt) for fmt in SUFFIXES},
    **{f"timeline.{SUFFIXES[fmt]}": (render_timeline, fmt) for fmt in SUFFIXES},
    **{f"timeline.{suffix}": (render_timeline, fmt) for fmt, suffix in CUE_SUFFIXES.items()},
    **{f"search.{SUFFIXES[fmt]}": (render_search, fmt) for fmt in SUFFIXES},
    **{f"timeline.{fmt}": (render_edit, fmt) for fmt in EDIT_FORMATS},
    **{f"selects.{fmt}": (render_selects, fmt) for fmt in EDIT_FORMATS},
    **{f"eval.{SUFFIXES[fmt]}": (render_eval, fmt) for fmt in ("table", "json")},
}


@pytest.mark.parametrize("name", sorted(GOLDEN_CASES))
def test_output_matches_golden_file(name: str) -> None:
    function, fmt = GOLDEN_CASES[name]
    output = function(fmt)
    path = GOLDEN / name
    if UPDATE_GOLDEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8", newline="") as file:  # newline="": keep CSV's \r\n
            file.write(output)
        return
    with path.open(encoding="utf-8", newline="") as file:
        assert output == file.read()


def test_golden_files_are_all_tested() -> None:
    golden = sorted(path.name for path in GOLDEN.iterdir() if not path.name.startswith("."))
    assert golden == sorted(GOLDEN_CASES)
    assert set(GOLDEN_FILES) == set(WRITERS) == set(TIMELINE_WRITERS) - set(CUE_SUFFIXES) - set(EDIT_FORMATS)


# --------------------------------------------------------------------------- registry


def test_writers_registry() -> None:
    assert set(WRITERS) == {"table", "json", "jsonl", "csv"}
    expected = {"table": TableWriter, "json": JsonWriter, "jsonl": JsonlWriter, "csv": CsvWriter}
    assert expected == WRITERS
    for name, cls in WRITERS.items():
        assert issubclass(cls, Writer)
        assert cls.name == name


# --------------------------------------------------------------------------- JSON and JSONL

RECORD_KEYS = [
    "path",
    "resolved_path",
    "status",
    "model",
    "precision",
    "labelset",
    "labelset_digest",
    "predictions",
    "timestamps",
    "duration",
    "width",
    "height",
    "views",
    "sampling",
    "keyframe_substitutes",
    "tags",
    "tags_digest",
    "error",
    "warnings",
]


def test_json_document() -> None:
    records = json.loads(render("json"))
    assert [list(record) for record in records] == [RECORD_KEYS] * 3
    first, second, failed = records
    assert first == {
        "path": "videos/kitchen.mp4",
        "resolved_path": "/footage/videos/kitchen.mp4",
        "status": "ok",
        "model": MODEL,
        "precision": "fp32",
        "labelset": "household",
        "labelset_digest": "0123456789ab",
        "predictions": [
            {"label": "cooking", "probability": 0.7123456789, "logit": 24.125},
            {"label": "washing dishes", "probability": 0.2, "logit": 22.8},
            {"label": "eating a meal", "probability": 0.0876543211, "logit": 21.5},
        ],
        "timestamps": [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5],
        "duration": 4.25,
        "width": 640,
        "height": 360,
        "views": 1,
        "sampling": "exact",
        "keyframe_substitutes": 0,
        "tags": None,
        "tags_digest": None,
        "error": None,
        "warnings": [],
    }
    assert second["path"] == "vidéo ünïcode.mp4"
    assert (second["sampling"], second["keyframe_substitutes"]) == ("keyframes", 2)
    assert second["tags"] == [
        {"label": "[bold]x[/bold]", "score": 0.8125, "threshold": 0.5},
        {"label": "café au lait", "score": 0.5, "threshold": 0.5},
    ]
    assert second["warnings"] == list(RESULTS[1].warnings)
    assert second["predictions"][0]["label"] == "[bold]x[/bold]"
    assert failed == {
        "path": "missing.mp4",
        "resolved_path": None,
        "status": "error",
        "model": MODEL,
        "precision": "fp32",
        "labelset": "household",
        "labelset_digest": "0123456789ab",
        "predictions": [],
        "timestamps": [],
        "duration": None,
        "width": None,
        "height": None,
        "views": 1,
        "sampling": "exact",
        "keyframe_substitutes": None,
        "tags": None,
        "tags_digest": None,
        "error": "cannot open video (No such file or directory)",
        "warnings": [],
    }


def test_json_writes_nothing_until_close() -> None:
    stream = io.StringIO()
    writer = JsonWriter(stream)
    writer.write(RESULTS[0])
    assert stream.getvalue() == ""
    writer.close()
    assert [record["path"] for record in json.loads(stream.getvalue())] == ["videos/kitchen.mp4"]


def test_json_of_no_results_is_an_empty_array() -> None:
    assert render("json", []) == "[]\n"


def test_json_keeps_non_ascii_text() -> None:
    assert "vidéo ünïcode.mp4" in render("json")
    assert "\\u" not in render("json")


class FlushCountingIO(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0
        self.flushed_values: list[str] = []

    def flush(self) -> None:
        self.flushes += 1
        self.flushed_values.append(self.getvalue())
        super().flush()


def test_jsonl_is_one_object_per_line_and_flushes_each() -> None:
    stream = FlushCountingIO()
    writer = JsonlWriter(stream)
    for count, result in enumerate(RESULTS, start=1):
        writer.write(result)
        assert stream.flushes == count
        assert stream.getvalue().count("\n") == count  # the line is complete when flushed
    lines = stream.getvalue().split("\n")
    assert lines[-1] == ""
    records = [json.loads(line) for line in lines[:-1]]
    assert len(records) == 3
    assert all(isinstance(record, dict) and list(record) == RECORD_KEYS for record in records)
    assert [record["path"] for record in records] == [result.path for result in RESULTS]
    assert [record["status"] for record in records] == ["ok", "ok", "error"]
    assert records == json.loads(render("json"))


# --------------------------------------------------------------------------- table


def test_table_shows_markup_literally() -> None:
    stream = io.StringIO()
    writer = TableWriter(stream)
    writer.write(RESULTS[1])
    output = stream.getvalue()
    assert "[bold]x[/bold]" in output
    assert "\x1b" not in output  # a StringIO is not a terminal: no colour codes
    assert "vidéo ünïcode.mp4" in output
    assert "0.9900" in output


def test_table_writes_nothing_for_an_error_result() -> None:
    stream = FlushCountingIO()
    writer = TableWriter(stream)
    writer.write(RESULTS[2])
    assert stream.getvalue() == ""
    writer.close()
    assert stream.getvalue() == ""
    assert stream.flushes == 1


def test_table_respects_console_width() -> None:
    output = render("table", [ok(labels=("a very long label " * 10,))])
    lines = output.splitlines()
    assert {len(line) for line in lines[:-1]} == {100}  # the table wraps to COLUMNS, title padded
    assert lines[-1] == "m · s · 1.0 s"  # the summary line is not padded
    row = next(line for line in lines if line.startswith("│    1 │"))
    assert "a very long label" in row


def test_table_summary_line_has_model_labelset_and_duration_unwrapped() -> None:
    output = render("table", [RESULTS[0]])
    assert output.splitlines()[-1] == f"{MODEL} · household · 4.2 s"


def test_table_shows_emoji_codes_literally() -> None:
    output = render("table", [ok(path="party:tada:.mp4", labels=(":thumbs_up: gesture",))])
    assert "party:tada:.mp4" in output
    assert ":thumbs_up: gesture" in output


# --------------------------------------------------------------------------- CSV


def parse_csv(text: str) -> tuple[list[str], list[dict[str, str]]]:
    header = next(csv.reader(io.StringIO(text, newline="")))
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    return header, rows


def test_csv_header_and_rows() -> None:
    header, rows = parse_csv(render("csv"))
    assert header == list(CSV_COLUMNS)
    assert len(rows) == 3
    assert rows[0] == {
        "path": "videos/kitchen.mp4",
        "resolved_path": "/footage/videos/kitchen.mp4",
        "status": "ok",
        "top1_label": "cooking",
        "top1_probability": "0.712346",
        "top2_label": "washing dishes",
        "top2_probability": "0.200000",
        "top3_label": "eating a meal",
        "top3_probability": "0.087654",
        "top4_label": "",  # fewer labels than --top-k: empty cells
        "top4_probability": "",
        "top5_label": "",
        "top5_probability": "",
        "top_k": '[["cooking", 0.712346], ["washing dishes", 0.2], ["eating a meal", 0.087654]]',
        "tags": "",
        "tags_digest": "",
        "duration": "4.250",
        "width": "640",
        "height": "360",
        "views": "1",
        "sampling": "exact",
        "keyframe_substitutes": "0",
        "model": MODEL,
        "precision": "fp32",
        "labelset": "household",
        "labelset_digest": "0123456789ab",
        "error": "",
        "warnings": "",
    }
    assert rows[1]["warnings"] == " | ".join(RESULTS[1].warnings)
    assert (rows[1]["sampling"], rows[1]["keyframe_substitutes"]) == ("keyframes", "2")
    assert json.loads(rows[1]["tags"]) == [["[bold]x[/bold]", 0.8125], ["café au lait", 0.5]]
    assert json.loads(rows[0]["top_k"]) == [["cooking", 0.712346], ["washing dishes", 0.2], ["eating a meal", 0.087654]]
    assert rows[1]["path"] == "vidéo ünïcode.mp4"
    assert json.loads(rows[1]["top_k"]) == [["[bold]x[/bold]", 0.99], ["café au lait", 0.01]]


def test_csv_error_row() -> None:
    _, rows = parse_csv(render("csv"))
    assert rows[2] == {
        "path": "missing.mp4",
        "resolved_path": "",
        "status": "error",
        **{f"top{rank}_{part}": "" for rank in range(1, 6) for part in ("label", "probability")},
        "top_k": "",
        "tags": "",
        "tags_digest": "",
        "duration": "",
        "width": "",
        "height": "",
        "views": "",
        "sampling": "exact",
        "keyframe_substitutes": "",
        "model": MODEL,
        "precision": "fp32",
        "labelset": "household",
        "labelset_digest": "0123456789ab",
        "error": "cannot open video (No such file or directory)",
        "warnings": "",
    }


def test_csv_has_cells_for_each_rank_up_to_top_k() -> None:
    stream = io.StringIO()
    writer = CsvWriter(stream, top_k=2)
    writer.write(RESULTS[0])
    writer.close()
    header, rows = parse_csv(stream.getvalue())
    assert header[:6] == ["path", "status", "top1_label", "top1_probability", "top2_label", "top2_probability"]
    assert header[6] == "top_k" and "top3_label" not in header
    assert (rows[0]["top2_label"], rows[0]["top2_probability"]) == ("washing dishes", "0.200000")


def test_csv_header_only_without_results_and_optional() -> None:
    assert render("csv", []) == ",".join(CSV_COLUMNS) + "\r\n"
    stream = io.StringIO()
    writer = CsvWriter(stream, appending=True)
    writer.write(ok())
    _, rows = parse_csv(",".join(CSV_COLUMNS) + "\r\n" + stream.getvalue())
    assert [row["path"] for row in rows] == ["clip.mp4"]
    assert stream.getvalue().count("\r\n") == 1


def test_csv_flushes_header_and_each_row() -> None:
    stream = FlushCountingIO()
    writer = CsvWriter(stream)
    assert stream.flushes == 1
    assert stream.flushed_values == [",".join(CSV_COLUMNS) + "\r\n"]
    writer.write(RESULTS[0])
    writer.write(RESULTS[2])
    assert stream.flushes == 3
    assert stream.flushed_values[-1].count("\r\n") == 3


@pytest.mark.parametrize(
    "label",
    ["+1", "-2", "@SUM(A1)", "=1+1", "\tx", "\rx"],
    ids=["plus", "minus", "at", "equals", "tab", "carriage-return"],
)
def test_csv_neutralises_formula_labels(label: str) -> None:
    _, rows = parse_csv(render("csv", [ok(labels=(label, "plain"))]))
    assert rows[0]["top1_label"] == "'" + label
    # inside the JSON cell (which starts with "[") the label stays as it is
    assert json.loads(rows[0]["top_k"]) == [[label, 0.5], ["plain", 0.5]]


def test_csv_neutralises_formula_paths_only() -> None:
    formula = '=HYPERLINK("http://example.com/x","click")'
    _, rows = parse_csv(render("csv", [ok(path=formula), ok(path="videos/normal clip.mp4")]))
    assert rows[0]["path"] == "'" + formula
    assert rows[1]["path"] == "videos/normal clip.mp4"
    assert rows[1]["top1_label"] == "a"
    assert rows[1]["top1_probability"] == "1.000000"
