"""What the commands share around the library: input paths, output files and formats, the
model's loading, progress and the final exit code."""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

import typer

from xclip_cli.cli.errors import say
from xclip_cli.errors import ExitCode, Interrupted, OutputError, UsageError
from xclip_cli.media.discovery import read_path_list
from xclip_cli.model.backend import Backend
from xclip_cli.output.writers import EXTENSION_FORMATS, FORMATS, Writer, data_console
from xclip_cli.results import Tally, VideoResult
from xclip_cli.store.locks import exclusive

PIPED_WIDTH = 160  # columns for tables written to a pipe or file
PLOT_EXTENSIONS = ("png", "svg", "pdf", "jpg", "jpeg")  # what matplotlib writes (jpg through pillow)


# --- inputs -----------------------------------------------------------------------------------


def expand_stdin(videos: list[str]) -> Iterator[str]:
    """Paths as given, with '-' replaced by the paths stdin lists (``read_path_list``), as they come."""
    for video in videos:
        if video == "-":
            yield from read_path_list(sys.stdin, "stdin")
        else:
            yield video


def listed_paths(from_file: str | None) -> list[str]:
    """The paths ``--from-file`` lists ('-': stdin; ``read_path_list``); none without it."""
    if from_file is None:
        return []
    if from_file == "-":
        return list(read_path_list(sys.stdin, "--from-file -"))
    try:
        # newline="\n": a path may hold any other line-breaking character (\x1c, \u2028, ...).
        with open(from_file, encoding="utf-8", errors="surrogateescape", newline="\n") as lines:
            return list(read_path_list(lines, f"--from-file {from_file}"))
    except OSError as exc:
        raise UsageError(f"--from-file {from_file}: {exc.strerror or exc}") from None


def check_no_folders(videos: list[str]) -> None:
    """A folder is a scan's job: say so before the model loads, not one error per file later."""
    for video in videos:
        if os.path.isdir(video):
            raise UsageError(f"{video} is a folder: use xclip scan {shlex.quote(video)} to classify the videos in it")


def check_some_input_exists(videos: list[str]) -> None:
    """Fail before loading the model (seconds) when no named video exists at all."""
    if "-" in videos or any(os.path.exists(video) for video in videos):
        return
    for video in videos:
        say(f"xclip: error: {video}: no such file")
    raise typer.Exit(int(ExitCode.ALL_FAILED))


# --- outputs ----------------------------------------------------------------------------------


def pick_format(
    output_format: str | None,
    output: Path | None,
    command: str,
    formats: Iterable[str] = FORMATS,
    default: str = "table",
    aliases: Mapping[str, str] | None = None,
) -> str:
    """``--format``, else the ``-o`` file's extension (or an extension ``aliases`` maps to a
    format), else ``default``.

    An extension that names no format the command writes (``out.srt``, ``out.xlsx``) is refused:
    writing a table into it would look like success.
    """
    formats = tuple(formats)
    suffix = output.suffix.lower().lstrip(".") if output is not None else ""
    if output_format is not None:
        if output_format not in formats:
            raise UsageError(f"--format {output_format!r}: xclip {command} writes {', '.join(formats)}")
        return output_format
    if not suffix:
        return default
    if suffix in formats and suffix != "table":
        return suffix
    if aliases and suffix in aliases:
        return aliases[suffix]
    raise UsageError(
        f"{output}: xclip {command} writes {', '.join(formats)}, not .{suffix}; "
        "end the file name in one of those or give --format"
    )


def check_extension(path: Path | None, option: str, extensions: tuple[str, ...]) -> None:
    """A file option that can hold one kind of file only (``--confusion x.csv``, ``--plot x.png``)."""
    if path is not None and path.suffix and path.suffix.lower().lstrip(".") not in extensions:
        raise UsageError(f"{option} {path}: writes {' or '.join('.' + ext for ext in extensions)} files")


def check_report(report: Path | None, *others: Path | None) -> None:
    """``--report`` names a writable .html file that is none of the other outputs."""
    if report is None:
        return
    check_extension(report, "--report", ("html", "htm"))
    if not report.suffix:
        raise UsageError(f"--report {report}: name an .html file")
    from xclip_cli.media.thumbnails import store_path  # numpy comes with it: only when a report is asked for

    for other in others:
        if other is None:
            continue
        if os.path.abspath(other) == os.path.abspath(report):
            raise UsageError(f"--report {report} is also another output of this command")
        if os.path.abspath(other) == os.path.abspath(store_path(report)):
            raise UsageError(f"{other} is where --report {report} keeps its thumbnails: name another output")
    check_writable(report)


def check_writable(path: Path | None, videos: Iterable[str] = ()) -> None:
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


