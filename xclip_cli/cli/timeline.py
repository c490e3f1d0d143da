"""``xclip timeline``: what happens when, in one video."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer

from xclip_cli.cli.common import (
    PLOT_EXTENSIONS,
    check_extension,
    check_replaceable,
    check_report,
    check_some_input_exists,
    check_writable,
    finish,
    load_runner,
    open_output,
    pick_format,
    set_verbose,
)
from xclip_cli.cli.errors import say
from xclip_cli.cli.options import (
    BackendOpt,
    DeviceOpt,
    LabelsOpt,
    ModelOpt,
    MultiLabelOpt,
    OutputOpt,
    PlotOpt,
    PrecisionOpt,
    ReplaceOpt,
    ReportOpt,
    ShotsOpt,
    StrideOpt,
    TimeoutOpt,
    VerboseOpt,
    WindowOpt,
    choices,
)
from xclip_cli.labels import check_scorable, resolve_labels
from xclip_cli.model.checkpoints import DEFAULT_MODEL
from xclip_cli.options import TimelineOptions
from xclip_cli.output.editing import EDIT_FORMATS, require_edit_format
from xclip_cli.output.timecodes import CUE_FORMATS, CUE_TOP_K
from xclip_cli.output.writers import EXTENSION_ALIASES, TIMELINE_FORMATS, TIMELINE_WRITERS
from xclip_cli.results import Timeline


def timeline(
    video: Annotated[str, typer.Argument(metavar="VIDEO", help="The video to follow over time.")],
    labels: LabelsOpt = "kinetics400",
    model: ModelOpt = DEFAULT_MODEL,
    window: WindowOpt = None,
    stride: StrideOpt = None,
    merge: Annotated[bool, typer.Option(help="Merge consecutive windows with the same top label.")] = True,
    shots: ShotsOpt = False,
    top_k: Annotated[
        int | None,
        typer.Option("--top-k", "-k", min=1, help="Labels kept per segment [default: 3; srt, vtt, chapters: 1]."),
    ] = None,
    output_format: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            metavar=choices(TIMELINE_FORMATS),
            help="Output format; otio, edl, fcpxml: for editing tools "
            "[default: from the -o extension (.srt, .vtt, .edl, ...; .ffmetadata: chapters), else table].",
        ),
    ] = None,
    output: OutputOpt = None,
    overwrite: ReplaceOpt = False,
    plot: PlotOpt = None,
    report: ReportOpt = None,
    multi_label: MultiLabelOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
    device: DeviceOpt = "auto",
    batch_size: Annotated[int, typer.Option(min=1, help="Windows per vision-encoder call (more helps on GPUs).")] = 1,
    precision: PrecisionOpt = "fp32",
    timeout: TimeoutOpt = None,
    backend: BackendOpt = "auto",
    verbose: VerboseOpt = False,
) -> None:
    """Classify sliding windows of a video: a table of what happens when (or subtitles, chapters, an edit)."""
    set_verbose(verbose)
    fmt = pick_format(output_format, output, "timeline", TIMELINE_FORMATS, aliases=EXTENSION_ALIASES)
    if top_k is None:
        top_k = CUE_TOP_K if fmt in CUE_FORMATS else 3
    options = TimelineOptions(
        window=window, stride=stride, top_k=top_k, batch_size=batch_size, timeout=timeout,
        thumbnails=report is not None, shots=shots, multi_label=multi_label,
    )  # fmt: skip
    if fmt in EDIT_FORMATS:
        require_edit_format(fmt)  # before any work, as --shots below
    if shots:
        from xclip_cli.media.shots import require_scenedetect

        require_scenedetect()
    check_extension(plot, "--plot", PLOT_EXTENSIONS)
    check_report(report, output, plot)
    labelset = resolve_labels(labels)
    check_scorable(labelset, multi_label, f"--labels {labels}")
    for path in (output, plot):
        check_writable(path, [video])
    check_replaceable(output, overwrite)
    check_some_input_exists([video])
    from xclip_cli.jobs.timeline import build_timeline

    runner = load_runner(model, device, precision, backend)
    with _video_time_progress(quiet) as progress:
        result = build_timeline(runner, video, labelset, options, on_progress=progress)
    for warning in result.warnings:
        say(f"xclip: warning: {video}: {warning}")
    _write_timeline(result, fmt, merge, top_k, (output, plot, report))
    finish(None, output, plot, report, quiet=quiet)


def _write_timeline(
    result: Timeline, fmt: str, merge: bool, top_k: int, outputs: tuple[Path | None, Path | None, Path | None]
) -> None:
    """The timeline in ``fmt`` (to -o or stdout), and the --plot picture and --report page if asked."""
    output, plot, report = outputs
    segments = result.segments(merge=merge, top_k=top_k)
    with open_output(output, fmt=fmt) as stream:
        notes = TIMELINE_WRITERS[fmt](result, segments, merge, stream)
    for note in notes or ():  # the editing formats': a variable frame rate, rates converted
        say(f"xclip: warning: {note}")
    if plot is not None:
        from xclip_cli.output.plot import plot_timeline

        plot_timeline(result, segments, plot)
    if report is not None:
        from xclip_cli.output.report import timeline_report, write_report

        shown = segments if top_k >= 3 else result.segments(merge=merge, top_k=3)  # the page shows 3 labels at least
        write_report(timeline_report(result, shown, merge), report)


@contextlib.contextmanager
def _video_time_progress(quiet: bool) -> Iterator[Callable[[float, float], None]]:
    """A bar over video seconds on a terminal's stderr; a no-op callback otherwise."""
    if quiet or not sys.stderr.isatty():
        yield lambda done, total: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("Timeline"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f} s"))
    with Progress(*columns, TimeRemainingColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("timeline", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)
