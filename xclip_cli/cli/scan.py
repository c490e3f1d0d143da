"""``xclip scan``: every video in folders or a list into a results file that a rerun resumes;
with ``--watch``, the videos that arrive after it too."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from xclip_cli.cli.common import (
    check_report,
    check_writable,
    finish,
    listed_paths,
    load_runner,
    nothing_to_do,
    pick_format,
    resumable,
    set_verbose,
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
    FromFileOpt,
    GlobOpt,
    LabelsOpt,
    ModelOpt,
    MultiLabelOpt,
    OutputOpt,
    OverwriteOpt,
    PrecisionOpt,
    QuietOpt,
    RecursiveOpt,
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
from xclip_cli.errors import UsageError
from xclip_cli.labels import check_scorable, resolve_labels
from xclip_cli.media.watch import SETTLE
from xclip_cli.model.checkpoints import DEFAULT_MODEL
from xclip_cli.options import ClassifyOptions
from xclip_cli.results import VideoResult

if TYPE_CHECKING:
    from xclip_cli.jobs.classify import Executor
    from xclip_cli.jobs.scan import ScanPlan


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
    watch: Annotated[
        bool,
        typer.Option(
            help="Then keep watching the folders: classify each video that arrives once it is complete "
            "(Ctrl-C or SIGTERM stops)."
        ),
    ] = False,
    settle: Annotated[
        float, typer.Option(help="With --watch: seconds a file's size and time must stay the same before it is read.")
    ] = SETTLE,
    poll: Annotated[
        bool, typer.Option(help="With --watch: look at the folders every half second (network filesystems).")
    ] = False,
    reclassify_changed: Annotated[
        bool, typer.Option(help="With --watch: a file written again is classified again; its new row replaces the old.")
    ] = False,
) -> None:
    """Classify every video in folders (or a list) into a CSV; a rerun resumes where it stopped."""
    from xclip_cli.jobs.scan import ScanOptions, scan_videos
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
    thumbnails = store_path(report) if report else None
    options = ScanOptions(output, fmt, overwrite, retry_failed, thumbnails, classify, reclassify_changed)
    labelset = resolve_labels(labels)
    check_scorable(labelset, multi_label, f"--labels {labels}")
    check_writable(output)
    check_report(report, output)
    asked = (watch, settle, poll, reclassify_changed)
    found, watching = _find(folders, from_file, (recursive, glob, ext, shard), asked, quiet)
    progress = _ScanFeedback(output, quiet, watching is not None, report)
    data_out = sys.stdout
    # Ray prints worker failures to this process's stdout: keep it for the results alone.
    with _ray_prints(ray, verbose), progress:
        try:
            with resumable(output, report), _executing(model, (device, precision, backend), ray, watching) as executor:
                summary = scan_videos(
                    found, labelset, executor, options, stream=data_out, on_plan=progress.start,
                    on_result=progress.update, on_arrival=progress.grow, **(watching.more() if watching else {}),
                )  # fmt: skip
        finally:
            if report is not None and progress.plan is not None:  # also on Ctrl-C: the page of what is done
                _write_scan_report(report, output, progress.finished)
    finish(summary.counts, output if summary.plan.todo or summary.done else None, report, quiet=quiet)


def _find(
    folders: list[str] | None,
    from_file: str | None,
    finding: tuple[bool, str | None, str | None, str | None],
    asked: tuple[bool, float, bool, bool],
    quiet: bool,
) -> tuple[list[str], _Watching | None]:
    """The videos to scan now, and ``--watch``'s set-up (None without it)."""
    from xclip_cli.media.discovery import collect_paths

    if not folders and from_file is None:
        raise UsageError("give folders to scan or --from-file LIST")
    recursive, pattern, extensions, shard = finding

    def find(listed: Iterable[str] = ()) -> list[str]:
        return collect_paths(
            folders or [], listed, recursive=recursive, pattern=pattern, extensions=extensions, shard=shard
        )

    found = find(listed_paths(from_file))
    watching = _watching(asked, folders, from_file, finding, find, quiet)
    return (watching.first(found) if watching is not None else found), watching


class _Watching:
    """``--watch``: the files found now that are complete, the batches that arrive later, and
    the stop that SIGTERM sets (a service manager's stop: between two videos, exit 0)."""

    def __init__(self, folders: list[str], options: Any, name: Any, find: Any) -> None:
        import threading

        self.folders, self.options, self.name, self.find = folders, options, name, find
        self.stop = threading.Event()
        self.recent: list[str] = []

    def first(self, found: list[str]) -> list[str]:
        """The files found at the start that are complete; the rest settle like new ones."""
        from xclip_cli.media.watch import recently_changed

        self.recent = recently_changed(found, self.options.settle)
        recent = set(self.recent)
        return [path for path in found if path not in recent]

    def more(self) -> dict[str, Any]:
        """``scan_videos``'s arguments for what arrives: the batches, and the stop."""
        from xclip_cli.media.watch import arrivals

        batches = arrivals(self.folders, self.name, self.options, self.stop, self.find, settling=self.recent)
        return {"arrivals": batches, "stop": self.stop}


