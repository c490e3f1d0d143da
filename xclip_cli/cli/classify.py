"""``xclip classify`` (named videos, an index, or through a server) and ``xclip scan`` (folders)."""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..checkpoints import DEFAULT_MODEL
from ..errors import UsageError
from ..labels import LabelSet, resolve_labels
from ..locks import exclusive
from ..options import ClassifyOptions
from ..results import Report, VideoResult
from ..writers import WRITERS, Writer
from .common import (
    check_no_folders,
    check_replaceable,
    check_report,
    check_some_input_exists,
    check_writable,
    display_path,
    expand_stdin,
    finish,
    listed_paths,
    load_runner,
    nothing_to_do,
    open_output,
    pick_format,
    report_problems,
    resumable,
    set_verbose,
    write_all,
)
from .errors import say
from .options import (
    BackendOpt,
    BatchOpt,
    ClipsOpt,
    CropsOpt,
    DeviceOpt,
    ExtOpt,
    FoldersArg,
    FormatOpt,
    FromFileOpt,
    GlobOpt,
    LabelsOpt,
    ModelOpt,
    MultiLabelOpt,
    OptionalDeviceOpt,
    OptionalModelOpt,
    OptionalPrecisionOpt,
    OptionalSamplingOpt,
    OutputOpt,
    OverwriteOpt,
    PrecisionOpt,
    QuietOpt,
    RecursiveOpt,
    ReplaceOpt,
    ReportOpt,
    RetryFailedOpt,
    SamplingOpt,
    ScanFormatOpt,
    ShardOpt,
    TimeoutOpt,
    TopKOpt,
    VerboseOpt,
    WorkersOpt,
)

if TYPE_CHECKING:
    from ..early import EarlyDecode
    from ..scan import ScanPlan


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
    start: Annotated[float | None, typer.Option(min=0, help="Sample from this second on.")] = None,
    end: Annotated[float | None, typer.Option(min=0, help="Sample up to this second.")] = None,
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
        top_k=top_k,
        start=start,
        end=end,
        batch_size=batch_size,
        workers=workers,
        timeout=timeout,
        clips=clips,
        crops=crops,
        sampling=sampling or "exact",
        multi_label=multi_label,
    )
    check_writable(output, videos or [])
    check_replaceable(output, overwrite)
    writer_class = WRITERS[pick_format(output_format, output, "classify")]
    labelset = resolve_labels(labels) if server is None else None  # a server resolves its own labels
    if labelset is not None and len(labelset) == 1:
        say(f"xclip: warning: label set {labelset.name!r} has one label: every probability will be 1")
    if index is not None:
        if videos:
            raise UsageError("give videos or --index, not both")
        assert labelset is not None, "--index with --server"
        return _classify_index(
            index,
            labelset,
            model,
            device or "auto",
            precision or "fp32",
            backend,
            options,
            sampling,
            writer_class,
            output,
        )
    if not videos:
        raise UsageError("no videos given (paths, '-' for stdin, or --index)")
    check_no_folders(videos)
    if server is not None:
        return _classify_remote(server, token, videos, labels, options, model, device, precision, writer_class, output)
    assert labelset is not None
    check_some_input_exists(videos)
    from ..classify import classify_videos

    early = _start_early_decode(model or DEFAULT_MODEL, videos, options)
    runner = load_runner(model or DEFAULT_MODEL, device or "auto", precision or "fp32", backend)
    ready = early.take(runner.num_frames, runner.preprocess) if early is not None else {}
    with open_output(output, fmt=writer_class.name) as stream:
        results = classify_videos(runner, expand_stdin(videos), labelset, options, ready)
        report = write_all(results, writer_class(stream, top_k=top_k), report_problems)
    if report.done == 0:
        raise UsageError("no videos to classify (stdin gave no paths)")
    finish(report, output)


def _classify_index(
    folder: Path,
    labelset: LabelSet,
    model: str | None,
    device: str,
    precision: str,
    backend: str,
    options: ClassifyOptions,
    sampling: str | None,
    writer_class: type[Writer],
    output: Path | None,
) -> None:
    from ..index import Index, score_index

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
    runner = load_runner(model or index.model, device, precision, backend)  # an explicit --model wins (and is checked)
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
    from ..client import Server, check_labels, check_server, classify_remote, route, server_info
    from ..protocol import check_token

    check_labels(labels)
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
    """Decode the first named video while the model loads (see ``xclip_cli.early``)."""
    if not videos or videos[0] == "-" or not os.path.isfile(videos[0]):
        return None
    from ..early import EarlyDecode

    return EarlyDecode(model, videos[0], options)


