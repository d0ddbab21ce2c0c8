"""Fail fast, with the offline alternative, when a hub resource is needed and the hub is unreachable.

Without this, transformers/datasets spend ~20 s retrying and end in a long stack trace.
"""
from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
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


# The packaged model of each kind: what to run offline instead of a hub model (and what to know about it).
OFFLINE_MODELS = {"causal_lm": ("model=smollm2_135m", ""), "seq_cls": ("model=minilm_l6", ""),
                  "seq2seq": ("model=tiny_t5", " (tiny_t5 has random weights: no T5 is packaged)")}
_TASKS = Path(__file__).resolve().parent.parent / "configs" / "task"


def preflight(cfg) -> None:
    """Every hub resource a run needs, with each one's offline alternative, in one error before anything loads:
    a paper experiment offline names both its packaged model and its task's mini variant."""
    needs, instead, note = [], [], ""
    src = cfg.model.source
    if not (src.startswith(("packaged:", "random:")) or os.path.isdir(os.path.expanduser(src))):
        needs.append(f"model '{src}'")
        model, note = OFFLINE_MODELS.get(cfg.model.kind, OFFLINE_MODELS["causal_lm"])
        instead.append(model)
    if not cfg.task.mini:
        needs.append(f"task '{cfg.task.name}' data")
        minis = [m for m in (f"{cfg.task.name}_mini", f"{cfg.task.family}_mini") if (_TASKS / f"{m}.yaml").exists()]
        instead.append(f"task={minis[0]}" if minis else "a *_mini task")
    if needs and not hub_reachable():
        if cfg.get("offline"):   # an experiment's own stand-in: the overrides its settings need on packaged assets
            instead = [cfg.offline]
        raise OfflineError(f"{' and '.join(needs)} come from the Hugging Face hub, which is unreachable here (offline, "
                           f"or HF_HUB_OFFLINE=1). Offline, use {' '.join(instead)} instead{note}.")
