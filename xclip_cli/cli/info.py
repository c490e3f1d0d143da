"""What the tool knows without a model: checkpoints, label sets, help and version."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer

from xclip_cli.cli.common import load_runner, print_table
from xclip_cli.cli.errors import say
from xclip_cli.cli.options import ModelOpt, VerboseOpt
from xclip_cli.errors import ExitCode, UsageError, XClipError
from xclip_cli.labels import builtin_dir, builtin_names, load_labelset_file, resolve_labels
from xclip_cli.model.backend import ONNX_PRECISIONS
from xclip_cli.model.checkpoints import DEFAULT_MODEL, KNOWN_CHECKPOINTS, ZERO_SHOT_MODEL


def models_listing(ctx: typer.Context) -> None:
    """List the published X-CLIP checkpoints (any local save_pretrained folder works too)."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    table = Table(title="X-CLIP checkpoints on the Hugging Face hub", title_justify="left")
    for column, justify in (("model", "left"), ("frames", "right"), ("size", "right"), ("trained on", "left")):
        table.add_column(column, justify=justify, no_wrap=column == "model")  # type: ignore[arg-type]
    for ckpt in KNOWN_CHECKPOINTS:
        trained_on = f"{ckpt.trained_on}, {ckpt.note}" if ckpt.note else ckpt.trained_on
        marker = "★ " if ckpt.model_id == ZERO_SHOT_MODEL else "  "
        table.add_row(marker + ckpt.model_id, str(ckpt.frames), str(ckpt.resolution), trained_on)
    table.caption = "★ the authors' pick for open-vocabulary (zero-shot) labels"
    print_table(table)


def models_prepare(
    model: ModelOpt = DEFAULT_MODEL,
    precision: Annotated[
        str, typer.Option(metavar="fp32|int8", help="int8: also quantise the vision weights (for --precision int8).")
    ] = "fp32",
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Also copy the prepared model to this new folder: --model DIR runs it anywhere, "
            "without the checkpoint, torch or transformers.",
        ),
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Export a checkpoint once for ONNX Runtime (auto and --backend onnx on the CPU)."""
    if precision not in ONNX_PRECISIONS:
        raise UsageError(f"--precision {precision!r}: ONNX Runtime runs fp32 or int8")
    from xclip_cli.model.onnx.cache import copy_prepared
    from xclip_cli.model.onnx.runner import OnnxRunner

    started = time.monotonic()
    runner = load_runner(model, "cpu", precision, "onnx")  # prepares unless already prepared
    assert isinstance(runner, OnnxRunner)
    folder = runner.folder if output is None else copy_prepared(runner.folder, output)
    size = sum(item.stat().st_size for item in folder.iterdir()) / 1e6
    say(f"xclip: {model} is prepared: {folder} ({size:.0f} MB; {time.monotonic() - started:.1f} s this run)")


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
    print_table(table)


def labels_show(name: Annotated[str, typer.Argument(metavar="NAME", help="Built-in name or YAML file.")]) -> None:
    """Show a label set: templates, then one label per line (with its prompts if they differ)."""
    labelset = resolve_labels(name)
    print(f"# {labelset.name}: {len(labelset)} labels. {labelset.description}".rstrip())
    print(f"# templates: {', '.join(repr(t) for t in labelset.templates)}")
    for label in labelset.labels:
        extra = "" if label.prompts == (label.name,) else f"  (prompts: {'; '.join(label.prompts)})"
        print(f"{label.name}{extra}")


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
            say(f"xclip: error: no command {' '.join(command or [])!r}; see xclip --help")
            raise typer.Exit(int(ExitCode.USAGE))
        target, context = sub, type(ctx)(sub, info_name=name, parent=context)
    print(target.get_help(context))


COMPLETION_SHELLS = ("bash", "zsh", "fish")


def completion(
    shell: Annotated[str, typer.Argument(metavar="[bash|zsh|fish]", help="The shell to complete in.")],
) -> None:
    """Print the shell completion script (commands, options, built-in label sets for --labels)."""
    if shell not in COMPLETION_SHELLS:
        raise UsageError(f"completion {shell!r}: expected one of {', '.join(COMPLETION_SHELLS)}")
    # What `xclip --show-completion` prints for the shell it detects, for the shell named here.
    # Typer keeps the scripts in a private module; the tests run each one.
    from typer._completion_shared import get_completion_script

    # For the `xclip` console script (`python -m xclip_cli` is not a name a shell completes).
    print(get_completion_script(prog_name="xclip", complete_var="_XCLIP_COMPLETE", shell=shell))


def show_version(value: bool) -> None:
    """The tool's version, then what it runs on: what a bug report needs (imports torch: slow)."""
    if not value:
        return
    from importlib.metadata import PackageNotFoundError, version

    from xclip_cli import __version__

    print(f"xclip-cli {__version__}")
    for package, shown in (
        ("torch", "torch"),
        ("transformers", "transformers"),
        ("av", "PyAV"),
        ("onnxruntime", "ONNX Runtime"),
    ):
        try:
            print(f"{shown} {version(package)}")
        except PackageNotFoundError:
            print(f"{shown} not installed")
    try:
        from xclip_cli.model.device import resolve_device

        print(f"default device: {resolve_device(os.environ.get('XCLIP_DEVICE', 'auto'))}")
    except ImportError:
        print("default device: cpu (ONNX Runtime, prepared folders only: torch is not installed)")
    except XClipError as exc:
        print(f"default device: unknown ({exc})")
    raise typer.Exit()
