"""What ``xclip serve`` and ``xclip classify --server`` agree on, without the model code.

* Which files the server reads itself: those inside its roots, after resolving symlinks and
  ``..`` (``inside_roots``); ``GET /model`` lists the roots and the upload limit, so that a client
  decides before sending whether to name a path or upload the bytes.
* Who may ask: a server reachable from other machines requires a shared token, sent as
  ``Authorization: Bearer TOKEN`` (``check_exposure``, ``check_token``).
* How much may wait: at most ``MAX_QUEUE`` classify requests at once; more are answered 503 with
  ``Retry-After: RETRY_AFTER_SECONDS``, their bodies unread.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable

from xclip_cli.errors import UsageError

MAX_QUEUE = 8  # classify requests running or waiting at once (default of --max-queue)
RETRY_AFTER_SECONDS = 1  # what a 503 asks a client to wait
TOKEN_ENV = "XCLIP_TOKEN"
TOKEN_HINT = "python -c 'import secrets; print(secrets.token_urlsafe())'"


def inside_roots(path: str, roots: Iterable[str]) -> str | None:
    """The real path of ``path`` if it lies inside one of the (real) ``roots``, else None."""
    real = os.path.realpath(path)
    return real if any(os.path.commonpath([real, root]) == root for root in roots) else None


def is_loopback(host: str) -> bool:
    """Whether listening on ``host`` reaches this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a name other than localhost, or "" (every interface)
        return False


def check_token(token: str | None) -> str | None:
    """A usable token (printable ASCII, no spaces: it travels in a header), or None when not given."""
    if not token:
        return None
    if not (token.isascii() and token.isprintable()) or " " in token:
        raise UsageError(f"--token (or {TOKEN_ENV}): use printable ASCII without spaces, e.g. from {TOKEN_HINT}")
    return token


def check_exposure(host: str, token: str | None) -> None:
    """Refuse to listen beyond this machine without a token: anyone reaching the port could decode anything."""
    if token is None and not is_loopback(host):
        raise UsageError(
            f"--host {host or '(every interface)'} is reachable from other machines: give a shared token "
            f"with --token or {TOKEN_ENV} (e.g. from {TOKEN_HINT}); clients send the same"
        )
