"""Output writers, one per ``--format``: each takes results one at a time and a text stream.

Streaming writers (JSONL, CSV) write and flush each result as it arrives, so a pipeline or an
interrupted run sees every finished video. Adding a format is one class in ``WRITERS``.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TextIO

from xclip_cli.output.editing import EDIT_FORMATS, EDIT_STARTS, timeline_writer
from xclip_cli.output.edl import holds_our_edl
from xclip_cli.output.timecodes import CHAPTER_EXTENSIONS, write_chapters, write_srt, write_vtt
from xclip_cli.results import (
    DEFAULT_TOP_K,
    EvalReport,
    Moment,
    SearchHit,
    Segment,
    Timeline,
    VideoResult,
    neutralise_formula,
    tags_cell,
)
from xclip_cli.store.results_file import ResultRows

if TYPE_CHECKING:
    from xclip_cli.jobs.evaluate_tags import MultiLabelReport


def data_console(stream: TextIO, width: int | None = None) -> Any:
    """A Rich console for data output that lets a closed pipe surface as ``BrokenPipeError``.

    Rich's own handling exits with status 1; the CLI reports a closed pipe as 141.
    """
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            raise BrokenPipeError

    return _Console(file=stream, highlight=False, soft_wrap=False, emoji=False, width=width)


class Writer:
    """Base writer: ``write`` each result, then ``close`` once."""

    name: ClassVar[str]

    def __init__(self, stream: TextIO, appending: bool = False, top_k: int = DEFAULT_TOP_K) -> None:
        """``appending``: the stream continues an earlier run's output (a resumed scan);
        ``top_k``: the labels asked for per video (the CSV's columns)."""
        self.stream = stream
        self.appending = appending
        self.top_k = top_k

    def write(self, result: VideoResult) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.stream.flush()


class TableWriter(Writer):
    """A Rich table per video (rank, label, probability); failures are reported on stderr."""

    name = "table"

    def __init__(self, stream: TextIO, appending: bool = False, top_k: int = DEFAULT_TOP_K) -> None:
        super().__init__(stream, appending, top_k)
        self.console = data_console(stream)  # emoji off: ":tada:" in a path stays text

    def write(self, result: VideoResult) -> None:
        from rich.markup import escape
        from rich.table import Table

        if not result.ok:
            return
        caption = f"{result.model} · {result.labelset}"
        if result.duration is not None:
            caption += f" · {result.duration:.1f} s"
        if result.views > 1:
            caption += f" · {result.views} views averaged"
        if result.sampling != "exact":
            caption += f" · {result.sampling} sampling"
            if result.keyframe_substitutes is not None:
                caption += f" ({result.keyframe_substitutes} substitutes)"
        table = Table(title=escape(result.path), title_justify="left")
        table.add_column("rank", justify="right")
        table.add_column("label")
        table.add_column("probability", justify="right")
        for rank, prediction in enumerate(result.predictions, start=1):
            table.add_row(str(rank), escape(prediction.label), f"{prediction.probability:.4f}")
        self.console.print(table)
        if result.tags is not None:
            tags = ", ".join(f"{tag.label} {tag.score:.2f}" for tag in result.tags) or "none"
            self.console.print(escape(f"tags (--multi-label): {tags}"), overflow="fold")
        self.console.print(escape(caption), style="dim", overflow="fold")  # not a caption: it would wrap


class JsonWriter(Writer):
    """One JSON array with an object per video, written at the end."""

    name = "json"

    def __init__(self, stream: TextIO, appending: bool = False, top_k: int = DEFAULT_TOP_K) -> None:
        super().__init__(stream, appending, top_k)
        self.records: list[dict[str, Any]] = []

    def write(self, result: VideoResult) -> None:
        self.records.append(result.to_record())

    def close(self) -> None:
        json.dump(self.records, self.stream, indent=2, ensure_ascii=False)
        self.stream.write("\n")
        super().close()


class _RowWriter(Writer):
    """A row per video, flushed as it comes: the rows a scan's results file holds (``ResultRows``)."""

    def __init__(self, stream: TextIO, appending: bool = False, top_k: int = DEFAULT_TOP_K) -> None:
        super().__init__(stream, appending, top_k)
        self.rows = ResultRows(stream, self.name, top_k, appending)
        self.columns = self.rows.columns

    def write(self, result: VideoResult) -> None:
        self.rows.write(result)


class JsonlWriter(_RowWriter):
    """One JSON object per line, flushed as each video finishes."""

    name = "jsonl"


class CsvWriter(_RowWriter):
    """One row per video: each of the top labels in its own cells (``topN_label``,
    ``topN_probability``), and ``top_k`` as a JSON list of [label, probability] pairs; a header
    first unless continuing a file."""

    name = "csv"


WRITERS: dict[str, type[Writer]] = {cls.name: cls for cls in (TableWriter, JsonWriter, JsonlWriter, CsvWriter)}
FORMATS = tuple(WRITERS)


# --- timelines (`xclip timeline`): one function per format -------------------------------------

TIMELINE_CSV_COLUMNS = (
    "path",
    "start",
    "end",
    "start_ms",
    "end_ms",
    "label",
    "probability",
    "windows",
    "top_k",
    "tags",
)


def clock(seconds: float) -> str:
    """``mm:ss.s`` (``h:mm:ss.s`` from an hour on)."""
    minutes, rest = divmod(max(0.0, seconds), 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{rest:04.1f}" if hours else f"{minutes:02d}:{rest:04.1f}"


def write_timeline_table(timeline: Timeline, segments: Sequence[Segment], merged: bool, stream: TextIO) -> None:
    from rich.markup import escape
    from rich.table import Table

    console = data_console(stream)
    table = Table(title=escape(timeline.path), title_justify="left")
    for name, justify in (("start", "right"), ("end", "right"), ("label", "left"), ("probability", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    tagged = timeline.thresholds is not None
    if tagged:
        table.add_column("tags (--multi-label)")
    for segment in segments:
        cells = [clock(segment.start), clock(segment.end), escape(segment.label), f"{segment.probability:.4f}"]
        if tagged:
            cells.append(escape(", ".join(f"{t.label} {t.score:.2f}" for t in segment.tags or ()) or "none"))
        table.add_row(*cells)
    console.print(table)
    if timeline.shots is not None:
        shots = len(timeline.shots) + 1
        windows = f"{shots} shot{'s' * (shots != 1)}, windows up to {timeline.window:g} s"
    else:
        windows = f"windows of {timeline.window:g} s every {timeline.stride:g} s"
    count = len(timeline.windows)
    caption = (
        f"{timeline.model} · {timeline.labelset} · {timeline.duration:.1f} s · {windows} · "
        f"{count} window{'s' * (count != 1)}" + (", merged" if merged else "")
    )
    console.print(escape(caption), style="dim", overflow="fold")


def write_timeline_json(timeline: Timeline, segments: Sequence[Segment], merged: bool, stream: TextIO) -> None:
    json.dump(timeline.to_record(segments, merged), stream, indent=2, ensure_ascii=False)
    stream.write("\n")


def write_timeline_jsonl(timeline: Timeline, segments: Sequence[Segment], merged: bool, stream: TextIO) -> None:
    for segment in segments:
        record = {"path": timeline.path, "model": timeline.model, "labelset": timeline.labelset}
        stream.write(json.dumps(record | segment.to_record(), ensure_ascii=False) + "\n")
    stream.flush()


def write_timeline_csv(timeline: Timeline, segments: Sequence[Segment], merged: bool, stream: TextIO) -> None:
    writer = csv.writer(stream)
    writer.writerow(TIMELINE_CSV_COLUMNS)
    for segment in segments:
        record = segment.to_record()
        top_k = json.dumps([[p.label, round(p.probability, 6)] for p in segment.predictions], ensure_ascii=False)
        row = [timeline.path, record["start"], record["end"], record["start_ms"], record["end_ms"]]
        row += [segment.label, f"{segment.probability:.6f}", segment.windows, top_k, tags_cell(segment.tags)]
        writer.writerow([neutralise_formula(cell) for cell in row])
    stream.flush()


# Each gets the timeline, its segments (merged or raw windows), whether they are merged, a stream;
# the editing formats return warnings (output.editing: a variable frame rate, rates converted).
TIMELINE_WRITERS: dict[str, Callable[[Timeline, Sequence[Segment], bool, TextIO], Sequence[str] | None]] = {
    "table": write_timeline_table,
    "json": write_timeline_json,
    "jsonl": write_timeline_jsonl,
    "csv": write_timeline_csv,
    "srt": write_srt,
    "vtt": write_vtt,
    "chapters": write_chapters,
    **{fmt: timeline_writer(fmt) for fmt in EDIT_FORMATS},
}
TIMELINE_FORMATS = tuple(TIMELINE_WRITERS)
EXTENSION_ALIASES = {extension: "chapters" for extension in CHAPTER_EXTENSIONS}  # formats not named by extension
# The format an -o file's extension names, whichever command writes it (``x.srt``: srt; ``x.table`` names none).
EXTENSION_FORMATS = {name: name for name in (*FORMATS, *TIMELINE_FORMATS) if name != "table"} | EXTENSION_ALIASES


# --- search hits (`xclip search`) ---------------------------------------------------------------

SEARCH_CSV_COLUMNS = ("rank", "path", "score")


def write_search(hits: Sequence[SearchHit], query: str, output_format: str, stream: TextIO) -> None:
    """Ranked hits as a table, JSON, JSONL or CSV."""
    records = [hit.to_record(rank) for rank, hit in enumerate(hits, start=1)]
    if output_format == "json":
        json.dump({"query": query, "hits": records}, stream, indent=2, ensure_ascii=False)
        stream.write("\n")
    elif output_format == "jsonl":
        for record in records:
            stream.write(json.dumps({"query": query} | record, ensure_ascii=False) + "\n")
    elif output_format == "csv":
        writer = csv.writer(stream)
        writer.writerow(SEARCH_CSV_COLUMNS)
        writer.writerows(
            [[record["rank"], neutralise_formula(record["path"]), f"{record['score']:.6f}"] for record in records]
        )
    else:
        from rich.markup import escape
        from rich.table import Table

        table = Table(title=escape(f"search: {query}"), title_justify="left")
        table.add_column("rank", justify="right")
        table.add_column("path")
        table.add_column("score", justify="right")
        for record in records:
            table.add_row(str(record["rank"]), escape(record["path"]), f"{record['score']:.4f}")
        data_console(stream).print(table)
    stream.flush()


SEARCH_FORMATS = ("table", "json", "jsonl", "csv")
MOMENT_CSV_COLUMNS = tuple(Moment("", "", 0, 0, 0, (0, 0)).to_record(1))


def write_moments(moments: Sequence[Moment], output_format: str, stream: TextIO, queries: Sequence[str] = ()) -> None:
    """Moments (several queries: each query's, best first, ranked from 1) as a table, JSON
    (one object per query of ``queries``, none found included), JSONL or CSV; times in seconds
    and milliseconds."""
    records: list[dict[str, Any]] = []
    for moment in moments:
        rank = 1 if not records or records[-1]["query"] != moment.query else records[-1]["rank"] + 1
        records.append(moment.to_record(rank))
    if output_format == "json":
        asked = list(dict.fromkeys([*queries, *(record["query"] for record in records)]))
        grouped = [{"query": q, "moments": [r for r in records if r["query"] == q]} for q in asked]
        json.dump(grouped, stream, indent=2, ensure_ascii=False)
        stream.write("\n")
    elif output_format == "jsonl":
        stream.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    elif output_format == "csv":
        writer = csv.writer(stream)
        writer.writerow(MOMENT_CSV_COLUMNS)
        text = ("query", "path")  # numbers stay numbers: a negative score is no formula
        cells = [{**r, **{c: neutralise_formula(r[c]) for c in text}, "score": f"{r['score']:.6f}"} for r in records]
        writer.writerows([[cell[c] for c in MOMENT_CSV_COLUMNS] for cell in cells])
    else:
        from rich.markup import escape
        from rich.table import Table

        table = Table(title="search: moments", title_justify="left")
        for column, justify in (("query", "left"), ("rank", "right"), ("path", "left"), ("from", "right"),
                                ("to", "right"), ("score", "right")):  # fmt: skip
            table.add_column(column, justify=justify)  # type: ignore[arg-type]
        for record in records:
            times = (clock(record["start"]), clock(record["end"]))
            table.add_row(escape(record["query"]), str(record["rank"]), escape(record["path"]), *times,
                          f"{record['score']:.4f}")  # fmt: skip
        data_console(stream).print(table)
    stream.flush()


# --- evaluation reports (`xclip eval`) ----------------------------------------------------------


def write_multilabel_report(report: MultiLabelReport, labelset: str, output_format: str, stream: TextIO) -> None:
    """``eval --multi-label``: mAP and, per label, AP and precision/recall/F1 at its threshold."""
    if output_format == "json":
        json.dump(report.to_record(labelset), stream, indent=2, ensure_ascii=False)
        stream.write("\n")
        return
    from rich.markup import escape
    from rich.table import Table

    console = data_console(stream)
    table = Table(title=escape(f"{labelset}: per label (--multi-label)"), title_justify="left")
    columns = ("label", "positives", "AP", "threshold", "precision", "recall", "F1")
    for name in columns:
        table.add_column(name, justify="left" if name == "label" else "right")
    for m in report.per_label:
        ap = "no positives" if m.ap is None else f"{m.ap:.3f}"
        row = (m.positives, ap, f"{m.threshold:.3g}", f"{m.precision:.3f}", f"{m.recall:.3f}", f"{m.f1:.3f}")
        table.add_row(escape(m.label), *map(str, row))
    console.print(table)
    mean_ap = "n/a (no label has a positive video)" if report.mean_ap is None else f"{report.mean_ap:.3f}"
    failed = f", {report.failed} failed (left out)" if report.failed else ""
    console.print(f"mAP {mean_ap} · {report.videos} videos{failed}", markup=False)


def write_eval_report(report: EvalReport, labelset: str, output_format: str, stream: TextIO) -> None:
    """Overall and per-class accuracy as a table or one JSON object."""
    if output_format == "json":
        json.dump(report.to_record(labelset), stream, indent=2, ensure_ascii=False)
        stream.write("\n")
        return
    from rich.markup import escape
    from rich.table import Table

    console = data_console(stream)
    table = Table(title=escape(f"{labelset}: per class"), title_justify="left")
    for name, justify in (("class", "left"), ("videos", "right"), ("top-1", "right"), ("top-5", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for score in report.per_class:
        table.add_row(escape(score.label), str(score.videos), f"{score.top1:.1%}", f"{score.top5:.1%}")
    console.print(table)
    failed = f", {report.failed} failed (left out)" if report.failed else ""
    console.print(
        f"top-1 {report.top1:.2%} · top-5 {report.top5:.2%} · mean class top-1 {report.mean_class_top1:.2%} "
        f"· {report.videos} videos{failed}",
        markup=False,
    )


# What this tool's outputs begin with: records (JSON array, JSONL, CSV), timelines and search
# hits in each form, Rich tables, OTIO and FCPXML timelines. Subtitles and chapters are
# recognised by their cues instead, EDLs by the line that follows each event.
_RECORD_START = r'\{\s*"path":\s*"(?:[^"\\]|\\.)*",\s*"(?:resolved_path|status|model)":'  # results, timelines
_OUR_STARTS = re.compile(
    rf'\A(?:\[\s*(?:\]|{_RECORD_START})|{_RECORD_START}|\{{\s*"query":|path,status[,\r\n]|path,start,end,'
    r"|rank,path,score|query,rank,path|rank,query,path,|\[\s*\{\s*\"query\":|\{\s*\"rank\":\s*\d+,\s*\"query\":"
    r"|(?:[^\n]*\n){0,8}┏━|" + EDIT_STARTS + ")"
)
_CUE_TEXT = re.compile(r"^.+ \d+%(?:, .+ \d+%)*$")  # "cooking 65%", "cooking 65%, dancing 25%"
_CUE_TIMING = re.compile(r"^(?:\d+:)?\d\d:\d\d[,.]\d{3} --> ")
SNIFF_BYTES = 65536  # enough of a file to tell whose it is


def holds_xclip_output(path: Path) -> bool:
    """Whether writing over ``path`` loses nothing a person made: it is empty, or begins as an
    output of this tool does (results, timelines or search hits in any format, tables), or is a
    subtitle or chapter file whose every cue is a timeline's ('label 65%'), or an EDL of ours."""
    with open(path, "rb") as handle:
        data = handle.read(SNIFF_BYTES)
    head = data.decode("utf-8", "replace")
    if not head.strip() or _OUR_STARTS.match(head):
        return True
    lines = [line.strip() for line in head.splitlines()]
    if len(data) == SNIFF_BYTES:
        lines = lines[:-1]  # cut off where the read ended
    if not lines:
        return False
    if lines[0].startswith("TITLE:"):
        return holds_our_edl(lines)
    if lines[0] == ";FFMETADATA1":
        texts = [line[len("title=") :] for line in lines if line.startswith("title=")]
    elif lines[0].lstrip("\ufeff") == "WEBVTT" or lines[0].isdigit():
        texts = [line for line in lines[1:] if line and not line.isdigit() and not _CUE_TIMING.match(line)]
    else:
        return False
    return bool(texts) and all(_CUE_TEXT.match(text) for text in texts)
