"""One digest for everything the tool names by its content: label sets and their tagging
settings (in results files), the ONNX cache's checkpoint stamps and prepared folders, cached
text features.

12 hex digits of SHA-256 (48 bits): results files and caches hold at most millions of names, so
two different contents sharing one is out of reach (about 1 in 10^8 for a million names), and
a name stays short enough to read in a CSV cell. Weight fingerprints (``model.torch.runner``)
are not content digests: they stay full SHA-256, as indexes built earlier store them.
"""

from __future__ import annotations

import hashlib
import json

DIGEST_LENGTH = 12  # hex digits


def digest(content: object) -> str:
    """The digest of ``content``: bytes as they are, text as UTF-8, anything else (lists, dicts,
    numbers) as its JSON with keys sorted and non-ASCII text kept as it is."""
    if isinstance(content, bytes):
        data = content
    elif isinstance(content, str):
        data = content.encode("utf-8", "surrogateescape")
    else:
        data = json.dumps(content, ensure_ascii=False, sort_keys=True).encode("utf-8", "surrogateescape")
    return hashlib.sha256(data).hexdigest()[:DIGEST_LENGTH]
