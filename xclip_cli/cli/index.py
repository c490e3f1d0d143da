"""``xclip embed`` (decode and encode videos once into an index) and ``xclip search``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import typer

from xclip_cli.cli.common import (
    check_replaceable,
    check_report,
    check_writable,
    display_path,
    finish,
    listed_paths,
    load_runner,
    nothing_to_do,
    open_output,
    pick_format,
    resumable,
    set_verbose,
    write_all,
)
from xclip_cli.cli.errors import say
from xclip_cli.cli.options import (
    BackendOpt,
    DeviceOpt,
    ExtOpt,
    FoldersArg,
    FromFileOpt,
    GlobOpt,
    ModelOpt,
    OutputOpt,
    OverwriteOpt,
    PrecisionOpt,
    QuietOpt,
    RecursiveOpt,
    ReplaceOpt,
    SamplingOpt,
    ShardOpt,
    ShotsOpt,
    StrideOpt,
    TimeoutOpt,
    VerboseOpt,
    WindowOpt,
    WorkersOpt,
    choices,
)
from xclip_cli.errors import UsageError
from xclip_cli.model.checkpoints import DEFAULT_MODEL
from xclip_cli.options import ClassifyOptions, TimelineOptions
from xclip_cli.output.editing import EDIT_FORMATS, require_edit_format
from xclip_cli.output.writers import SEARCH_FORMATS

if TYPE_CHECKING:
    from xclip_cli.jobs.index import Index
    from xclip_cli.model.backend import Backend
    from xclip_cli.results import Moment


def embed(
    folders: FoldersArg = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="The index folder (created, or resumed).")] = Path(
        "xclip-index"
    ),
    from_file: FromFileOpt = None,
    overwrite: OverwriteOpt = False,
    windows: Annotated[
        bool, typer.Option("--windows", help="Store every window (as xclip timeline cuts them) for moment search.")
    ] = False,
    window: WindowOpt = None,
    stride: StrideOpt = None,
    shots: ShotsOpt = False,
    dtype: Annotated[
        str | None,
        typer.Option(
            metavar="[float16|float32]", help="Stored patch features [default: float16 with --windows, else float32]."
        ),
    ] = None,
    recursive: RecursiveOpt = True,
    glob: GlobOpt = None,
    ext: ExtOpt = None,
    shard: ShardOpt = None,
    quiet: QuietOpt = False,
    model: ModelOpt = DEFAULT_MODEL,
    device: DeviceOpt = "auto",
    workers: WorkersOpt = 2,
    precision: PrecisionOpt = "fp32",
    timeout: TimeoutOpt = None,
    sampling: SamplingOpt = "exact",
    backend: BackendOpt = "auto",
    verbose: VerboseOpt = False,
) -> None:
    """Decode and encode videos once into an index; search it or classify it later without decoding."""
    from xclip_cli.cli.progress import ScanProgress
    from xclip_cli.jobs.embed import plan_embedding
    from xclip_cli.media.discovery import collect_paths

    set_verbose(verbose)
    options = ClassifyOptions(workers=workers, timeout=timeout, sampling=sampling)
    cutting = TimelineOptions(window=window, stride=stride, shots=shots, timeout=timeout) if windows else None
    if not windows and (window is not None or stride is not None or shots):
        raise UsageError("--window, --stride and --shots cut videos for --windows; add it")
    if shots:
        from xclip_cli.media.shots import require_scenedetect

        require_scenedetect()
    if not folders and from_file is None:
        raise UsageError("give folders to index or --from-file LIST")
    found = collect_paths(
        folders or [], listed_paths(from_file), recursive=recursive, pattern=glob, extensions=ext, shard=shard
    )
    plan = plan_embedding(output, found, model, precision, options, cutting, dtype, overwrite)  # before any model
    if not plan.todo:
        return nothing_to_do(len(found), output, quiet)
    runner = load_runner(model, device, precision, backend)
    with ScanProgress(len(plan.todo), skipped=len(found) - len(plan.todo), quiet=quiet) as progress, resumable(output):
        report = write_all(plan.run(runner), None, progress.update)
    finish(report, output, quiet=quiet)


def search(
    index: Annotated[Path, typer.Argument(metavar="INDEX", help="An index folder built by xclip embed.")],
    queries: Annotated[list[str], typer.Argument(metavar="QUERY...", help="What to look for, in words.")],
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Videos (or moments) to list per query.")] = 10,
    min_score: Annotated[
        float | None, typer.Option(help="Moments: leave out windows scoring less (the logit classify reports).")
    ] = None,
    merge: Annotated[bool, typer.Option(help="Moments: merge neighbouring matching windows of a video.")] = True,
    exact: Annotated[
        bool, typer.Option("--exact", help="Moments: X-CLIP's full head on every window, not on the best candidates.")
    ] = False,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Checkpoint (default: the one the index was built with).")
    ] = None,
    output_format: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            metavar=choices((*SEARCH_FORMATS, *EDIT_FORMATS)),
            help="Output format [default: from -o, or table; otio, edl, fcpxml: moments as selects].",
        ),
    ] = None,
    output: OutputOpt = None,
    overwrite: ReplaceOpt = False,
    report: Annotated[
        Path | None,
        typer.Option(
            help="Moments: also write a self-contained HTML page, a card per moment with a link that plays it."
        ),
    ] = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "fp32",
    backend: BackendOpt = "auto",
    verbose: VerboseOpt = False,
) -> None:
    """Rank the videos of an index (or, built with --windows, the moments) by how well they match a text."""
    from xclip_cli.jobs.index import Index
    from xclip_cli.jobs.moments import MomentOptions

    set_verbose(verbose)
    output_format = pick_format(output_format, output, "search", (*SEARCH_FORMATS, *EDIT_FORMATS))
    opened = Index(index)
    moments = MomentOptions(top_k=top_k, min_score=min_score, merge=merge, exact=exact) if opened.windowed else None
    asked_moments = len(queries) > 1 or min_score is not None or not merge or exact or report is not None
    if moments is None and (asked_moments or output_format in EDIT_FORMATS):
        raise UsageError(f"{index}: holds whole videos: several queries, --min-score, --no-merge, --exact, --report "
                         f"and -f {'|'.join(EDIT_FORMATS)} are for moments (xclip embed --windows)")  # fmt: skip
    if any(not query.strip() for query in queries):
        raise UsageError("a query is empty")
    if output_format in EDIT_FORMATS:
        require_edit_format(output_format)  # before the model loads
    check_writable(output)
    check_replaceable(output, overwrite)
    check_report(report, output)
    runner = load_runner(model or opened.model, device, precision, backend, videos=0)  # stored features
    with open_output(output, fmt=output_format) as stream:
        found = _write_found(runner, opened, queries, moments or top_k, output_format, stream)
    if report is not None:
        _write_moments_report(report, runner, opened, queries, found)
    finish(None, output, report)


def _write_found(runner: Any, index: Any, queries: list[str], asked: Any, fmt: str, stream: TextIO) -> tuple[Any, ...]:
    """Moments (``asked``: their options), returned, or from a whole-video index the top ``asked`` videos."""
    from xclip_cli.jobs.index import search_index
    from xclip_cli.jobs.moments import search_moments
    from xclip_cli.output.editing import write_selects
    from xclip_cli.output.writers import write_moments, write_search

    if isinstance(asked, int):
        hits = search_index(runner, index, queries[0], asked)
        write_search([replace(hit, path=display_path(hit.path)) for hit in hits], queries[0], fmt, stream)
        return ()
    found = search_moments(runner, index, queries, asked)
    if fmt in EDIT_FORMATS:  # editors find the files by their absolute paths
        for warning in write_selects(found, fmt, stream):
            say(f"xclip: warning: {warning}")
    else:
        write_moments([replace(m, path=display_path(m.path)) for m in found], fmt, stream, queries)
    return found


def _write_moments_report(
    report: Path, runner: Backend, index: Index, queries: list[str], found: tuple[Moment, ...]
) -> None:
    """The page of the moments found: the frames of each best window, decoded as classify would."""
    from xclip_cli.jobs.moments import moment_thumbnails
    from xclip_cli.output.report import moments_report, write_report

    thumbnails = moment_thumbnails(runner, found, index.sampling)
    title = f"xclip search: {index.folder}"
    write_report(moments_report(found, queries, thumbnails, report, title, index.model, index.windows), report)
