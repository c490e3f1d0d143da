"""What ``xclip CMD --help`` shows below the options: examples and exit codes, like a man page.

Plain text for Click's formatter: a paragraph after a ``\\b`` line is printed as written.
"""

from __future__ import annotations

from xclip_cli.errors import ExitCode

EXIT_MEANINGS = {
    ExitCode.OK: "success (every video classified)",
    ExitCode.INTERNAL: "internal error (a bug: set XCLIP_DEBUG=1 for a traceback)",
    ExitCode.USAGE: "bad usage: options that cannot mean what was asked (nothing was done)",
    ExitCode.PARTIAL: "some videos failed (their rows say why), the others have results",
    ExitCode.ALL_FAILED: "every video failed",
    ExitCode.LABELS: "the label set could not be loaded",
    ExitCode.MODEL: "the model could not be loaded",
    ExitCode.OUTPUT: "the output could not be written",
    ExitCode.ENGINE: "the engine or server could not be reached (Ray, or --server), or the Ray scan failed",
    ExitCode.MISSING: "needs a package that is not installed (the message gives the pip command)",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C); resumable commands keep what they finished",
    ExitCode.BROKEN_PIPE: "the reader of stdout went away (e.g. | head)",
}

_COMMON = (ExitCode.OK, ExitCode.USAGE, ExitCode.MODEL, ExitCode.MISSING, ExitCode.INTERNAL)
_PER_VIDEO = (ExitCode.PARTIAL, ExitCode.ALL_FAILED, ExitCode.LABELS, ExitCode.OUTPUT, ExitCode.INTERRUPTED)

EXAMPLES: dict[str, tuple[tuple[str, ...], tuple[ExitCode, ...]]] = {
    "classify": (
        (
            "xclip classify a.mp4 --labels kinetics400 --top-k 3",
            "xclip classify a.mp4 --labels 'cooking, dancing, skateboarding'",
            "xclip classify a.mp4 --labels my_labels.yaml -f json",
            "find footage -name '*.mp4' | xclip classify - -f jsonl",
            "xclip classify clip.mp4 --start 30 --end 90 -o results.csv",
            "xclip classify match.mp4 --clips 4 --crops 3",
            "xclip classify --index footage.index --labels sports -f csv",
            "xclip classify a.mp4 --server http://127.0.0.1:8765",
        ),
        (*_COMMON, *_PER_VIDEO, ExitCode.ENGINE, ExitCode.BROKEN_PIPE),
    ),
    "scan": (
        (
            "xclip scan ./footage --labels labels.yaml -o results.csv",
            "xclip scan ./footage -o results.csv            # rerun: only what is missing",
            "xclip scan ./a ./b --glob '**/cam1/*' --ext mp4,mkv -o part.csv",
            "find /archive -name '*.mov' | xclip scan --from-file - -o mov.csv",
            "xclip scan /archive -o part-3.csv --shard 3/8",
            "xclip scan ./phone-videos -o quick.csv --sampling keyframes   # less decoding, frames moved",
            "xclip scan /archive -o all.csv --engine ray --ray-address auto",
        ),
        (*_COMMON, *_PER_VIDEO, ExitCode.ENGINE),
    ),
    "embed": (
        (
            "xclip embed ./footage -o footage.index",
            "xclip embed ./footage -o footage.index          # rerun: only what is missing",
            "xclip embed ./footage -o archive.index --windows --sampling keyframes",
        ),
        (*_COMMON, ExitCode.PARTIAL, ExitCode.ALL_FAILED, ExitCode.OUTPUT, ExitCode.INTERRUPTED),
    ),
    "eval": (
        (
            "xclip eval ./labelled --labels ucf101 -o predictions.csv",
            "xclip eval manifest.csv --labels hmdb51 --protocol xclip --confusion confusion.csv",
        ),
        (*_COMMON, ExitCode.LABELS, ExitCode.OUTPUT, ExitCode.INTERRUPTED),
    ),
    "search": (
        (
            'xclip search footage.index "a dog catching a frisbee" -k 10',
            'xclip search footage.index "a goal celebration" -f csv -o hits.csv',
            'xclip search archive.index "a goal celebration" "a penalty kick" --report hits.html',
            'xclip search archive.index "a goal celebration" -o selects.edl',
        ),
        (*_COMMON, ExitCode.OUTPUT),
    ),
    "serve": (
        (
            "xclip serve --root ./footage",
            "XCLIP_TOKEN=$(python -c 'import secrets; print(secrets.token_urlsafe())') xclip serve --host 0.0.0.0",
            "xclip classify footage/a.mp4 --server http://127.0.0.1:8765",
            "curl -s localhost:8765/classify -H 'Content-Type: application/json' "
            '-d \'{"path": "footage/a.mp4", "labels": "sports"}\'',
        ),
        (*_COMMON, ExitCode.INTERRUPTED),
    ),
    "timeline": (
        (
            "xclip timeline match.mp4 --labels sports",
            "xclip timeline match.mp4 --labels sports --window 8 --stride 4",
            "xclip timeline cctv.mp4 --labels my.yaml -f csv -o when.csv --plot when.png",
            "xclip timeline match.mp4 --labels sports -o match.srt             # subtitles (.vtt too)",
            "xclip timeline match.mp4 --labels sports -o chapters.ffmetadata   # ffmpeg chapters",
            "xclip timeline match.mp4 --labels sports -o match.edl             # for editors (.otio, .fcpxml too)",
        ),
        (*_COMMON, ExitCode.ALL_FAILED, ExitCode.LABELS, ExitCode.OUTPUT, ExitCode.INTERRUPTED),
    ),
}


def epilog(command: str) -> str:
    """The Examples and Exit codes sections of ``command``'s help."""
    examples, codes = EXAMPLES[command]
    lines = ["Examples:", "", "\b", *(f"  {example}" for example in examples), "", "Exit codes:", "", "\b"]
    lines += [f"  {int(code):>3}  {EXIT_MEANINGS[code]}" for code in sorted(set(codes))]
    return "\n".join(lines)
