"""``xclip classify``: named videos, an index, or through a server (``xclip scan`` is ``cli.scan``)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from xclip_cli.cli.common import (
    check_no_folders,
    check_replaceable,
    check_some_input_exists,
    check_writable,
    display_path,
    expand_stdin,
    finish,
    load_runner,
    open_output,
    pick_format,
    report_problems,
    set_verbose,
    write_all,
)
from xclip_cli.cli.options import (
    BackendOpt,
    BatchOpt,
    ClipsOpt,
    CropsOpt,
    FormatOpt,
    LabelsOpt,
    MultiLabelOpt,
    OptionalDeviceOpt,
    OptionalModelOpt,
    OptionalPrecisionOpt,
    OptionalSamplingOpt,
    OutputOpt,
    ReplaceOpt,
    TimeoutOpt,
    TopKOpt,
    VerboseOpt,
    WorkersOpt,
    time_option,
)
from xclip_cli.errors import UsageError
from xclip_cli.labels import LabelSet, check_scorable, resolve_labels
from xclip_cli.model.checkpoints import DEFAULT_MODEL
from xclip_cli.options import ClassifyOptions
from xclip_cli.output.writers import WRITERS, Writer

if TYPE_CHECKING:
    from xclip_cli.jobs.early import EarlyDecode


def classify(
    videos: Annotated[
        list[str] | None,
        typer.Argument(metavar="[VIDEOS]...", help="Video files; '-' reads paths from stdin, one per line."),
    ] = None,
    labels: LabelsOpt = "kinetics400",
    model: OptionalModelOpt = None,
    top_k: TopKOpt = 5,
    output_format: FormatOpt = None,
    output: OutputOpt = None,
    overwrite: ReplaceOpt = False,
    device: OptionalDeviceOpt = None,
    start: Annotated[float | None, time_option("Sample from this time on (seconds, MM:SS or HH:MM:SS).")] = None,
    end: Annotated[float | None, time_option("Sample up to this time (seconds, MM:SS or HH:MM:SS).")] = None,
    batch_size: BatchOpt = 1,
    workers: WorkersOpt = 2,
    precision: OptionalPrecisionOpt = None,
    timeout: TimeoutOpt = None,
    clips: ClipsOpt = 1,
    crops: CropsOpt = 1,
    sampling: OptionalSamplingOpt = None,
    multi_label: MultiLabelOpt = False,
    index: Annotated[
        Path | None, typer.Option(help="Score the videos of an `xclip embed` index instead: nothing is decoded.")
    ] = None,
    server: Annotated[
        str | None, typer.Option(envvar="XCLIP_SERVER", help="Send the work to a running `xclip serve` (its URL).")
    ] = None,
    token: Annotated[
        str | None, typer.Option(envvar="XCLIP_TOKEN", help="With --server: the token the server was started with.")
    ] = None,
    backend: BackendOpt = "auto",
    verbose: VerboseOpt = False,
) -> None:
    """Classify videos against a label set and print the top labels."""
    set_verbose(verbose)
    options = ClassifyOptions(
        top_k=top_k, start=start, end=end, batch_size=batch_size, workers=workers, timeout=timeout, clips=clips,
        crops=crops, sampling=sampling or "exact", multi_label=multi_label,
    )  # fmt: skip
    check_writable(output, videos or [])
    check_replaceable(output, overwrite)
    writer_class = WRITERS[pick_format(output_format, output, "classify")]
    labelset = resolve_labels(labels) if server is None else None  # a server resolves its own labels
    if labelset is not None:
        check_scorable(labelset, multi_label, f"--labels {labels}")
    run = (model, device, precision, backend)
    if index is not None:
        if videos:
            raise UsageError("give videos or --index, not both")
        assert labelset is not None, "--index with --server"
        return _classify_index(index, labelset, run, options, sampling, writer_class, output)
    if not videos:
        raise UsageError("no videos given (paths, '-' for stdin, or --index)")
    check_no_folders(videos)
    if server is not None:
        return _classify_remote(server, token, videos, labels, options, model, device, precision, writer_class, output)
    assert labelset is not None
    check_some_input_exists(videos)
    _classify_here(videos, labelset, run, options, writer_class, output)


def _classify_here(
    videos: list[str],
    labelset: LabelSet,
    run: tuple[str | None, str | None, str | None, str],
    options: ClassifyOptions,
    writer_class: type[Writer],
    output: Path | None,
) -> None:
    """In this process: the first video decodes while the model loads. ``run``: model, device,
    precision, backend (None: the defaults)."""
    from xclip_cli.jobs.classify import classify_videos

    model, device, precision, backend = run
    early = _start_early_decode(model or DEFAULT_MODEL, videos, options)
    # Known up front unless stdin names them: a few open the vision graph faster (OnnxRunner.open).
    count = None if "-" in videos else len(videos) * options.clips * options.crops
    runner = load_runner(model or DEFAULT_MODEL, device or "auto", precision or "fp32", backend, videos=count)
    ready = early.take(runner.num_frames, runner.preprocess) if early is not None else {}
    with open_output(output, fmt=writer_class.name) as stream:
        results = classify_videos(runner, expand_stdin(videos), labelset, options, ready)
        report = write_all(results, writer_class(stream, top_k=options.top_k), report_problems)
    if report.done == 0:
        raise UsageError("no videos to classify (stdin gave no paths)")
    finish(report, output)


def _classify_index(
    folder: Path,
    labelset: LabelSet,
    run: tuple[str | None, str | None, str | None, str],
    options: ClassifyOptions,
    sampling: str | None,
    writer_class: type[Writer],
    output: Path | None,
) -> None:
    """Score the videos of an ``xclip embed`` index. ``run``: model, device, precision, backend."""
    from xclip_cli.jobs.index import Index, score_index

    model, device, precision, backend = run
    index = Index(folder)
    # An index holds features of one view of each whole video, sampled as `xclip embed` was told.
    decoding = {"--start": options.start is not None, "--end": options.end is not None}
    decoding |= {"--clips": options.clips != 1, "--crops": options.crops != 1}
    named = [name for name, given in decoding.items() if given]
    if named:
        raise UsageError(f"{named[0]} cannot apply to --index: its videos were decoded by xclip embed (one view each)")
    if sampling not in (None, index.sampling):
        raise UsageError(f"{folder}: the index holds videos sampled with --sampling {index.sampling}, not {sampling}")
    top_k = options.top_k
    # An explicit --model wins (and is checked against the index).
    runner = load_runner(model or index.model, device or "auto", precision or "fp32", backend, videos=0)
    with open_output(output, fmt=writer_class.name) as stream:
        scored = score_index(runner, index, labelset, top_k, options.multi_label)
        results = (replace(result, path=display_path(result.path)) for result in scored)
        report = write_all(results, writer_class(stream, top_k=top_k), report_problems)
    if report.done == 0:
        raise UsageError(f"{folder}: the index holds no videos")
    finish(report, output)


def _classify_remote(
    server: str,
    token: str | None,
    videos: list[str],
    labels: str,
    options: ClassifyOptions,
    model: str | None,
    device: str | None,
    precision: str | None,
    writer_class: type[Writer],
    output: Path | None,
) -> None:
    """Through a running ``xclip serve``: what it cannot honour is refused before anything is written."""
    from xclip_cli.run.client import Server, check_labels, check_server, classify_remote, route, server_info
    from xclip_cli.run.protocol import check_token

    check_labels(labels, options.multi_label)
    remote = Server(server, check_token(token))
    info = server_info(remote)
    check_server(info, server, model, precision, device)
    for video in videos:
        if video != "-":
            route(info, video)  # a file it can neither read nor take is refused before anything is written
    with open_output(output, fmt=writer_class.name) as stream:
        results = classify_remote(remote, info, expand_stdin(videos), labels, options)
        report = write_all(results, writer_class(stream, top_k=options.top_k), report_problems)
    finish(report, output)


def _start_early_decode(model: str, videos: list[str], options: ClassifyOptions) -> EarlyDecode | None:
    """Decode the first named video while the model loads (see ``xclip_cli.jobs.early``)."""
    if not videos or videos[0] == "-" or not os.path.isfile(videos[0]):
        return None
    from xclip_cli.jobs.early import EarlyDecode

    return EarlyDecode(model, videos[0], options)
