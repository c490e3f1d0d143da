"""The ``xclip`` command: parses options, calls the library, picks a writer.

The only module that imports typer. Heavy imports (torch, transformers) happen inside the
commands that need a model, so ``xclip --help`` and ``xclip labels list`` start fast.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import math
import os
import shlex
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer

from . import __version__
from .checkpoints import DEFAULT_MODEL, KNOWN_CHECKPOINTS, ZERO_SHOT_MODEL
from .errors import ExitCode, Interrupted, OutputError, UsageError, XClipError
from .help_text import epilog
from .labels import builtin_dir, builtin_names, load_labelset_file, resolve_labels
from .results import VideoResult
from .writers import FORMATS, WRITERS, Writer, data_console

# Views per video of each evaluation protocol: X-CLIP's README tests with TEST.NUM_CLIP 4 and
# TEST.NUM_CROP 3 (microsoft/VideoX, X-CLIP/README.md, "Test").
PROTOCOLS = {"single": (1, 1), "xclip": (4, 3)}
PIPED_WIDTH = 160  # columns for tables written to a pipe or file
PLOT_EXTENSIONS = ("png", "svg", "pdf", "jpg", "jpeg")  # what matplotlib writes (jpg through pillow)


def _choices(values: Iterable[str]) -> str:
    """A metavar that lists the choices, as ``--format [table|json|jsonl|csv]``."""
    return "[" + "|".join(values) + "]"


# Shown in full in `xclip --help` (Click cuts a docstring's first line at 45 characters).
SHORT_HELP = {
    "classify": "Classify videos against a label set: the top labels of each.",
    "scan": "Classify every video in folders into a CSV; reruns resume.",
    "embed": "Encode videos once into an index for search and classify --index.",
    "eval": "Accuracy of a label set on labelled videos (top-1, top-5, per class).",
    "search": "Rank the videos of an index by how well they match a text.",
    "serve": "Keep a model loaded and classify over HTTP.",
    "timeline": "What happens when: classify sliding windows of one video.",
    "models": "List the published X-CLIP checkpoints.",
    "help": "Show the help of a command: xclip help scan.",
}

app = typer.Typer(
    help="Zero-shot video classification with X-CLIP.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
labels_app = typer.Typer(help="List and inspect the built-in label sets.", no_args_is_help=True)
app.add_typer(labels_app, name="labels")

ModelOpt = Annotated[
    str,
    typer.Option("--model", "-m", envvar="XCLIP_MODEL", help="Hub id or local folder of an X-CLIP checkpoint."),
]
LabelsOpt = Annotated[
    str,
    typer.Option("--labels", "-l", help="Built-in set name, YAML file, or comma list ('cooking, dancing')."),
]
DEVICE_OPTION = typer.Option(
    "--device",
    envvar="XCLIP_DEVICE",
    metavar="[auto|cpu|cuda|cuda:N|mps]",
    help="Where the model runs; auto: CUDA, then MPS, then CPU.",
)
DeviceOpt = Annotated[str, DEVICE_OPTION]
FormatOpt = Annotated[
    str | None,
    typer.Option(
        "--format",
        "-f",
        metavar=_choices(FORMATS),
        help="Output format [default: from the -o extension, else table].",
    ),
]
PRECISION_OPTION = typer.Option(
    metavar=_choices(("fp32", "bf16")),
    help="fp32 (exact), or bf16: faster on CPUs with bfloat16 units, logits drift.",
)
PrecisionOpt = Annotated[str, PRECISION_OPTION]
# 2: measured 1.35 s/video against 1.43-1.56 with 1 on one-slice 720p H.264 (two single-threaded
# decoders fill both cores), and equal on multi-slice files (bench scan path, 2-core CPU).
WorkersOpt = Annotated[
    int, typer.Option(min=0, help="Threads decoding the next videos while the model runs (0: none).")
]
ScanFormatOpt = Annotated[
    str | None,
    typer.Option(
        "--format",
        "-f",
        metavar=_choices(("csv", "jsonl")),
        help="Output format [default: from the -o extension, else csv].",
    ),
]
OutputOpt = Annotated[Path | None, typer.Option("--output", "-o", help="Write results to this file, not stdout.")]
TimeoutOpt = Annotated[
    float | None,
    typer.Option(min=0, help="Seconds a video's decoding may take; slower files become errors (default: no limit)."),
]
# Options shared by the commands that walk folders (scan, embed).
FromFileOpt = Annotated[
    str | None, typer.Option("--from-file", help="Read video paths from this file ('-': stdin), one per line.")
]
RecursiveOpt = Annotated[bool, typer.Option(help="Descend into sub-folders.")]
GlobOpt = Annotated[str | None, typer.Option(help="Only paths (relative to the folder) matching this.")]
ExtOpt = Annotated[str | None, typer.Option(help="Comma list of extensions (default: common video types).")]
ShardOpt = Annotated[str | None, typer.Option(help="Process part i of n (i/n, from 0), stable across runs.")]
ScanQuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary on stderr.")]
ClipsOpt = Annotated[
    int, typer.Option(min=1, max=64, help="Temporal views per video; their probabilities are averaged.")
]
CropsOpt = Annotated[
    int, typer.Option(metavar="[1|3]", help="1: centre crop; 3: left/centre/right crops, averaged (X-CLIP's protocol).")
]
VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help="Show ffmpeg's own messages, and a traceback for internal errors.")
]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def reports_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """The one place where domain errors become a one-line message and an exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except Interrupted as exc:
            _stderr(f"xclip: interrupted: {exc}")
            raise typer.Exit(int(exc.exit_code)) from None
        except XClipError as exc:
            _stderr(f"xclip: error: {exc}")
            raise typer.Exit(int(exc.exit_code)) from None
        except KeyboardInterrupt:
            _stderr("xclip: interrupted")
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
        except BrokenPipeError:
            # The reader went away (`| head`): stop quietly, like a tool killed by SIGPIPE.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(int(ExitCode.BROKEN_PIPE)) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            if os.environ.get("XCLIP_DEBUG") or kwargs.get("verbose"):
                raise
            _stderr(f"xclip: internal error: {type(exc).__name__}: {exc} (set XCLIP_DEBUG=1 for a traceback)")
            raise typer.Exit(int(ExitCode.INTERNAL)) from None

    return wrapper