def _watching(
    asked: tuple[bool, float, bool, bool],
    folders: list[str] | None,
    from_file: str | None,
    finding: tuple[bool, str | None, str | None, str | None],
    find: Callable[[], list[str]],
    quiet: bool,
) -> _Watching | None:
    """``--watch``'s set-up (None without it); what it cannot do is refused before any work.
    ``asked``: --watch, --settle, --poll, --reclassify-changed; ``find`` lists the folders."""
    from xclip_cli.media.watch import WatchOptions

    watch, settle, poll, reclassify_changed = asked
    if not watch:
        given = [name for name, is_set in (("--settle", settle != SETTLE), ("--poll", poll)) if is_set]
        given += ["--reclassify-changed"] if reclassify_changed else []
        if given:
            raise UsageError(f"{given[0]} needs --watch")
        return None
    from xclip_cli.media.discovery import watched

    if not folders or from_file is not None:
        raise UsageError("--watch watches folders: give folders, not --from-file")
    recursive, pattern, extensions, shard = finding
    name = watched(folders, recursive=recursive, pattern=pattern, extensions=extensions, shard=shard)
    watching = _Watching(folders, WatchOptions(settle=settle, poll=poll), name, find)
    if not quiet:
        rule = f"a file is read once unchanged for {settle:g} s"
        say(f"xclip: watching {', '.join(folders)} ({rule}); Ctrl-C or SIGTERM stops")
    return watching


class _ScanFeedback:
    """The scan's stderr: "nothing to do", or the progress bar; keeps this run's results for a
    report of a scan to stdout (no file to read back)."""

    def __init__(self, output: Path | None, quiet: bool, watching: bool = False, report: Path | None = None) -> None:
        self.output, self.quiet, self.watching = output, quiet, watching
        self.live_report = report if watching else None  # rewritten as rows arrive
        self.plan: ScanPlan | None = None
        self.finished: list[VideoResult] = []
        self.stack = contextlib.ExitStack()
        self.bar: Any = None

    def start(self, plan: ScanPlan) -> None:
        from xclip_cli.cli.progress import ScanProgress

        self.plan = plan
        if not plan.todo and not self.watching:
            nothing_to_do(len(plan.paths), self.output, self.quiet, plan.kept_failed)
            return
        self.bar = self.stack.enter_context(ScanProgress(len(plan.todo), skipped=plan.skipped, quiet=self.quiet))

    def update(self, result: VideoResult) -> None:
        self.bar.update(result)
        if self.output is None:
            self.finished.append(result)
        if self.live_report is not None:
            _write_scan_report(self.live_report, self.output, self.finished)

    def grow(self, count: int) -> None:
        """``count`` more videos arrived (``--watch``)."""
        self.bar.grow(count)

    def __enter__(self) -> _ScanFeedback:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stack.__exit__(*exc_info)  # the bar hears of an error: then no summary line


@contextlib.contextmanager
def _ray_prints(ray: Any, verbose: bool) -> Iterator[None]:
    """Ray prints what its nodes report (worker tracebacks, retries) on this process's stdout,
    which carries results: to stderr with --verbose, else nowhere (the scan's one-line error
    and its summary say what happened)."""
    if ray is None:
        yield
        return
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(sys.stderr if verbose else devnull):
        yield


@contextlib.contextmanager
def _executing(model: str, how: tuple[str, str, str], ray: Any, watching: _Watching | None) -> Iterator[Executor]:
    """Where the scan runs: a Ray cluster (``ray``: its options) joined or started once for the
    whole scan (a watched one's batches too), or this process (``how``: device, precision,
    backend). Watching, SIGTERM sets the watch's stop meanwhile (installed after Ray's start,
    which sets its own handler; the previous one is put back)."""
    import signal

    with contextlib.ExitStack() as stack:
        if ray is not None:
            from xclip_cli.run.ray import RayExecutor

            executor: Executor = stack.enter_context(RayExecutor(model, ray, say).session())
        else:
            from xclip_cli.jobs.classify import LocalExecutor

            device, precision, backend = how
            executor = LocalExecutor(model, precision, lambda: load_runner(model, device, precision, backend))
        if watching is not None:
            previous = signal.signal(signal.SIGTERM, lambda *_: watching.stop.set())
            stack.callback(signal.signal, signal.SIGTERM, previous)
        yield executor


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
