"""``xclip eval``: accuracy of a label set on labelled videos, resumable."""

from __future__ import annotations

import contextlib
import json
import sys
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
from xclip_cli.labels import LabelSet, resolve_labels
from xclip_cli.model.checkpoints import DEFAULT_MODEL
from xclip_cli.options import ClassifyOptions
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
    from xclip_cli.jobs.evaluate import (
        TOP_K,
        evaluate,
        plan_evaluation,
        protocol_views,
        run_evaluation,
        write_confusion_csv,
    )
    from xclip_cli.output.writers import write_eval_report

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
    check_extension(fit_thresholds, "--fit-thresholds", ("yaml", "yml"))
    if fit_thresholds is not None and not multi_label:
        raise UsageError("--fit-thresholds needs --multi-label")
    labelset = resolve_labels(labels)
    with exclusive(output):  # one writer: a second eval into the same -o is refused
        if multi_label:
            if confusion is not None or plot is not None:
                raise UsageError("--confusion and --plot are for single-label eval, not --multi-label")
            return _evaluate_tags(
                data, labelset, model, options, precision, device, backend, output, overwrite, fit_thresholds,
                output_format, quiet,
            )  # fmt: skip
        plan = plan_evaluation(data, labelset, model, options, precision, output, overwrite)  # before any decoding
        for path in (output, confusion, plot):
            check_writable(path, [video.path for video in plan.dataset])
        rows = list(plan.kept)
        if plan.todo:
            from xclip_cli.cli.progress import ScanProgress
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
    precision: str,
    device: str,
    backend: str,
    output: Path | None,
    overwrite: bool,
    fit_to: Path | None,
    output_format: str,
    quiet: bool,
) -> None:
    """``eval --multi-label``: AP, mAP and P/R/F1 at the thresholds in use; fitted thresholds."""
    import numpy as np

    from xclip_cli.jobs.evaluate import labelset_id
    from xclip_cli.jobs.evaluate_tags import (
        PREDICTION_COLUMNS,
        compute_multilabel_metrics,
        fit_thresholds,
        fitted_labelset_yaml,
        kept_rows,
        load_multilabel_manifest,
        prediction_row,
        truth_matrix,
    )
    from xclip_cli.jobs.tagging import background_digest, thresholds
    from xclip_cli.output.writers import write_multilabel_report
    from xclip_cli.store.results_file import video_identity
    from xclip_cli.store.table import AppendOnlyCsv

    if data.is_dir():
        raise UsageError(f"{data}: --multi-label reads a path,labels manifest (labels ';'-separated), not a folder")
    videos = load_multilabel_manifest(data, labelset)  # before any decoding: unknown labels stop here
    for path in (output, fit_to):
        check_writable(path, [video.path for video in videos])
    settings = {
        "labelset": labelset_id(labelset),
        "model": model,
        "views": str(options.views),
        "precision": precision,
        "sampling": options.sampling,
        "background": background_digest(labelset),
    }
    if output is not None and overwrite:
        output.unlink(missing_ok=True)
    kept = kept_rows(output, videos, settings) if output is not None else []
    done = {video_identity(row["path"]): row for row in kept}  # a video named another way is still done
    todo = [video for video in videos if video_identity(video.path) not in done]
    rows = {path: (row["status"], row["scores"]) for path, row in done.items()}
    if todo:
        from xclip_cli.cli.progress import ScanProgress
        from xclip_cli.jobs.classify import classify_videos

        runner = load_runner(model, device, precision, backend)
        tagged = replace(options, multi_label=True)
        results = classify_videos(runner, [video.path for video in todo], labelset, tagged)
        by_path = {video.path: video for video in todo}
        with contextlib.ExitStack() as stack:
            table = stack.enter_context(AppendOnlyCsv(output, PREDICTION_COLUMNS)) if output is not None else None
            progress = stack.enter_context(ScanProgress(len(todo), skipped=len(kept), quiet=quiet))
            stack.enter_context(resumable(output))
            for result in results:
                row = prediction_row(
                    by_path[result.path], result.status, result.label_scores, result.error or "", settings
                )
                rows[video_identity(result.path)] = (row[2], row[3])
                if table is not None:
                    table.write_rows([row])
                progress.update(result)
    scored = [video for video in videos if rows[video_identity(video.path)][0] == "ok"]
    scores = np.array([json.loads(rows[video_identity(video.path)][1]) for video in scored], dtype=np.float64).reshape(
        len(scored), len(labelset)
    )
    truth = truth_matrix(scored, labelset)
    report = compute_multilabel_metrics(
        scores, truth, labelset.names, thresholds(labelset), failed=len(videos) - len(scored)
    )
    write_multilabel_report(report, labelset.name, output_format, sys.stdout)
    if fit_to is not None:
        fits = fit_thresholds(scores, truth, labelset.names)
        try:
            fit_to.write_text(fitted_labelset_yaml(labelset, fits, str(data)), encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"{fit_to}: cannot write ({exc.strerror or exc})") from None
    finish(None, output, fit_to, quiet=quiet)
