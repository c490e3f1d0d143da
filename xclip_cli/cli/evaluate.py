"""``xclip eval``: accuracy of a label set on labelled videos, resumable."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ..checkpoints import DEFAULT_MODEL
from ..errors import UsageError
from ..labels import resolve_labels
from ..options import ClassifyOptions
from .common import PLOT_EXTENSIONS, check_extension, check_writable, finish, load_runner, resumable, set_verbose
from .options import (
    BackendOpt,
    ClipsOpt,
    CropsOpt,
    DeviceOpt,
    LabelsOpt,
    ModelOpt,
    OverwriteOpt,
    PlotOpt,
    PrecisionOpt,
    QuietOpt,
    SamplingOpt,
    TimeoutOpt,
    VerboseOpt,
    WorkersOpt,
)


def evaluate_command(
    data: Annotated[Path, typer.Argument(metavar="DATA", help="A folder of class folders, or a path,label CSV/TSV.")],
    labels: LabelsOpt = "kinetics400",
    model: ModelOpt = DEFAULT_MODEL,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Per-video predictions CSV; a rerun resumes from it.")
    ] = None,
    overwrite: OverwriteOpt = False,
    confusion: Annotated[Path | None, typer.Option(help="Write the confusion matrix (CSV) here.")] = None,
    plot: PlotOpt = None,
    output_format: Annotated[
        str, typer.Option("--format", "-f", metavar="[table|json]", help="The report's format.")
    ] = "table",
    protocol: Annotated[
        str,
        typer.Option(
            metavar="[single|xclip]", help="single: one view; xclip: 4 clips x 3 crops, X-CLIP's test protocol."
        ),
    ] = "single",
    clips: ClipsOpt = 1,
    crops: CropsOpt = 1,
    sampling: SamplingOpt = "exact",
    quiet: QuietOpt = False,
    device: DeviceOpt = "auto",
    workers: WorkersOpt = 2,
    precision: PrecisionOpt = "fp32",
    timeout: TimeoutOpt = None,
    backend: BackendOpt = "auto",
    verbose: VerboseOpt = False,
) -> None:
    """Measure top-1, top-5 and per-class accuracy of a label set on labelled videos."""
    from ..evaluation import TOP_K, evaluate, plan_evaluation, protocol_views, run_evaluation, write_confusion_csv
    from ..writers import write_eval_report

    set_verbose(verbose)
    clips, crops = protocol_views(protocol, clips, crops)
    options = ClassifyOptions(
        top_k=TOP_K, workers=workers, timeout=timeout, clips=clips, crops=crops, sampling=sampling
    )
    if output_format not in ("table", "json"):
        raise UsageError(f"--format {output_format}: eval reports as table or json")
    check_extension(output, "-o", ("csv",))
    check_extension(confusion, "--confusion", ("csv",))
    check_extension(plot, "--plot", PLOT_EXTENSIONS)
    labelset = resolve_labels(labels)
    plan = plan_evaluation(data, labelset, model, options, precision, output, overwrite)  # before any decoding
    for path in (output, confusion, plot):
        check_writable(path, [video.path for video in plan.dataset])
    rows = list(plan.kept)
    if plan.todo:
        from ..classify import classify_videos
        from ..progress import ScanProgress

        runner = load_runner(model, device, precision, backend)
        results = classify_videos(runner, [video.path for video in plan.todo], labelset, options)
        with ScanProgress(len(plan.todo), skipped=len(plan.kept), quiet=quiet) as progress, resumable(output):
            rows = run_evaluation(results, plan, progress.update)
    report = evaluate(rows, labelset)
    write_eval_report(report, labelset.name, output_format, sys.stdout)
    if confusion is not None:
        write_confusion_csv(report, confusion)
    if plot is not None:
        from ..plot import plot_confusion

        plot_confusion(report, plot)
    finish(None, output, confusion, plot, quiet=quiet)
