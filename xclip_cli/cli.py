"""The ``xclip`` command: parses options, calls the library, picks a writer.

The only module that imports typer. Heavy imports (torch, transformers) happen inside the
commands that need a model, so ``xclip --help`` and ``xclip labels list`` start fast.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer

from . import __version__
from .checkpoints import DEFAULT_MODEL, KNOWN_CHECKPOINTS, ZERO_SHOT_MODEL
from .errors import ExitCode, OutputError, UsageError, XClipError
from .labels import builtin_dir, builtin_names, load_labelset_file, resolve_labels
from .writers import FORMATS, WRITERS, data_console

PIPED_WIDTH = 160  # columns for tables written to a pipe or file

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
DeviceOpt = Annotated[str, typer.Option("--device", envvar="XCLIP_DEVICE", help="auto, cpu, cuda, cuda:N or mps.")]
FormatOpt = Annotated[
    str | None,
    typer.Option("--format", "-f", help=f"{', '.join(FORMATS)}; default: from the -o extension, else table."),
]
OutputOpt = Annotated[Path | None, typer.Option("--output", "-o", help="Write results to this file, not stdout.")]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def reports_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """The one place where domain errors become a one-line message and an exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
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
            if os.environ.get("XCLIP_DEBUG"):
                raise
            _stderr(f"xclip: internal error: {type(exc).__name__}: {exc} (set XCLIP_DEBUG=1 for a traceback)")
            raise typer.Exit(int(ExitCode.INTERNAL)) from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        print(f"xclip-cli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Zero-shot video classification with X-CLIP."""


@app.command()
@reports_errors
def classify(
    videos: Annotated[list[str], typer.Argument(help="Video files; '-' reads paths from stdin, one per line.")],
    labels: LabelsOpt = "kinetics400",
    model: ModelOpt = DEFAULT_MODEL,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Labels to report per video.")] = 5,
    output_format: FormatOpt = None,
    output: OutputOpt = None,
    device: DeviceOpt = "auto",
    start: Annotated[float | None, typer.Option(min=0, help="Sample from this second on.")] = None,
    end: Annotated[float | None, typer.Option(min=0, help="Sample up to this second.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Videos per vision-encoder call.")] = 1,
) -> None:
    """Classify videos against a label set and print the top labels."""
    _check_range(start, end)
    writer_class = WRITERS[_pick_format(output_format, output)]
    labelset = resolve_labels(labels)
    if len(labelset) == 1:
        _stderr(f"xclip: warning: label set {labelset.name!r} has one label: every probability will be 1")
    _check_writable(output, videos)
    _check_some_input_exists(videos)
    from .classify import ClassifyOptions, classify_videos
    from .runner import XClipRunner

    with _status(f"Loading {model}"):
        runner = XClipRunner.from_pretrained(model, device=device)
    options = ClassifyOptions(top_k=top_k, start=start, end=end, batch_size=batch_size)
    done = failed = 0
    with _open_output(output) as stream:
        writer = writer_class(stream)
        try:
            for result in classify_videos(runner, _expand_stdin(videos), labelset, options):
                done += 1
                if not result.ok:
                    failed += 1
                    _stderr(f"xclip: error: {result.path}: {result.error}")
                writer.write(result)
        finally:
            writer.close()  # also on Ctrl-C: a JSON array of the videos finished so far
    if done == 0:
        raise UsageError("no videos to classify (stdin gave no paths)")
    if failed:
        raise typer.Exit(int(ExitCode.ALL_FAILED if failed == done else ExitCode.PARTIAL))


def _check_range(start: float | None, end: float | None) -> None:
    for name, value in (("--start", start), ("--end", end)):
        if value is not None and not math.isfinite(value):
            raise UsageError(f"{name} {value}: expected a number of seconds")
    if end is not None and end <= (start or 0.0):
        raise UsageError(f"--end {end:g} must be after --start {start or 0:g}")


def _pick_format(output_format: str | None, output: Path | None) -> str:
    """``--format``, else the ``-o`` file's extension (.json, .jsonl, .csv), else a table."""
    if output_format is None:
        suffix = output.suffix.lower().lstrip(".") if output is not None else ""
        return suffix if suffix in WRITERS and suffix != "table" else "table"
    if output_format not in WRITERS:
        raise UsageError(f"--format {output_format!r}: expected one of {', '.join(FORMATS)}")
    return output_format


@app.command()
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
def labels_show(name: Annotated[str, typer.Argument(help="Built-in name or YAML file.")]) -> None:
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
        _stderr(f"xclip: error: {video}: No such file or directory")
    raise typer.Exit(int(ExitCode.ALL_FAILED))


def _same_file(a: Path, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


@contextlib.contextmanager
def _open_output(path: Path | None) -> Iterator[TextIO]:
    """stdout, or the ``-o`` file (created or truncated only once results are coming)."""
    if path is None:
        yield sys.stdout
        return
    try:
        stream = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115 (closed below)
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
    app(prog_name="xclip")