def scan(
    folders: FoldersArg = None,
    labels: LabelsOpt = "kinetics400",
    output: OutputOpt = None,
    from_file: FromFileOpt = None,
    overwrite: OverwriteOpt = False,
    retry_failed: RetryFailedOpt = False,
    recursive: RecursiveOpt = True,
    glob: GlobOpt = None,
    ext: ExtOpt = None,
    shard: ShardOpt = None,
    quiet: QuietOpt = False,
    model: ModelOpt = DEFAULT_MODEL,
    top_k: TopKOpt = 5,
    output_format: ScanFormatOpt = None,
    device: DeviceOpt = "auto",
    batch_size: BatchOpt = 1,
    workers: WorkersOpt = 2,
    precision: PrecisionOpt = "fp32",
    timeout: TimeoutOpt = None,
    clips: ClipsOpt = 1,
    crops: CropsOpt = 1,
    sampling: SamplingOpt = "exact",
    multi_label: MultiLabelOpt = False,
    engine: Annotated[
        str,
        typer.Option(metavar="[local|ray]", help="local (this process), or ray: decode and classify on a Ray cluster."),
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(help="Ray cluster to join ('auto': the one running here; default RAY_ADDRESS or a new one)."),
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="With --engine ray: model actors.")] = 1,
    num_gpus: Annotated[float, typer.Option(min=0, help="With --engine ray: GPUs per model actor.")] = 0,
    cpus_per_actor: Annotated[float, typer.Option(min=0.01, help="With --engine ray: CPUs per model actor.")] = 1,
    decode_cpus: Annotated[
        float, typer.Option(min=0.01, help="With --engine ray: CPUs per decoding task (0.5: two per CPU).")
    ] = 1,
    report: ReportOpt = None,
    backend: BackendOpt = "auto",
    verbose: VerboseOpt = False,
) -> None:
    """Classify every video in folders (or a list) into a CSV; a rerun resumes where it stopped."""
    from ..media.discovery import collect_paths
    from ..scan import RunSettings, plan_scan
    from ..thumbnails import store_path

    set_verbose(verbose)
    options = ClassifyOptions(
        top_k=top_k,
        batch_size=batch_size,
        workers=workers,
        timeout=timeout,
        clips=clips,
        crops=crops,
        sampling=sampling,
        multi_label=multi_label,
    )
    fmt = pick_format(output_format, output, "scan", ("csv", "jsonl"), default="csv")
    ray = _ray_options(
        engine, ray_address, concurrency, num_gpus, cpus_per_actor, decode_cpus, device, precision, backend, verbose
    )
    if not folders and from_file is None:
        raise UsageError("give folders to scan or --from-file LIST")
    if retry_failed and (overwrite or output is None):
        raise UsageError("--retry-failed redoes the error rows of an -o results file; " + (
            "--overwrite starts it afresh: give one of them" if overwrite else "name the file with -o"
        ))  # fmt: skip
    labelset = resolve_labels(labels)
    check_writable(output)
    check_report(report, output)
    options = replace(options, thumbnails=report is not None)
    found = collect_paths(
        folders or [], listed_paths(from_file), recursive=recursive, pattern=glob, extensions=ext, shard=shard
    )
    from ..tagging import tags_digest

    settings = RunSettings(
        model,
        labelset.name,
        labelset.digest,
        options.views,
        top_k,
        len(labelset),
        precision,
        sampling,
        multi_label,
        tags_digest(labelset) if multi_label else "",
    )
    with exclusive(output), exclusive(store_path(report) if report is not None else None):
        plan = plan_scan(found, output, settings, fmt, overwrite, retry_failed)
        counts = _run_scan(
            plan, output, fmt, report, overwrite, model, labelset, options, ray, device, precision, backend, quiet
        )
    finish(counts, output if plan.todo else None, report, quiet=quiet)


