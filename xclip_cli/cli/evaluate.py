"""``xclip eval``: accuracy of a label set on labelled videos, resumable."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from xclip_cli.cli.common import (
    PLOT_EXTENSIONS,
    check_extension,
    check_writable,
    finish,
    load_runner,
    resumable,
    set_verbose,
)
from xclip_cli.cli.options import (
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
from xclip_cli.errors import OutputError, UsageError
from xclip_cli.labels import LabelSet, check_scorable, resolve_labels
from xclip_cli.model.checkpoints import DEFAULT_MODEL
from xclip_cli.options import ClassifyOptions
from xclip_cli.results import VideoResult
from xclip_cli.store.locks import exclusive


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
    multi_label: Annotated[
        bool,
        typer.Option(
            "--multi-label", help="Score tags: DATA is a path,labels manifest (labels ';'-separated, or none)."
        ),
    ] = False,
    fit_thresholds: Annotated[
        Path | None,
        typer.Option(help="With --multi-label: write the label set here with per-label thresholds of best F1."),
    ] = None,
    quiet: QuietOpt = False,
    device: DeviceOpt = "auto",
    workers: WorkersOpt = 2,
    precision: PrecisionOpt = "fp32",
    timeout: TimeoutOpt = None,
    backend: BackendOpt = "auto",
    verbose: VerboseOpt = False,
) -> None:
    """Measure top-1, top-5 and per-class accuracy of a label set on labelled videos."""
    from xclip_cli.jobs.evaluate import TOP_K, protocol_views

    set_verbose(verbose)
    clips, crops = protocol_views(protocol, clips, crops)
    options = ClassifyOptions(
        top_k=TOP_K, workers=workers, timeout=timeout, clips=clips, crops=crops, sampling=sampling
    )
    if output_format not in ("table", "json"):
        raise UsageError(f"--format {output_format}: eval reports as table or json")
    for path, option, extensions in (
        (output, "-o", ("csv",)), (confusion, "--confusion", ("csv",)), (plot, "--plot", PLOT_EXTENSIONS),
        (fit_thresholds, "--fit-thresholds", ("yaml", "yml")),
    ):  # fmt: skip
        check_extension(path, option, extensions)
    if fit_thresholds is not None and not multi_label:
        raise UsageError("--fit-thresholds needs --multi-label")
    if multi_label and (confusion is not None or plot is not None):
        raise UsageError("--confusion and --plot are for single-label eval, not --multi-label")
    labelset = resolve_labels(labels)
    check_scorable(labelset, multi_label, f"--labels {labels}")
    run = (device, precision, backend)
    with exclusive(output):  # one writer: a second eval into the same -o is refused
        if multi_label:
            return _evaluate_tags(
                data, labelset, model, options, run, output, overwrite, fit_thresholds, output_format, quiet
            )
        _evaluate_classes(
            data, labelset, model, options, run, output, overwrite, (confusion, plot), output_format, quiet
        )


def _evaluate_classes(
    data: Path,
    labelset: LabelSet,
    model: str,
    options: ClassifyOptions,
    run: tuple[str, str, str],
    output: Path | None,
    overwrite: bool,
    pictures: tuple[Path | None, Path | None],
    output_format: str,
    quiet: bool,
) -> None:
    """Top-1, top-5, per class; ``pictures``: the --confusion CSV and the --plot heatmap."""
    from xclip_cli.cli.progress import ScanProgress
    from xclip_cli.jobs.evaluate import evaluate, plan_evaluation, run_evaluation, write_confusion_csv
    from xclip_cli.output.writers import write_eval_report

    device, precision, backend = run
    confusion, plot = pictures
    plan = plan_evaluation(data, labelset, model, options, precision, output, overwrite)  # before any decoding
    for path in (output, confusion, plot):
        check_writable(path, [video.path for video in plan.dataset])
    rows = list(plan.kept)
    if plan.todo:
        from xclip_cli.jobs.classify import classify_videos

        runner = load_runner(model, device, precision, backend)
        results = classify_videos(runner, [video.path for video in plan.todo], labelset, options)
        with ScanProgress(len(plan.todo), skipped=len(plan.kept), quiet=quiet) as progress, resumable(output):
            rows = run_evaluation(results, plan, progress.update)
    report = evaluate(rows, labelset)
    write_eval_report(report, labelset.name, output_format, sys.stdout)
    if confusion is not None:
        write_confusion_csv(report, confusion)
    if plot is not None:
        from xclip_cli.output.plot import plot_confusion

        plot_confusion(report, plot)
    finish(None, output, confusion, plot, quiet=quiet)


def _evaluate_tags(
    data: Path,
    labelset: LabelSet,
    model: str,
    options: ClassifyOptions,
    run: tuple[str, str, str],
    output: Path | None,
    overwrite: bool,
    fit_to: Path | None,
    output_format: str,
    quiet: bool,
) -> None:
    """``eval --multi-label``: AP, mAP and P/R/F1 at the thresholds in use; fitted thresholds.
    ``run``: device, precision, backend."""
    from xclip_cli.cli.progress import ScanProgress
    from xclip_cli.jobs.evaluate_tags import (
        fit_thresholds,
        fitted_labelset_yaml,
        plan_tag_evaluation,
        run_tag_evaluation,
    )
    from xclip_cli.output.writers import write_multilabel_report

    device, precision, backend = run
    plan = plan_tag_evaluation(data, labelset, model, options, precision, output, overwrite)  # before any decoding
    for path in (output, fit_to):
        check_writable(path, [video.path for video in plan.videos])
    results: Iterable[VideoResult] = ()
    if plan.todo:
        from xclip_cli.jobs.classify import classify_videos

        runner = load_runner(model, device, precision, backend)
        todo = [video.path for video in plan.todo]
        results = classify_videos(runner, todo, labelset, replace(options, multi_label=True))
    with (
        ScanProgress(len(plan.todo), skipped=len(plan.kept), quiet=quiet or not plan.todo) as progress,
        resumable(output),
    ):
        evaluation = run_tag_evaluation(plan, labelset, results, progress.update)
    write_multilabel_report(evaluation.report, labelset.name, output_format, sys.stdout)
    if fit_to is not None:
        fits = fit_thresholds(evaluation.scores, evaluation.truth, labelset.names)
        try:
            fit_to.write_text(fitted_labelset_yaml(labelset, fits, str(data)), encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"{fit_to}: cannot write ({exc.strerror or exc})") from None
    finish(None, output, fit_to, quiet=quiet)