def _version(value: bool) -> None:
    """The tool's version, then what it runs on: what a bug report needs (imports torch: slow)."""
    if not value:
        return
    from importlib.metadata import PackageNotFoundError, version

    print(f"xclip-cli {__version__}")
    for package, shown in (("torch", "torch"), ("transformers", "transformers"), ("av", "PyAV")):
        try:
            print(f"{shown} {version(package)}")
        except PackageNotFoundError:
            print(f"{shown} not installed")
    try:
        from .device import resolve_device

        print(f"default device: {resolve_device(os.environ.get('XCLIP_DEVICE', 'auto'))}")
    except (ImportError, XClipError) as exc:
        print(f"default device: unknown ({exc})")
    raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Zero-shot video classification with X-CLIP."""


@app.command(epilog=epilog("classify"), short_help=SHORT_HELP["classify"])
@reports_errors
def classify(
    videos: Annotated[
        list[str] | None,
        typer.Argument(metavar="[VIDEOS]...", help="Video files; '-' reads paths from stdin, one per line."),
    ] = None,
    labels: LabelsOpt = "kinetics400",
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            envvar="XCLIP_MODEL",
            help=f"Hub id or local folder of an X-CLIP checkpoint [default: {DEFAULT_MODEL}; "
            "with --index: the index's].",
        ),
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Labels to report per video.")] = 5,
    output_format: FormatOpt = None,
    output: OutputOpt = None,
    device: Annotated[str | None, DEVICE_OPTION] = None,
    start: Annotated[float | None, typer.Option(min=0, help="Sample from this second on.")] = None,
    end: Annotated[float | None, typer.Option(min=0, help="Sample up to this second.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Videos per vision-encoder call.")] = 1,
    workers: WorkersOpt = 2,
    precision: Annotated[str | None, PRECISION_OPTION] = None,
    timeout: TimeoutOpt = None,
    clips: ClipsOpt = 1,
    crops: CropsOpt = 1,
    index: Annotated[
        Path | None, typer.Option(help="Score the videos of an `xclip embed` index instead: nothing is decoded.")
    ] = None,
    server: Annotated[
        str | None, typer.Option(envvar="XCLIP_SERVER", help="Send the work to a running `xclip serve` (its URL).")
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Classify videos against a label set and print the top labels."""
    from .options import ClassifyOptions

    _set_verbose(verbose)
    options = ClassifyOptions(
        top_k=top_k,
        start=start,
        end=end,
        batch_size=batch_size,
        workers=workers,
        timeout=timeout,
        clips=clips,
        crops=crops,
    )
    writer_class = WRITERS[_pick_format(output_format, output, "classify")]
    labelset = resolve_labels(labels)
    if len(labelset) == 1:
        _stderr(f"xclip: warning: label set {labelset.name!r} has one label: every probability will be 1")
    if index is not None:
        if videos:
            raise UsageError("give videos or --index, not both")
        _classify_index(index, labelset, model, device or "auto", precision or "fp32", top_k, writer_class, output)
        return
    if not videos:
        raise UsageError("no videos given (paths, '-' for stdin, or --index)")
    _check_writable(output, videos)
    _check_no_folders(videos)
    if server is not None:
        from .client import check_server, classify_remote, server_info

        check_server(server_info(server), server, model, precision, device)
        with _open_output(output) as stream:
            results = classify_remote(server, _expand_stdin(videos), labels, options)
            _finish(_write_all(results, writer_class(stream, top_k=top_k), _report_problems), output)
        return
    _check_some_input_exists(videos)
    from .classify import classify_videos

    model = model or DEFAULT_MODEL
    early = _start_early_decode(model, videos, options)
    runner = _load_runner(model, device or "auto", precision or "fp32")
    ready = early.take(runner.num_frames, runner.preprocess) if early is not None else {}
    with _open_output(output) as stream:
        results = classify_videos(runner, _expand_stdin(videos), labelset, options, ready)
        done, failed = _write_all(results, writer_class(stream, top_k=top_k), _report_problems)
    if done == 0:
        raise UsageError("no videos to classify (stdin gave no paths)")
    _finish((done, failed), output)