def _same_file(a: Path, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def display_path(path: str) -> str:
    """A stored absolute path as a user can use it here: relative below the current folder
    (not when that is the file system's root, where the absolute path reads better)."""
    cwd = os.getcwd()
    if not os.path.isabs(path) or cwd == os.path.dirname(cwd):
        return path
    relative = os.path.relpath(path, cwd)
    return path if relative.startswith(os.pardir) else relative


@contextlib.contextmanager
def open_output(
    path: Path | None, append: bool = False, stdout: TextIO | None = None, fmt: str | None = None, locked: bool = False
) -> Iterator[TextIO]:
    """stdout (or ``stdout``), or the ``-o`` file (created, truncated or appended to) with its
    lock held (``locked``: the caller holds it already): a second xclip writing the same file is
    refused, never interleaved. Writing ``fmt`` into a file whose extension names another
    format (``-f json -o x.csv``, ``-f csv -o x.srt``) is done, as asked, with a warning."""
    if path is None:
        yield stdout or sys.stdout
        return
    named = EXTENSION_FORMATS.get(path.suffix.lower().lstrip("."))
    if fmt is not None and named not in (None, fmt):
        say(f"xclip: warning: writing {fmt} into {path}, as --format says")
    with contextlib.nullcontext() if locked else exclusive(path):
        try:
            # surrogateescape: file names that are not UTF-8 go out as their bytes. Closed below.
            stream = open(path, "a" if append else "w", encoding="utf-8", errors="surrogateescape", newline="")  # noqa: SIM115
        except OSError as exc:
            raise OutputError(f"{path}: cannot write output ({exc.strerror or exc})") from None
        with stream:
            yield stream


def check_replaceable(path: Path | None, overwrite: bool) -> None:
    """``-o`` over a file that holds no xclip output (a spreadsheet, someone's subtitles) needs
    ``--overwrite``: refused before any work. Earlier output of the tool is replaced as asked."""
    from xclip_cli.output.writers import holds_xclip_output

    if path is None or overwrite or not path.is_file() or holds_xclip_output(path):
        return
    raise OutputError(f"{path}: exists and holds no xclip output; --overwrite writes over it")


def print_table(table: Any) -> None:
    """Print to stdout; when piped, wide enough that no cell is cut (Rich assumes 80 columns)."""
    data_console(sys.stdout, width=None if sys.stdout.isatty() else PIPED_WIDTH).print(table)


# --- running ----------------------------------------------------------------------------------


def set_verbose(verbose: bool) -> None:
    """ffmpeg stays silent unless asked: its messages are for debugging a file, not for users."""
    if verbose:
        import av.logging

        av.logging.set_level(av.logging.WARNING)


def load_runner(model: str, device: str, precision: str, backend: str = "auto", videos: int | None = None) -> Backend:
    """``model.open.open_backend`` with a spinner while it loads and its notes on stderr
    (``videos``: how many the run passes through the vision graph, when known; 0 for commands
    that score stored features)."""
    from xclip_cli.model.open import open_backend

    with status(f"Loading {model}"):
        return open_backend(model, device, precision, backend, say, videos=videos)


@contextlib.contextmanager
def status(message: str) -> Iterator[None]:
    """A spinner with a message on stderr when it is a terminal; silent otherwise."""
    if not sys.stderr.isatty():
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(message):
        yield


def report_problems(result: VideoResult) -> None:
    from xclip_cli.cli.progress import report_lines

    for line in report_lines(result):
        say(line)


def write_all(results: Iterable[VideoResult], writer: Writer | None, each: Callable[[VideoResult], None]) -> Tally:
    """Write every result as it comes (``writer=None``: the results store themselves) and count
    them, each with the file its path leads to from here (``resolved_path``). The writer is closed
    even on Ctrl-C, so a JSON array holds the videos finished so far."""
    from xclip_cli.store.results_file import video_identity

    report = Tally()
    try:
        for named in results:
            result = replace(named, resolved_path=video_identity(named.path))
            report.add(result)
            each(result)
            if writer is not None:
                writer.write(result)
    finally:
        if writer is not None:
            writer.close()
    return report


@contextlib.contextmanager
def resumable(output: Path | None, report: Path | None = None) -> Iterator[None]:
    """On Ctrl-C, say that the same command resumes (the file holds every finished video), and
    where the page of what is done is (``report``, written on the way out)."""
    try:
        yield
    except KeyboardInterrupt:
        if output is None:
            raise
        page = f" ({report} shows them)" if report is not None else ""
        raise Interrupted(f"{output} holds every finished video{page}; rerun the same command to resume") from None


def finish(report: Tally | None, *written: Path | None, quiet: bool = False) -> None:
    """Say which files were written (stderr), then exit with the report's code."""
    if not quiet:
        for path in written:
            if path is not None:
                say(f"xclip: wrote {path}")
    if report is not None and report.exit_code != ExitCode.OK:
        raise typer.Exit(int(report.exit_code))


def nothing_to_do(found: int, output: Path | None, quiet: bool, failed: int = 0) -> None:
    """A rerun with every video done (or none found) says so, and loads nothing; ``failed``:
    error rows left in the output (the exit code says so too)."""
    if quiet:
        return
    say(f"xclip: nothing to do: {f'all {found} videos are already in {output}' if found else 'no videos found'}")
    if failed:
        rows = "1 row is an error" if failed == 1 else f"{failed} rows are errors"
        say(f"xclip: {output}: {rows}; --retry-failed classifies those videos again")
