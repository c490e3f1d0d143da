"""``xclip classify`` (named videos, an index, or through a server) and ``xclip scan`` (folders)."""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from xclip_cli.cli.common import (
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
from xclip_cli.cli.errors import say
from xclip_cli.cli.options import (
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
    time_option,
)
from xclip_cli.errors import UsageError
from xclip_cli.labels import LabelSet, check_scorable, resolve_labels
from xclip_cli.model.checkpoints import DEFAULT_MODEL
from xclip_cli.options import ClassifyOptions
from xclip_cli.output.writers import WRITERS, Writer
from xclip_cli.results import VideoResult

if TYPE_CHECKING:
    from xclip_cli.jobs.classify import Executor
    from xclip_cli.jobs.early import EarlyDecode
    from xclip_cli.jobs.scan import ScanPlan


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
    runner = load_runner(model or DEFAULT_MODEL, device or "auto", precision or "fp32", backend)
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
    runner = load_runner(model or index.model, device or "auto", precision or "fp32", backend)
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
    from xclip_cli.jobs.scan import ScanOptions, scan_videos
    from xclip_cli.media.discovery import collect_paths
    from xclip_cli.media.thumbnails import store_path

    set_verbose(verbose)
    classify = ClassifyOptions(
        top_k=top_k, batch_size=batch_size, workers=workers, timeout=timeout, clips=clips, crops=crops,
        sampling=sampling, multi_label=multi_label, thumbnails=report is not None,
    )  # fmt: skip
    fmt = pick_format(output_format, output, "scan", ("csv", "jsonl"), default="csv")
    ray = _ray_options(
        engine, ray_address, concurrency, num_gpus, cpus_per_actor, decode_cpus, device, precision, backend, verbose
    )
    if not folders and from_file is None:
        raise UsageError("give folders to scan or --from-file LIST")
    thumbnails = store_path(report) if report is not None else None
    options = ScanOptions(output, fmt, overwrite, retry_failed, thumbnails, classify)
    labelset = resolve_labels(labels)
    check_scorable(labelset, multi_label, f"--labels {labels}")
    check_writable(output)
    check_report(report, output)
    listed = listed_paths(from_file)
    found = collect_paths(folders or [], listed, recursive=recursive, pattern=glob, extensions=ext, shard=shard)
    progress = _ScanFeedback(output, quiet)
    data_out = sys.stdout
    # Ray prints worker failures to this process's stdout: keep it for the results alone.
    with contextlib.redirect_stdout(sys.stderr) if ray is not None else contextlib.nullcontext(), progress:
        try:
            with resumable(output, report):
                executor = _executor(model, device, precision, backend, ray)
                start, update = progress.start, progress.update
                summary = scan_videos(
                    found, labelset, executor, options, stream=data_out, on_plan=start, on_result=update
                )
        finally:
            if report is not None and progress.plan is not None:  # also on Ctrl-C: the page of what is done
                _write_scan_report(report, output, progress.finished)
    finish(summary.counts, output if summary.plan.todo else None, report, quiet=quiet)


class _ScanFeedback:
    """The scan's stderr: "nothing to do", or the progress bar; keeps this run's results for a
    report of a scan to stdout (no file to read back)."""

    def __init__(self, output: Path | None, quiet: bool) -> None:
        self.output, self.quiet = output, quiet
        self.plan: ScanPlan | None = None
        self.finished: list[VideoResult] = []
        self.stack = contextlib.ExitStack()
        self.bar: Any = None

    def start(self, plan: ScanPlan) -> None:
        from xclip_cli.cli.progress import ScanProgress

        self.plan = plan
        if not plan.todo:
            nothing_to_do(len(plan.paths), self.output, self.quiet, plan.kept_failed)
            return
        self.bar = self.stack.enter_context(ScanProgress(len(plan.todo), skipped=plan.skipped, quiet=self.quiet))

    def update(self, result: VideoResult) -> None:
        self.bar.update(result)
        if self.output is None:
            self.finished.append(result)

    def __enter__(self) -> _ScanFeedback:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stack.__exit__(*exc_info)  # the bar hears of an error: then no summary line


def _executor(model: str, device: str, precision: str, backend: str, ray: Any) -> Executor:
    """Where the scan runs: a Ray cluster (``ray``: its options), or this process."""
    if ray is not None:
        from xclip_cli.run.ray import RayExecutor

        return RayExecutor(model, ray, say)
    from xclip_cli.jobs.classify import LocalExecutor

    return LocalExecutor(model, precision, lambda: load_runner(model, device, precision, backend))


def _write_scan_report(report: Path, output: Path | None, finished: list[VideoResult]) -> None:
    """The page of every video the results file holds (this run's and earlier runs'), or of
    this run's when the results went to stdout; thumbnails from the store beside the page."""
    from xclip_cli.media.thumbnails import read_thumbnails, store_path
    from xclip_cli.output.report import scan_report, write_report
    from xclip_cli.store.results_file import results_in

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
    from xclip_cli.run.ray import RayOptions, import_ray

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