def _classify_index(
    folder: Path,
    labelset: Any,
    model: str | None,
    device: str,
    precision: str,
    top_k: int,
    writer_class: type[Writer],
    output: Path | None,
) -> None:
    from .index import Index, score_index

    index = Index(folder)
    _check_writable(output, [])
    runner = _load_runner(model or index.model, device, precision)  # an explicit --model wins (and is checked)
    with _open_output(output) as stream:
        results = (
            replace(result, path=display_path(result.path)) for result in score_index(runner, index, labelset, top_k)
        )
        done, failed = _write_all(results, writer_class(stream, top_k=top_k), _report_problems)
    if done == 0:
        raise UsageError(f"{folder}: the index holds no videos")
    _finish((done, failed), output)


def _check_no_folders(videos: list[str]) -> None:
    """A folder is a scan's job: say so before the model loads, not one error per file later."""
    for video in videos:
        if os.path.isdir(video):
            raise UsageError(f"{video} is a folder: use xclip scan {shlex.quote(video)} to classify the videos in it")


def _finish(counts: tuple[int, int], *written: Path | None, quiet: bool = False) -> None:
    """Say which files were written (stderr), then exit with the code for (done, failed)."""
    if not quiet:
        for path in written:
            if path is not None:
                _stderr(f"xclip: wrote {path}")
    _exit_for(*counts)


def _start_early_decode(model: str, videos: list[str], options: Any) -> Any:
    """Decode the first named video while the model loads (see ``xclip_cli.early``)."""
    if not videos or videos[0] == "-" or not os.path.isfile(videos[0]):
        return None
    from .early import EarlyDecode

    return EarlyDecode(model, videos[0], options)


def _load_runner(model: str, device: str, precision: str) -> Any:
    from .device import bf16_is_fast
    from .runner import XClipRunner

    with _status(f"Loading {model}"):
        runner = XClipRunner.from_pretrained(model, device=device, precision=precision)
    if precision == "bf16" and not bf16_is_fast(runner.device):
        _stderr("xclip: warning: this CPU has no bfloat16 units: --precision bf16 will be slower than fp32")
    return runner


def _report_problems(result: VideoResult) -> None:
    from .progress import report_lines

    for line in report_lines(result):
        _stderr(line)


def _set_verbose(verbose: bool) -> None:
    """ffmpeg stays silent unless asked: its messages are for debugging a file, not for users."""
    if verbose:
        import av.logging

        av.logging.set_level(av.logging.WARNING)


def _write_all(
    results: Iterable[VideoResult], writer: Writer | None, each: Callable[[VideoResult], None]
) -> tuple[int, int]:
    """Write every result as it comes (``writer=None``: the results store themselves); returns
    (done, failed). The writer is closed even on Ctrl-C, so a JSON array holds the videos
    finished so far."""
    done = failed = 0
    try:
        for result in results:
            done += 1
            failed += not result.ok
            each(result)
            if writer is not None:
                writer.write(result)
    finally:
        if writer is not None:
            writer.close()
    return done, failed


def _exit_for(done: int, failed: int) -> None:
    if failed:
        raise typer.Exit(int(ExitCode.ALL_FAILED if failed == done else ExitCode.PARTIAL))


