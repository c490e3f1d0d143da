"""``xclip embed`` (decode and encode videos once into an index) and ``xclip search``."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from xclip_cli.cli.common import (
    check_replaceable,
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
from xclip_cli.cli.options import (
    BackendOpt,
    DeviceOpt,
    ExtOpt,
    FoldersArg,
    FormatOpt,
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
    TimeoutOpt,
    VerboseOpt,
    WorkersOpt,
)
from xclip_cli.errors import UsageError
from xclip_cli.model.checkpoints import DEFAULT_MODEL
from xclip_cli.options import ClassifyOptions


def embed(
    folders: FoldersArg = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="The index folder (created, or resumed).")] = Path(
        "xclip-index"
    ),
    from_file: FromFileOpt = None,
    overwrite: OverwriteOpt = False,
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
    from xclip_cli.jobs.index import IndexWriter, embed_videos, indexed_paths
    from xclip_cli.media.discovery import collect_paths

    set_verbose(verbose)
    options = ClassifyOptions(workers=workers, timeout=timeout, sampling=sampling)
    if not folders and from_file is None:
        raise UsageError("give folders to index or --from-file LIST")
    found = collect_paths(
        folders or [], listed_paths(from_file), recursive=recursive, pattern=glob, extensions=ext, shard=shard
    )
    done_before = set() if overwrite else indexed_paths(output, model, precision, sampling)  # before the model loads
    todo = [path for path in found if os.path.abspath(path) not in done_before]
    if not todo:
        return nothing_to_do(len(found), output, quiet)
    runner = load_runner(model, device, precision, backend)
    writer = IndexWriter(output, runner, overwrite=overwrite, sampling=sampling)
    todo = [path for path in todo if not writer.has(path)]
    try:
        with ScanProgress(len(todo), skipped=len(found) - len(todo), quiet=quiet) as progress, resumable(output):
            report = write_all(embed_videos(runner, todo, writer, options), None, progress.update)
    finally:
        writer.close()
    finish(report, output, quiet=quiet)


def search(
    index: Annotated[Path, typer.Argument(metavar="INDEX", help="An index folder built by xclip embed.")],
    query: Annotated[str, typer.Argument(metavar="QUERY", help="What to look for, in words.")],
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Videos to list.")] = 10,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Checkpoint (default: the one the index was built with).")
    ] = None,
    output_format: FormatOpt = None,
    output: OutputOpt = None,
    overwrite: ReplaceOpt = False,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "fp32",
    backend: BackendOpt = "auto",
    verbose: VerboseOpt = False,
) -> None:
    """Rank the videos of an index by how well they match a text, with X-CLIP's full head."""
    from xclip_cli.jobs.index import Index, search_index
    from xclip_cli.output.writers import write_search

    set_verbose(verbose)
    if not query.strip():
        raise UsageError("the query is empty")
    output_format = pick_format(output_format, output, "search")
    opened = Index(index)
    check_writable(output)
    check_replaceable(output, overwrite)
    runner = load_runner(model or opened.model, device, precision, backend)
    hits = [replace(hit, path=display_path(hit.path)) for hit in search_index(runner, opened, query, top_k)]
    with open_output(output, fmt=output_format) as stream:
        write_search(hits, query, output_format, stream)
    finish(None, output)