def _run_scan(
    plan: ScanPlan,
    output: Path | None,
    fmt: str,
    report: Path | None,
    overwrite: bool,
    model: str,
    labelset: LabelSet,
    options: ClassifyOptions,
    ray: Any,
    device: str,
    precision: str,
    backend: str,
    quiet: bool,
) -> Report:
    """Classify what ``plan`` leaves to do, appending each row to ``output`` as it finishes;
    counts for the exit code cover the rows of earlier runs that stay (their errors too)."""
    from ..thumbnails import ThumbnailStore, store_path

    earlier = Report(done=plan.kept, failed=plan.kept_failed)
    if not plan.todo:
        if output is not None and not output.exists():  # an empty shard still leaves its (header-only) file
            with open_output(output, locked=True) as stream:
                WRITERS[fmt](stream, top_k=options.top_k).close()
        if report is not None:  # the page of what the results file holds
            _write_scan_report(report, output, [])
        nothing_to_do(len(plan.paths), output, quiet, plan.kept_failed)
        return earlier
    from ..progress import ScanProgress

    data_out = sys.stdout
    # Ray prints worker failures to this process's stdout: keep it for the results alone.
    with contextlib.redirect_stdout(sys.stderr) if ray is not None else contextlib.nullcontext():
        results = _scan_results(model, plan.todo, labelset, options, ray, device, precision, backend)
        store = ThumbnailStore(store_path(report), overwrite) if report is not None else None
        finished: list[VideoResult] = []  # for a report of a scan to stdout (no file to read back)

        def each(result: VideoResult) -> None:
            progress.update(result)
            if store is not None:
                store.add(result.path, result.thumbnails)
                if output is None:
                    finished.append(result)

        try:
            with open_output(output, plan.appending, data_out, fmt, locked=True) as stream, resumable(output, report):
                writer = WRITERS[fmt](stream, appending=plan.appending, top_k=options.top_k)
                with ScanProgress(len(plan.todo), skipped=plan.skipped, quiet=quiet) as progress:
                    counts = write_all(results, writer, each)
        finally:
            if store is not None:
                store.close()
            if report is not None:  # also on Ctrl-C: the page of what is done (cheap)
                _write_scan_report(report, output, finished)
    return Report(done=counts.done + earlier.done, failed=counts.failed + earlier.failed)


def _write_scan_report(report: Path, output: Path | None, finished: list[VideoResult]) -> None:
    """The page of every video the results file holds (this run's and earlier runs'), or of
    this run's when the results went to stdout; thumbnails from the store beside the page."""
    from ..report import scan_report, write_report
    from ..scan import results_in
    from ..thumbnails import read_thumbnails, store_path

    rows = results_in(output) if output is not None else finished
    title = f"xclip scan: {output}" if output is not None else "xclip scan"
    write_report(scan_report(rows, read_thumbnails(store_path(report)), title), report)


def _ray_options(
    engine: str,
    address: str | None,
    concurrency: int,
    num_gpus: float,
    cpus_per_actor: float,
    decode_cpus: float,
    device: str,
    precision: str,
    backend: str,
    verbose: bool,
) -> Any:
    """``RayOptions`` for ``--engine ray`` (None for the local engine, where Ray options are refused)."""
    if engine not in ("local", "ray"):
        raise UsageError(f"--engine {engine!r}: expected local or ray")
    given = {
        "--ray-address": address is not None,
        "--concurrency": concurrency != 1,
        "--num-gpus": num_gpus != 0,
        "--cpus-per-actor": cpus_per_actor != 1,
        "--decode-cpus": decode_cpus != 1,
    }
    if engine == "local":
        named = [name for name, is_set in given.items() if is_set]
        if named:
            raise UsageError(f"{named[0]} needs --engine ray")
        return None
    from ..ray_engine import RayOptions, import_ray

    import_ray()  # before anything loads: a missing extra is a usage error
    return RayOptions(
        address=address,
        concurrency=concurrency,
        num_gpus=num_gpus,
        cpus_per_actor=cpus_per_actor,
        decode_cpus=decode_cpus,
        device=device,
        precision=precision,
        backend=backend,
        verbose=verbose,
    )


def _scan_results(
    model: str,
    todo: tuple[str, ...],
    labelset: LabelSet,
    options: ClassifyOptions,
    ray: Any,
    device: str,
    precision: str,
    backend: str,
) -> Any:
    if ray is not None:
        from ..ray_engine import classify_videos_on_ray

        return classify_videos_on_ray(model, list(todo), labelset, options, ray, say)
    from ..classify import classify_videos

    return classify_videos(load_runner(model, device, precision, backend), todo, labelset, options)