@app.command(epilog=epilog("scan"), short_help=SHORT_HELP["scan"])
@reports_errors
def scan(
    folders: Annotated[
        list[str] | None, typer.Argument(metavar="[FOLDERS]...", help="Folders (or files) to scan.")
    ] = None,
    labels: LabelsOpt = "kinetics400",
    output: OutputOpt = None,
    from_file: FromFileOpt = None,
    overwrite: Annotated[bool, typer.Option(help="Start -o afresh instead of resuming it.")] = False,
    recursive: RecursiveOpt = True,
    glob: GlobOpt = None,
    ext: ExtOpt = None,
    shard: ShardOpt = None,
    quiet: ScanQuietOpt = False,
    model: ModelOpt = DEFAULT_MODEL,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Labels to report per video.")] = 5,
    output_format: ScanFormatOpt = None,
    device: DeviceOpt = "auto",
    batch_size: Annotated[int, typer.Option(min=1, help="Videos per vision-encoder call.")] = 1,
    workers: WorkersOpt = 2,
    precision: PrecisionOpt = "fp32",
    timeout: TimeoutOpt = None,
    clips: ClipsOpt = 1,
    crops: CropsOpt = 1,
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
    verbose: VerboseOpt = False,
) -> None:
    """Classify every video in folders (or a list) into a CSV; a rerun resumes where it stopped."""
    from .options import ClassifyOptions
    from .scan import RunSettings, finished_paths

    _set_verbose(verbose)
    options = ClassifyOptions(
        top_k=top_k, batch_size=batch_size, workers=workers, timeout=timeout, clips=clips, crops=crops
    )
    writer_name = _pick_format(output_format, output, "scan", ("csv", "jsonl"), default="csv")
    if not folders and from_file is None:
        raise UsageError("give folders to scan or --from-file LIST")
    if engine not in ("local", "ray"):
        raise UsageError(f"--engine {engine!r}: expected local or ray")
    ray_only = {
        "--ray-address": ray_address is not None,
        "--concurrency": concurrency != 1,
        "--num-gpus": num_gpus != 0,
        "--cpus-per-actor": cpus_per_actor != 1,
        "--decode-cpus": decode_cpus != 1,
    }
    given = [name for name, is_set in ray_only.items() if is_set]
    if engine == "local" and given:
        raise UsageError(f"{given[0]} needs --engine ray")
    labelset = resolve_labels(labels)
    _check_writable(output, [])
    paths = _scan_paths(folders or [], from_file, recursive, glob, ext, shard)
    settings = RunSettings(model, labelset.name, labelset.digest, options.views, top_k, len(labelset))
    done_before = set() if overwrite or output is None else finished_paths(output, settings)
    todo = [path for path in dict.fromkeys(paths) if path not in done_before]
    from .classify import classify_videos
    from .progress import ScanProgress

    if not todo:
        if output is not None and not output.exists():
            # An empty shard still leaves its (header-only) file, so every job's output exists.
            with _open_output(output) as stream:
                WRITERS[writer_name](stream, top_k=top_k).close()
        if not quiet:
            found = f"all {len(paths)} videos are already in {output}" if paths else "no videos found"
            _stderr(f"xclip: nothing to do: {found}")
        return
    data_out = sys.stdout
    # Ray prints worker failures to this process's stdout: keep it for the results alone.
    with contextlib.redirect_stdout(sys.stderr) if engine == "ray" else contextlib.nullcontext():
        if engine == "ray":
            from .ray_engine import RayOptions, classify_videos_on_ray, import_ray

            import_ray()  # before anything loads: a missing extra is a usage error
            ray_options = RayOptions(
                address=ray_address,
                concurrency=concurrency,
                num_gpus=num_gpus,
                cpus_per_actor=cpus_per_actor,
                decode_cpus=decode_cpus,
                device=device,
                precision=precision,
                verbose=verbose,
            )
            results = classify_videos_on_ray(model, todo, labelset, options, ray_options)
        else:
            results = classify_videos(_load_runner(model, device, precision), todo, labelset, options)
        appending = bool(done_before)
        with _open_output(output, append=appending, stdout=data_out) as stream, _resumable(output):
            writer = WRITERS[writer_name](stream, appending=appending, top_k=top_k)
            with ScanProgress(len(todo), skipped=len(paths) - len(todo), quiet=quiet) as progress:
                counts = _write_all(results, writer, progress.update)
    _finish(counts, output, quiet=quiet)


@contextlib.contextmanager
def _resumable(output: Path | None) -> Iterator[None]:
    """On Ctrl-C, say that the same command resumes (the file holds every finished video)."""
    try:
        yield
    except KeyboardInterrupt:
        if output is None:
            raise
        raise Interrupted(f"{output} holds every finished video; rerun the same command to resume") from None


