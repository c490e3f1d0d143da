"""The ``xclip`` command: each command parses its options, calls the library, picks a writer.

The only package that imports typer. Heavy imports (torch, transformers) happen inside the
commands that need a model, so ``xclip --help`` and ``xclip labels list`` start fast. One
module per command group; shared options in ``options``, the error mapping in ``errors``,
inputs, outputs and exit codes in ``common``.
"""

from __future__ import annotations

import io
import sys
from typing import Annotated

import typer

from xclip_cli.cli.classify import classify
from xclip_cli.cli.errors import reports_errors
from xclip_cli.cli.evaluate import evaluate_command
from xclip_cli.cli.help_text import epilog
from xclip_cli.cli.index import embed, search
from xclip_cli.cli.info import (
    completion,
    help_command,
    labels_list,
    labels_show,
    models_listing,
    models_prepare,
    show_version,
)
from xclip_cli.cli.scan import scan
from xclip_cli.cli.serve import serve
from xclip_cli.cli.timeline import timeline

# Shown in full in `xclip --help` (Click cuts a docstring's first line at 45 characters).
SHORT_HELP = {
    "classify": "Classify videos against a label set: the top labels of each.",
    "scan": "Classify every video in folders into a CSV; reruns resume.",
    "embed": "Encode videos once into an index for search and classify --index.",
    "eval": "Accuracy of a label set on labelled videos (top-1, top-5, per class).",
    "search": "Rank the videos of an index by how well they match a text.",
    "serve": "Keep a model loaded and classify over HTTP.",
    "timeline": "What happens when: classify sliding windows of one video.",
    "models": "List the published X-CLIP checkpoints; models prepare: for ONNX Runtime.",
    "help": "Show the help of a command: xclip help scan.",
    "completion": "Print the completion script for bash, zsh or fish.",
}

app = typer.Typer(
    help="Zero-shot video classification with X-CLIP.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
labels_app = typer.Typer(help="List and inspect the built-in label sets.", no_args_is_help=True)
models_app = typer.Typer(help="The published X-CLIP checkpoints; prepare one for ONNX Runtime.")


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=show_version, is_eager=True, help="Show the versions and exit.")
    ] = False,
) -> None:
    """Zero-shot video classification with X-CLIP."""


for name, command in (
    ("classify", classify),
    ("scan", scan),
    ("embed", embed),
    ("eval", evaluate_command),
    ("search", search),
    ("serve", serve),
    ("timeline", timeline),
):
    app.command(name=name, epilog=epilog(name), short_help=SHORT_HELP[name])(reports_errors(command))
app.add_typer(models_app, name="models", short_help=SHORT_HELP["models"])
models_app.callback(invoke_without_command=True)(reports_errors(models_listing))
models_app.command("prepare", short_help="Export a checkpoint once for ONNX Runtime.")(reports_errors(models_prepare))
app.command(name="help", short_help=SHORT_HELP["help"])(help_command)
app.command(name="completion", short_help=SHORT_HELP["completion"])(reports_errors(completion))
app.add_typer(labels_app, name="labels")
labels_app.command("list")(reports_errors(labels_list))
labels_app.command("show")(reports_errors(labels_show))


def main() -> None:
    """Console-script entry point."""
    # File names need not be UTF-8: read them from stdin and write them to stdout as the bytes
    # they are (like find and ls), instead of failing on the first such name.
    for stream in (sys.stdin, sys.stdout):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="surrogateescape")
    app(prog_name="xclip")
