"""Decide once whether the Hugging Face hub can be reached, so that a missing download fails at once.

huggingface_hub retries an unreachable host for about a minute before giving up; when we already know
the hub is out of reach we switch it to offline mode, and a file that is not cached fails immediately.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
from urllib.parse import urlparse

_TRUE = {"1", "true", "yes", "on"}


def offline_requested() -> bool:
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    """True when the hub's host resolves and accepts a TCP connection within `timeout` seconds."""
    if offline_requested():
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def hub_mode():
    """Yields True when downloads may be attempted; otherwise holds huggingface_hub in offline mode."""
    online = hub_reachable()
    if online:
        yield True
        return
    import huggingface_hub.constants as constants

    previous = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield False
    finally:
        constants.HF_HUB_OFFLINE = previous


LOCAL_WEIGHTS = "pass a local weights file with --weights FILE (or a local folder for hf: models)"


def unreachable_message(spec: str, local: str = LOCAL_WEIGHTS) -> str:
    reason = "offline mode is on (HF_HUB_OFFLINE)" if offline_requested() else "the Hugging Face hub cannot be reached"
    return (
        f"{spec} could not be loaded: its files are not in the local cache and {reason}; run once with network access to cache them, "
        f"or {local}."
    )


def load_failure(spec: str, online: bool, error: Exception, local: str = LOCAL_WEIGHTS) -> "UserError":
    """The one sentence for a model whose files could not be had; `local` names the offline alternative."""
    from ..errors import UserError

    if not online:
        return UserError(unreachable_message(spec, local))
    first_line = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
    alternative = "a local weights file" if local == LOCAL_WEIGHTS else "a local folder"
    return UserError(f"{spec} could not be loaded from the hub ({first_line}); check the name, or pass {alternative}.")