@app.command(epilog=epilog("embed"), short_help=SHORT_HELP["embed"])
@reports_errors
def embed(
    folders: Annotated[
        list[str] | None, typer.Argument(metavar="[FOLDERS]...", help="Folders (or files) to index.")
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="The index folder (created, or resumed).")] = Path(
        "xclip-index"
    ),
    from_file: FromFileOpt = None,
    overwrite: Annotated[bool, typer.Option(help="Start the index afresh instead of resuming it.")] = False,
    recursive: RecursiveOpt = True,
    glob: GlobOpt = None,
    ext: ExtOpt = None,
    shard: ShardOpt = None,
    quiet: ScanQuietOpt = False,
    model: ModelOpt = DEFAULT_MODEL,
    device: DeviceOpt = "auto",
    workers: WorkersOpt = 2,
    precision: PrecisionOpt = "fp32",
    timeout: TimeoutOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Decode and encode videos once into an index; search it or classify it later without decoding."""
    from .options import ClassifyOptions

    _set_verbose(verbose)
    options = ClassifyOptions(workers=workers, timeout=timeout)
    if not folders and from_file is None:
        raise UsageError("give folders to index or --from-file LIST")
    paths = _scan_paths(folders or [], from_file, recursive, glob, ext, shard)
    from .index import IndexWriter, embed_videos, indexed_paths
    from .progress import ScanProgress

    done_before = set() if overwrite else indexed_paths(output, model, precision)  # before the model loads
    todo = [path for path in dict.fromkeys(paths) if os.path.abspath(path) not in done_before]
    if not todo:
        if not quiet:
            found = f"all {len(paths)} videos are already in {output}" if paths else "no videos found"
            _stderr(f"xclip: nothing to do: {found}")
        return
    runner = _load_runner(model, device, precision)
    writer = IndexWriter(output, runner, overwrite=overwrite)
    todo = [path for path in todo if not writer.has(path)]
    try:
        with ScanProgress(len(todo), skipped=len(paths) - len(todo), quiet=quiet) as progress, _resumable(output):
            counts = _write_all(embed_videos(runner, todo, writer, options), None, progress.update)
    finally:
        writer.close()
    _finish(counts, output, quiet=quiet)


@app.command(name="eval", epilog=epilog("eval"), short_help=SHORT_HELP["eval"])
@reports_errors
def evaluate_command(
    data: Annotated[Path, typer.Argument(metavar="DATA", help="A folder of class folders, or a path,label CSV/TSV.")],
    labels: LabelsOpt = "kinetics400",
    model: ModelOpt = DEFAULT_MODEL,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Per-video predictions CSV; a rerun resumes from it.")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Start -o afresh instead of resuming it.")] = False,
    confusion: Annotated[Path | None, typer.Option(help="Write the confusion matrix (CSV) here.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Draw the confusion matrix as a PNG heatmap.")] = None,
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
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
    device: DeviceOpt = "auto",
    workers: WorkersOpt = 2,
    precision: PrecisionOpt = "fp32",
    timeout: TimeoutOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Measure top-1, top-5 and per-class accuracy of a label set on labelled videos."""
    from .evaluation import (
        PREDICTION_COLUMNS,
        TOP_K,
        evaluate,
        labelset_id,
        load_dataset,
        match_classes,
        prediction_row,
        read_predictions,
        resumable_rows,
        write_confusion_csv,
    )
    from .options import ClassifyOptions
    from .writers import write_eval_report

    _set_verbose(verbose)
    if protocol not in PROTOCOLS:
        raise UsageError(f"--protocol {protocol}: expected one of {', '.join(PROTOCOLS)}")
    if protocol != "single":
        clips, crops = PROTOCOLS[protocol]
    options = ClassifyOptions(top_k=TOP_K, workers=workers, timeout=timeout, clips=clips, crops=crops)
    if output_format not in ("table", "json"):
        raise UsageError(f"--format {output_format}: eval reports as table or json")
    _check_extension(output, "-o", ("csv",))
    _check_extension(confusion, "--confusion", ("csv",))
    _check_extension(plot, "--plot", PLOT_EXTENSIONS)
    labelset = resolve_labels(labels)
    dataset = load_dataset(data)
    match_classes((video.label for video in dataset), labelset)  # before any video is decoded
    for path in (output, confusion, plot):
        _check_writable(path, [video.path for video in dataset])
    earlier = [] if overwrite or output is None else read_predictions(output)
    settings = {"labelset": labelset_id(labelset), "model": model, "views": str(clips * crops)}
    rows = resumable_rows(earlier, dataset, settings, output) if output is not None else []
    done = {row["path"] for row in rows}
    todo = {video.path: video for video in dataset if video.path not in done}
    if todo:
        from .classify import classify_videos
        from .progress import ScanProgress

        runner = _load_runner(model, device, precision)
        with contextlib.ExitStack() as stack:
            stream = stack.enter_context(_open_output(output, append=bool(earlier))) if output else None
            table = csv.writer(stream) if stream else None
            if table is not None and not earlier:
                table.writerow(PREDICTION_COLUMNS)
            progress = stack.enter_context(ScanProgress(len(todo), skipped=len(done), quiet=quiet))
            stack.enter_context(_resumable(output))
            for result in classify_videos(runner, list(todo), labelset, options):
                row = prediction_row(todo[result.path], result, settings["labelset"])
                rows.append(dict(zip(PREDICTION_COLUMNS, row, strict=True)))
                if table is not None and stream is not None:
                    table.writerow(row)
                    stream.flush()
                progress.update(result)
    report = evaluate(rows, labelset)
    write_eval_report(report, labelset.name, output_format, sys.stdout)
    if confusion is not None:
        write_confusion_csv(report, confusion)
    if plot is not None:
        from .plot import plot_confusion

        plot_confusion(report, plot)
    _finish((0, 0), output, confusion, plot, quiet=quiet)


