"""Which backend runs a checkpoint: ONNX Runtime on the CPU, torch elsewhere.

``open_backend`` is what every command (and the Ray engine's driver) calls. ``auto``, the
default, runs fp32 and int8 on ONNX Runtime when the model runs on the CPU, and torch on a GPU
or for bf16. A checkpoint is prepared for ONNX Runtime the first time it runs there (about a
minute for a base model on 2 cores, said on stderr; ``xclip models prepare`` does it ahead);
from then on it opens without importing torch or transformers, as long as its files have not
changed. ``--backend torch`` never prepares anything.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

from xclip_cli.errors import OutputError, UsageError
from xclip_cli.model.backend import BACKENDS, ONNX_PRECISIONS, Backend

EXPORT_PACKAGES = ("onnxruntime", "onnx", "onnxscript")


def open_backend(
    model: str,
    device: str = "auto",
    precision: str = "fp32",
    backend: str = "auto",
    say: Callable[[str], None] | None = None,
    threads: int | None = None,
) -> Backend:
    """The checkpoint on the asked backend: ``onnx``, ``torch`` or ``auto`` (see the module).

    ``say`` receives one-line notes (preparing, warnings); ``threads`` caps ONNX Runtime's
    threads (a Ray actor's share of a node).
    """
    if backend not in BACKENDS:
        raise UsageError(f"--backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if precision == "int8" and backend == "torch":
        raise UsageError("--precision int8 runs on ONNX Runtime: use --backend onnx (or auto)")
    if precision not in ONNX_PRECISIONS and backend == "onnx":
        raise UsageError(f"--backend onnx runs fp32 or int8, not --precision {precision}: use --backend torch")
    if backend != "torch" and precision in ONNX_PRECISIONS and _installed("onnxruntime"):
        from xclip_cli.model.device import surely_cpu
        from xclip_cli.model.onnx.cache import add_int8, find_prepared
        from xclip_cli.model.onnx.runner import OnnxRunner

        folder = find_prepared(model) if surely_cpu(device) else None
        if folder is not None and (precision != "int8" or _installed("onnx")):
            if precision == "int8":
                add_int8(folder, say)  # quantised from the fp32 graph: no torch needed
            return OnnxRunner.open(folder, model, int8=precision == "int8", threads=threads)
    return _open_with_torch(model, device, precision, backend, say, threads)


def _open_with_torch(
    model: str, device: str, precision: str, backend: str, say: Callable[[str], None] | None, threads: int | None
) -> Backend:
    """Load with transformers; for ONNX Runtime, export the graphs first (once per checkpoint)."""
    from xclip_cli.model.device import bf16_is_fast
    from xclip_cli.model.onnx.cache import checkpoint_stamp
    from xclip_cli.model.torch.runner import XClipRunner

    stamp = checkpoint_stamp(model)  # before loading: names the files that were loaded
    runner = XClipRunner.from_pretrained(model, device=device, precision="fp32" if precision == "int8" else precision)
    if precision == "bf16" and not bf16_is_fast(runner.device) and say is not None:
        say("xclip: warning: this CPU has no bfloat16 units: --precision bf16 will be slower than fp32")
    on_cpu = runner.device.type == "cpu"
    if backend == "torch" or (backend == "auto" and precision != "int8" and not (on_cpu and precision == "fp32")):
        return runner
    if not on_cpu:
        raise UsageError(f"--backend onnx runs on the CPU, not on {runner.device}: use --device cpu or --backend torch")
    missing = [name for name in EXPORT_PACKAGES if not _installed(name)]
    if missing:
        if backend == "auto" and precision == "fp32":
            return runner  # a trimmed install: torch it is
        raise UsageError(
            f"ONNX Runtime needs {', '.join(missing)} (xclip-cli depends on them): pip install {' '.join(missing)}"
        )
    from xclip_cli.model.onnx.export import prepare
    from xclip_cli.model.onnx.runner import OnnxRunner

    try:
        folder = prepare(runner, say, int8=precision == "int8", stamp=stamp or checkpoint_stamp(model))
    except OutputError as exc:
        if backend != "auto" or precision != "fp32":
            raise
        if say is not None:
            say(f"xclip: warning: {exc}; running on torch")
        return runner
    del runner  # its memory is the graphs' now
    return OnnxRunner.open(folder, model, int8=precision == "int8", threads=threads)


def _installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None
