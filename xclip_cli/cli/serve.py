"""``xclip serve``: keep a model loaded and classify over HTTP."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated, Any

import typer

from xclip_cli.cli.common import load_runner, set_verbose
from xclip_cli.cli.errors import say
from xclip_cli.cli.options import BackendOpt, DeviceOpt, ModelOpt, PrecisionOpt, VerboseOpt
from xclip_cli.errors import ExitCode, UsageError
from xclip_cli.labels import resolve_labels_without_files
from xclip_cli.model.checkpoints import DEFAULT_MODEL
from xclip_cli.run.protocol import MAX_QUEUE, TOKEN_ENV, check_exposure, check_token


def serve(
    model: ModelOpt = DEFAULT_MODEL,
    host: Annotated[str, typer.Option(help="Interface to listen on (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free port).")] = 8765,
    root: Annotated[
        list[Path] | None, typer.Option(help="Folder whose videos requests may name by path (repeatable; default: .).")
    ] = None,
    max_upload_mb: Annotated[int, typer.Option(min=1, help="Largest video upload accepted, in MB.")] = 512,
    token: Annotated[
        str | None,
        typer.Option(
            envvar=TOKEN_ENV,
            help="Shared secret every request must send (Authorization: Bearer); required unless --host is loopback.",
        ),
    ] = None,
    max_queue: Annotated[
        int, typer.Option(min=1, help="Classify requests running or waiting at once; more get 503 and Retry-After.")
    ] = MAX_QUEUE,
    labels: Annotated[str, typer.Option("--labels", "-l", help="Label set when a request names none.")] = "kinetics400",
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "fp32",
    backend: BackendOpt = "auto",
    verbose: VerboseOpt = False,
) -> None:
    """Keep a model loaded and classify over HTTP: xclip classify --server, or POST /classify.

    Listens on 127.0.0.1 (this machine) unless --host says otherwise; any other host needs --token
    (or XCLIP_TOKEN), which requests then send as Authorization: Bearer TOKEN. GET /health and GET /model
    describe it; POST /classify takes {"path": ..., "labels": ..., "top_k": ...} as JSON (a file
    inside a --root folder) or a video as the body (labels, top_k, name in the query), and answers
    with what xclip classify -f json prints. Label files are never read for a request. Each
    request is logged on stderr; Ctrl-C or SIGTERM stops it.
    """
    from xclip_cli.run.server import ClassifyService, make_server

    set_verbose(verbose)
    token = check_token(token)
    check_exposure(host, token)  # before the model loads
    roots = root or [Path.cwd()]
    for folder in roots:
        if not folder.is_dir():
            raise UsageError(f"--root {folder}: no such folder")
    resolve_labels_without_files(labels)  # a bad default fails here, not in every request
    runner = load_runner(model, device, precision, backend)
    service = ClassifyService(
        runner,
        roots,
        max_upload_mb * 1024 * 1024,
        labels,
        log=lambda line: say(f"xclip: {line}"),
        token=token,
        max_queue=max_queue,
    )
    try:
        server = make_server(service, host, port)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    address, bound = str(server.server_address[0]), int(server.server_address[1])
    address = f"[{address}]" if ":" in address else address  # an IPv6 address in a URL
    signal.signal(signal.SIGTERM, _interrupt)  # a service manager's stop: the same goodbye as Ctrl-C
    with server:
        try:  # the line first said inside: a stop sent on reading it gets the goodbye too
            say(
                f"xclip: serving {runner.model_id} on http://{address}:{bound} "
                f"({runner.backend}; roots: {', '.join(map(str, roots))}{'; token required' if token else ''})"
            )
            server.serve_forever()
        except KeyboardInterrupt:
            say(f"xclip: stopped serving on http://{address}:{bound}")
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
