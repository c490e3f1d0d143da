"""The one place where domain errors become a one-line message and an exit code."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

import typer

from xclip_cli.errors import ExitCode, Interrupted, XClipError


def say(message: str) -> None:
    """One line on stderr (data goes to stdout, everything else here)."""
    print(message, file=sys.stderr, flush=True)


def reports_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Run a command; turn what it raises into ``xclip: ...`` on stderr and the exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except Interrupted as exc:
            say(f"xclip: interrupted: {exc}")
            raise typer.Exit(int(exc.exit_code)) from None
        except XClipError as exc:
            say(f"xclip: error: {exc}")
            raise typer.Exit(int(exc.exit_code)) from None
        except KeyboardInterrupt:
            say("xclip: interrupted")
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
            say(f"xclip: internal error: {type(exc).__name__}: {exc} (set XCLIP_DEBUG=1 for a traceback)")
            raise typer.Exit(int(ExitCode.INTERNAL)) from None

    return wrapper
