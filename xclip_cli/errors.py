"""Domain errors and the process exit codes they map to.

The core raises these; only the CLI turns them into one-line messages and exit codes.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of the ``xclip`` command (documented in the README)."""

    OK = 0
    INTERNAL = 1  # a bug: unexpected exception (traceback only with XCLIP_DEBUG=1)
    USAGE = 2  # bad command-line usage (also what Click uses)
    PARTIAL = 3  # some inputs failed, the others have results
    ALL_FAILED = 4  # every input failed
    LABELS = 5  # the label set could not be loaded or is invalid
    MODEL = 6  # the model could not be loaded
    OUTPUT = 7  # the output could not be written
    ENGINE = 8  # the engine or server could not be reached (Ray cluster, xclip serve), or a scan on Ray failed
    MISSING = 9  # what was asked needs a package that is not installed (the message gives the command)
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
    BROKEN_PIPE = 141  # the reader of stdout went away (128 + SIGPIPE)


class XClipError(Exception):
    """Base of every error the tool reports as a one-line message."""

    exit_code: ExitCode = ExitCode.INTERNAL


class VideoError(XClipError):
    """A video could not be opened, decoded or sampled."""

    exit_code = ExitCode.ALL_FAILED

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason

    def __reduce__(self) -> tuple[type[VideoError], tuple[str, str]]:
        # Crosses process boundaries (Ray workers) intact; Exception's default needs one argument.
        return (type(self), (self.path, self.reason))


class LabelSetError(XClipError):
    """A label set is missing or invalid; the message names the file and the key."""

    exit_code = ExitCode.LABELS


class ModelLoadError(XClipError):
    """A checkpoint, its tokenizer or its processor config could not be loaded."""

    exit_code = ExitCode.MODEL


class OutputError(XClipError):
    """The output destination cannot be written."""

    exit_code = ExitCode.OUTPUT


class UsageError(XClipError):
    """Options that are individually valid but cannot be combined or resolved."""

    exit_code = ExitCode.USAGE


class MissingDependency(XClipError):
    """What was asked needs an optional package (torch, Ray, OpenTimelineIO...): the message
    names it and the install command."""

    exit_code = ExitCode.MISSING


class Interrupted(XClipError):
    """Ctrl-C during a resumable run; the message says what was kept and how to go on."""

    exit_code = ExitCode.INTERRUPTED


class EngineError(XClipError):
    """The engine or server could not be reached: Ray could not start or failed outside any one video,
    or the ``xclip serve`` of ``classify --server`` did not answer (or stayed busy)."""

    exit_code = ExitCode.ENGINE