@app.command(epilog=epilog("search"), short_help=SHORT_HELP["search"])
@reports_errors
def search(
    index: Annotated[Path, typer.Argument(metavar="INDEX", help="An index folder built by xclip embed.")],
    query: Annotated[str, typer.Argument(metavar="QUERY", help="What to look for, in words.")],
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Videos to list.")] = 10,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Checkpoint (default: the one the index was built with).")
    ] = None,
    output_format: FormatOpt = None,
    output: OutputOpt = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "fp32",
    verbose: VerboseOpt = False,
) -> None:
    """Rank the videos of an index by how well they match a text, with X-CLIP's full head."""
    from .index import Index, search_index
    from .writers import write_search

    _set_verbose(verbose)
    if not query.strip():
        raise UsageError("the query is empty")
    output_format = _pick_format(output_format, output, "search")
    opened = Index(index)
    _check_writable(output, [])
    runner = _load_runner(model or opened.model, device, precision)
    hits = [replace(hit, path=display_path(hit.path)) for hit in search_index(runner, opened, query, top_k)]
    with _open_output(output) as stream:
        write_search(hits, query, output_format, stream)
    _finish((0, 0), output)


@app.command(epilog=epilog("serve"), short_help=SHORT_HELP["serve"])
@reports_errors
def serve(
    model: ModelOpt = DEFAULT_MODEL,
    host: Annotated[str, typer.Option(help="Interface to listen on (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free port).")] = 8765,
    root: Annotated[
        list[Path] | None, typer.Option(help="Folder whose videos requests may name by path (repeatable; default: .).")
    ] = None,
    max_upload_mb: Annotated[int, typer.Option(min=1, help="Largest video upload accepted, in MB.")] = 512,
    labels: Annotated[str, typer.Option("--labels", "-l", help="Label set when a request names none.")] = "kinetics400",
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "fp32",
    verbose: VerboseOpt = False,
) -> None:
    """Keep a model loaded and classify over HTTP: xclip classify --server, or POST /classify.

    Listens on 127.0.0.1 (this machine) unless --host says otherwise. GET /health and GET /model
    describe it; POST /classify takes {"path": ..., "labels": ..., "top_k": ...} as JSON (a file
    inside a --root folder) or a video as the body (labels, top_k, name in the query), and answers
    with what xclip classify -f json prints. Label files are never read for a request.
    """
    from .server import ClassifyService, make_server

    _set_verbose(verbose)
    roots = root or [Path.cwd()]
    for folder in roots:
        if not folder.is_dir():
            raise UsageError(f"--root {folder}: no such folder")
    runner = _load_runner(model, device, precision)
    service = ClassifyService(runner, roots, max_upload_mb * 1024 * 1024, labels, log=_log_request)
    try:
        server = make_server(service, host, port)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    address, bound = server.server_address[:2]
    _stderr(f"xclip: serving {runner.model_id} on http://{address}:{bound} (roots: {', '.join(map(str, roots))})")
    with server:
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            _stderr(f"xclip: stopped serving on http://{address}:{bound}")
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None


def _log_request(line: str) -> None:
    _stderr(f"xclip: {line}")


