"""Options that several commands share, as ``Annotated`` aliases (one definition each)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import typer

from xclip_cli.media.sampling import SAMPLINGS
from xclip_cli.model.backend import BACKENDS
from xclip_cli.model.checkpoints import DEFAULT_MODEL
from xclip_cli.output.timecodes import parse_time
from xclip_cli.output.writers import FORMATS


def choices(values: Iterable[str]) -> str:
    """A metavar that lists the choices, as ``--format [table|json|jsonl|csv]``."""
    return "[" + "|".join(values) + "]"


def _time(text: str) -> float:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def time_option(help: str) -> Any:
    """An option that takes a time as ffmpeg reads one (``90``, ``1:30``, ``00:01:30.5``), in seconds."""
    return typer.Option(parser=_time, metavar="TIME", help=help)


ModelOpt = Annotated[
    str,
    typer.Option("--model", "-m", envvar="XCLIP_MODEL", help="Hub id or local folder of an X-CLIP checkpoint."),
]
# Where an explicit choice must be told from the default (classify --server, --index).
OptionalModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        envvar="XCLIP_MODEL",
        help=f"Hub id or local folder of an X-CLIP checkpoint [default: {DEFAULT_MODEL}; with --index: the index's].",
    ),
]


def complete_labels(incomplete: str) -> list[str]:
    """Shell completion for ``--labels``: the built-in set names (a file path completes as a path)."""
    from xclip_cli.labels import builtin_names

    return [name for name in builtin_names() if name.startswith(incomplete)]


LabelsOpt = Annotated[
    str,
    typer.Option(
        "--labels",
        "-l",
        help="Built-in set name, YAML file, or comma list ('cooking, dancing').",
        autocompletion=complete_labels,
    ),
]
DEVICE_HELP = "Where the model runs; auto: CUDA, then MPS, then CPU."
DEVICE_METAVAR = "[auto|cpu|cuda|cuda:N|mps]"
DeviceOpt = Annotated[str, typer.Option("--device", envvar="XCLIP_DEVICE", metavar=DEVICE_METAVAR, help=DEVICE_HELP)]
OptionalDeviceOpt = Annotated[
    str | None,
    typer.Option("--device", envvar="XCLIP_DEVICE", metavar=DEVICE_METAVAR, help=DEVICE_HELP + " [default: auto]"),
]
PRECISION_HELP = (
    "fp32 (exact); bf16: torch autocast, faster on CPUs with bfloat16 units; int8: ONNX Runtime's "
    "int8 vision weights. Both lossy: logits drift."
)
PRECISIONS = ("fp32", "bf16", "int8")
PrecisionOpt = Annotated[str, typer.Option(metavar=choices(PRECISIONS), help=PRECISION_HELP)]
OptionalPrecisionOpt = Annotated[
    str | None, typer.Option(metavar=choices(PRECISIONS), help=PRECISION_HELP + " [default: fp32]")
]
FormatOpt = Annotated[
    str | None,
    typer.Option(
        "--format", "-f", metavar=choices(FORMATS), help="Output format [default: from the -o extension, else table]."
    ),
]
ScanFormatOpt = Annotated[
    str | None,
    typer.Option(
        "--format",
        "-f",
        metavar=choices(("csv", "jsonl")),
        help="Output format [default: from the -o extension, else csv].",
    ),
]
OutputOpt = Annotated[Path | None, typer.Option("--output", "-o", help="Write results to this file, not stdout.")]
TopKOpt = Annotated[int, typer.Option("--top-k", "-k", min=1, help="Labels to report per video.")]
BatchOpt = Annotated[int, typer.Option(min=1, help="Videos per vision-encoder call (more helps on GPUs).")]
# 2: measured 1.35 s/video against 1.43-1.56 with 1 on one-slice 720p H.264 (two single-threaded
# decoders fill both cores), and equal on multi-slice files (bench scan path, 2-core CPU).
WorkersOpt = Annotated[
    int, typer.Option(min=0, help="Threads decoding the next videos while the model runs (0: none).")
]
TimeoutOpt = Annotated[
    float | None,
    time_option("Seconds a video's decoding may take (or MM:SS); slower files become errors (default: no limit)."),
]
ClipsOpt = Annotated[
    int, typer.Option(min=1, max=64, help="Temporal views per video; their probabilities are averaged.")
]
CropsOpt = Annotated[
    int, typer.Option(metavar="[1|3]", help="1: centre crop; 3: left/centre/right crops, averaged (X-CLIP's protocol).")
]
SAMPLING_HELP = (
    "exact: the frame at each sample point; keyframes: the nearest keyframe in the same segment "
    "where there is one (far less decoding; frames off-centre, counted in keyframe_substitutes)."
)
SamplingOpt = Annotated[str, typer.Option(metavar=choices(SAMPLINGS), help=SAMPLING_HELP)]
OptionalSamplingOpt = Annotated[
    str | None,
    typer.Option(metavar=choices(SAMPLINGS), help=SAMPLING_HELP + " [default: exact; with --index: the index's]"),
]
MultiLabelOpt = Annotated[
    bool,
    typer.Option(
        "--multi-label",
        help="Also tag: score every label on its own against background prompts; "
        "list those above their threshold (possibly none).",
    ),
]
ReportOpt = Annotated[
    Path | None,
    typer.Option(help="Also write a self-contained HTML page: what the model saw, the top labels, any problems."),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary on stderr.")]
OverwriteOpt = Annotated[bool, typer.Option(help="Start the output afresh instead of resuming it.")]
ReplaceOpt = Annotated[bool, typer.Option("--overwrite", help="Write -o even over a file that holds no xclip output.")]
RetryFailedOpt = Annotated[
    bool, typer.Option(help="Classify again the videos whose earlier row is an error, replacing those rows.")
]
VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help="Show ffmpeg's own messages, and a traceback for internal errors.")
]
PlotOpt = Annotated[Path | None, typer.Option(help="Also draw a picture into this file (.png, .svg, .pdf or .jpg).")]
# Options shared by the commands that walk folders (scan, embed).
FoldersArg = Annotated[list[str] | None, typer.Argument(metavar="[FOLDERS]...", help="Folders (or files) of videos.")]
FromFileOpt = Annotated[
    str | None, typer.Option("--from-file", help="Read video paths from this file ('-': stdin), one per line.")
]
RecursiveOpt = Annotated[bool, typer.Option(help="Descend into sub-folders.")]
GlobOpt = Annotated[str | None, typer.Option(help="Only paths (relative to the folder) matching this.")]
ExtOpt = Annotated[str | None, typer.Option(help="Comma list of extensions (default: common video types).")]
ShardOpt = Annotated[str | None, typer.Option(help="Process part i of n (i/n, from 0), stable across runs.")]
BackendOpt = Annotated[
    str,
    typer.Option(
        envvar="XCLIP_BACKEND",
        metavar=choices(BACKENDS),
        help="auto: ONNX Runtime on the CPU (fp32, int8; the first run prepares the checkpoint, "
        "about 1.5 minutes, once), torch on a GPU or for bf16. onnx, torch: force one.",
    ),
]

# How a video is cut into windows (xclip timeline, xclip embed --windows).
WindowOpt = Annotated[
    float | None, time_option("Window length in seconds or MM:SS (default: the checkpoint's frames x 1 s).")
]
StrideOpt = Annotated[
    float | None, time_option("Seconds between window starts, at most --window (default: window / 2).")
]
ShotsOpt = Annotated[
    bool,
    typer.Option("--shots", help="Windows follow the video's shots (PySceneDetect); long shots split at --window."),
]
