"""Fail fast, with the offline alternative, when a hub resource is needed and the hub is unreachable.

Without this, transformers/datasets spend ~20 s retrying and end in a long stack trace.
"""
from __future__ import annotations

import os
import socket
import threading
from urllib.parse import urlparse

from lorabench.errors import OfflineError

_TRUE = {"1", "true", "yes", "on"}


def hub_reachable(timeout: float = 3.0) -> bool:
    if any(os.environ.get(v, "").lower() in _TRUE for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    ok = []

    def probe():  # in a thread: DNS resolution has no timeout of its own
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout + 0.5)
    return bool(ok)


def require_hub(what: str, offline_alternative: str) -> None:
    if not hub_reachable():
        raise OfflineError(
            f"{what} comes from the Hugging Face hub, which is unreachable here (offline, or HF_HUB_OFFLINE=1). "
            f"Offline, use {offline_alternative} instead."
        )