@app.command(epilog=epilog("timeline"), short_help=SHORT_HELP["timeline"])
@reports_errors
def timeline(
    video: Annotated[str, typer.Argument(metavar="VIDEO", help="The video to follow over time.")],
    labels: LabelsOpt = "kinetics400",
    model: ModelOpt = DEFAULT_MODEL,
    window: Annotated[
        float | None, typer.Option(min=0, help="Window length in seconds (default: the checkpoint's frames x 1 s).")
    ] = None,
    stride: Annotated[
        float | None, typer.Option(min=0, help="Seconds between window starts (default: window / 2).")
    ] = None,
    merge: Annotated[bool, typer.Option(help="Merge consecutive windows with the same top label.")] = True,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Labels kept per segment (json, csv).")] = 3,
    output_format: FormatOpt = None,
    output: OutputOpt = None,
    plot: Annotated[Path | None, typer.Option(help="Also draw the top labels over time into this PNG.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
    device: DeviceOpt = "auto",
    batch_size: Annotated[int, typer.Option(min=1, help="Windows per vision-encoder call (more helps on GPUs).")] = 1,
    precision: PrecisionOpt = "fp32",
    timeout: TimeoutOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Classify sliding windows of a video: a table of what happens when."""
    from .writers import TIMELINE_WRITERS

    _set_verbose(verbose)
    if not all(value is None or (math.isfinite(value) and value > 0) for value in (window, stride)):
        raise UsageError("--window and --stride must be positive numbers of seconds")
    write = TIMELINE_WRITERS[_pick_format(output_format, output, "timeline")]
    _check_extension(plot, "--plot", PLOT_EXTENSIONS)
    labelset = resolve_labels(labels)
    _check_writable(output, [video])
    _check_writable(plot, [video])
    _check_some_input_exists([video])
    from .timeline import TimelineOptions, build_timeline

    runner = _load_runner(model, device, precision)
    options = TimelineOptions(window=window, stride=stride, top_k=top_k, batch_size=batch_size, timeout=timeout)
    with _video_time_progress(quiet) as progress:
        result = build_timeline(runner, video, labelset, options, on_progress=progress)
    for warning in result.warnings:
        _stderr(f"xclip: warning: {video}: {warning}")
    segments = result.segments(merge=merge, top_k=top_k)
    with _open_output(output) as stream:
        write(result, segments, merge, stream)
    if plot is not None:
        from .plot import plot_timeline

        plot_timeline(result, segments, plot)
    _finish((0, 0), output, plot, quiet=quiet)


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


def _scan_paths(
    folders: list[str], from_file: str | None, recursive: bool, glob: str | None, ext: str | None, shard: str | None
) -> list[str]:
    """Found videos, then listed ones, kept to this shard."""
    from .media.discovery import VIDEO_EXTENSIONS, Shard, find_videos, parse_extensions, read_path_list

    extensions = VIDEO_EXTENSIONS if ext is None else parse_extensions(ext)
    paths = list(find_videos(folders, recursive=recursive, pattern=glob, extensions=extensions))
    if from_file is not None:
        paths += read_path_list(sys.stdin if from_file == "-" else _read_lines(from_file))
    if shard is not None:
        part = Shard.parse(shard)
        paths = [path for path in paths if path in part]
    return paths


def _read_lines(path: str) -> list[str]:
    try:
        return Path(path).read_text(encoding="utf-8", errors="surrogateescape").splitlines()
    except OSError as exc:
        raise UsageError(f"--from-file {path}: {exc.strerror or exc}") from None


def _pick_format(
    output_format: str | None,
    output: Path | None,
    command: str,
    formats: Iterable[str] = FORMATS,
    default: str = "table",
) -> str:
    """``--format``, else the ``-o`` file's extension, else ``default``.

    An extension that names no format the command writes (``out.srt``, ``out.xlsx``) is refused:
    writing a table into it would look like success.
    """
    formats = tuple(formats)
    if output_format is not None:
        if output_format not in formats:
            raise UsageError(f"--format {output_format!r}: xclip {command} writes {', '.join(formats)}")
        return output_format
    suffix = output.suffix.lower().lstrip(".") if output is not None else ""
    if not suffix:
        return default
    if suffix in formats and suffix != "table":
        return suffix
    raise UsageError(
        f"{output}: xclip {command} writes {', '.join(formats)}, not .{suffix}; "
        "end the file name in one of those or give --format"
    )


def _check_extension(path: Path | None, option: str, extensions: tuple[str, ...]) -> None:
    """A file option that can hold one kind of file only (``--confusion x.csv``, ``--plot x.png``)."""
    if path is not None and path.suffix and path.suffix.lower().lstrip(".") not in extensions:
        raise UsageError(f"{option} {path}: writes {' or '.join('.' + ext for ext in extensions)} files")


def display_path(path: str) -> str:
    """A stored absolute path as a user can use it here: relative below the current folder."""
    if not os.path.isabs(path):
        return path
    relative = os.path.relpath(path)
    return path if relative.startswith(os.pardir) else relative


@app.command(short_help=SHORT_HELP["models"])
@reports_errors
def models() -> None:
    """List the published X-CLIP checkpoints (any local save_pretrained folder works too)."""
    from rich.table import Table

    table = Table(title="X-CLIP checkpoints on the Hugging Face hub", title_justify="left")
    table.add_column("model", no_wrap=True)
    table.add_column("frames", justify="right")
    table.add_column("size", justify="right")
    table.add_column("trained on")
    for ckpt in KNOWN_CHECKPOINTS:
        trained_on = f"{ckpt.trained_on}, {ckpt.note}" if ckpt.note else ckpt.trained_on
        marker = "★ " if ckpt.model_id == ZERO_SHOT_MODEL else "  "
        table.add_row(marker + ckpt.model_id, str(ckpt.frames), str(ckpt.resolution), trained_on)
    table.caption = "★ the authors' pick for open-vocabulary (zero-shot) labels"
    _print_table(table)


@app.command(name="help", short_help=SHORT_HELP["help"])
def help_command(
    ctx: typer.Context,
    command: Annotated[
        list[str] | None, typer.Argument(metavar="[COMMAND]...", help="e.g. scan, or labels show.")
    ] = None,
) -> None:
    """Show the help of a command (or of xclip itself): the same as COMMAND --help."""
    root = ctx.parent
    assert root is not None
    target, context = root.command, root
    for name in command or []:
        sub = getattr(target, "get_command", lambda _ctx, _name: None)(context, name)
        if sub is None:
            _stderr(f"xclip: error: no command {' '.join(command or [])!r}; see xclip --help")
            raise typer.Exit(int(ExitCode.USAGE))
        target, context = sub, type(ctx)(sub, info_name=name, parent=context)
    print(target.get_help(context))


@labels_app.command("list")
@reports_errors
def labels_list() -> None:
    """List the built-in label sets."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"Built-in label sets ({builtin_dir()})", title_justify="left")
    for column in ("name", "labels", "description"):
        table.add_column(column, justify="right" if column == "labels" else "left")
    for name in builtin_names():
        labelset = load_labelset_file(builtin_dir() / f"{name}.yaml")
        table.add_row(name, str(len(labelset)), escape(labelset.description))
    _print_table(table)


@labels_app.command("show")
@reports_errors
def labels_show(name: Annotated[str, typer.Argument(metavar="NAME", help="Built-in name or YAML file.")]) -> None:
    """Show a label set: templates, then one label per line (with its prompts if they differ)."""
    labelset = resolve_labels(name)
    print(f"# {labelset.name}: {len(labelset)} labels. {labelset.description}".rstrip())
    print(f"# templates: {', '.join(repr(t) for t in labelset.templates)}")
    for label in labelset.labels:
        extra = "" if label.prompts == (label.name,) else f"  (prompts: {'; '.join(label.prompts)})"
        print(f"{label.name}{extra}")


def _print_table(table: Any) -> None:
    """Print to stdout; when piped, wide enough that no cell is cut (Rich assumes 80 columns)."""
    data_console(sys.stdout, width=None if sys.stdout.isatty() else PIPED_WIDTH).print(table)


def _expand_stdin(videos: list[str]) -> Iterator[str]:
    """Paths as given, with '-' replaced by the lines of stdin (blank lines skipped)."""
    for video in videos:
        if video == "-":
            for line in sys.stdin:
                path = line.rstrip("\r\n")
                if path.strip():
                    yield path
        else:
            yield video


def _check_writable(path: Path | None, videos: list[str]) -> None:
    """Fail before loading the model or touching a video if ``-o`` cannot (or must not) be written."""
    if path is None:
        return
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise OutputError(f"{path}: cannot write output (it is a directory)")
    if not folder.is_dir():
        raise OutputError(f"{path}: cannot write output (no folder {folder})")
    if not os.access(path if path.exists() else folder, os.W_OK):
        raise OutputError(f"{path}: cannot write output (permission denied)")
    if path.exists() and any(video != "-" and _same_file(path, video) for video in videos):
        raise OutputError(f"{path}: cannot write output over one of the input videos")


def _check_some_input_exists(videos: list[str]) -> None:
    """Fail before loading the model (seconds) when no named video exists at all."""
    if "-" in videos or any(os.path.exists(video) for video in videos):
        return
    for video in videos:
        _stderr(f"xclip: error: {video}: no such file")
    raise typer.Exit(int(ExitCode.ALL_FAILED))


def _same_file(a: Path, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


@contextlib.contextmanager
def _open_output(path: Path | None, append: bool = False, stdout: TextIO | None = None) -> Iterator[TextIO]:
    """stdout (or ``stdout``), or the ``-o`` file (created, truncated or appended to once results are coming)."""
    if path is None:
        yield stdout or sys.stdout
        return
    try:
        # surrogateescape: file names that are not UTF-8 go out as their bytes. Closed below.
        stream = open(path, "a" if append else "w", encoding="utf-8", errors="surrogateescape", newline="")  # noqa: SIM115
    except OSError as exc:
        raise OutputError(f"{path}: cannot write output ({exc.strerror or exc})") from None
    with stream:
        yield stream


@contextlib.contextmanager
def _status(message: str) -> Iterator[None]:
    """A spinner with a message on stderr when it is a terminal; silent otherwise."""
    if not sys.stderr.isatty():
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(message):
        yield


def main() -> None:
    """Console-script entry point."""
    # File names need not be UTF-8: read them from stdin and write them to stdout as the bytes
    # they are (like find and ls), instead of failing on the first such name.
    for stream in (sys.stdin, sys.stdout):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="surrogateescape")
    app(prog_name="xclip")
