"""Third-party lines a lorabench user cannot act on stay out of the console and go to the run's log file
(Hydra's `<run dir>/<job>.log`). Each is matched by logger and message, so every other warning, from the same
libraries too, still prints."""
from __future__ import annotations

import logging

NOISE = (
    # a CPU run is the intent; DeepSpeed's accelerator probe reports it as a warning
    ("DeepSpeed", "Setting accelerator to CPU"),
    # advice to `pip install kernels` and download a hub kernel: impossible offline; bitsandbytes falls back
    # to its own CPU path, which our 4-bit tests check
    ("bitsandbytes", "Failed to load CPU gemm_4bit_forward"),
    # the same kernel lookup under HF_HUB_OFFLINE=1: the hub kernel's publisher cannot be checked offline
    ("kernels", "Skipping publisher trust check"),
    # a one-off cache build on first import
    ("matplotlib", "Matplotlib is building the font cache"),
    # peft calls transformers' old name; nothing in lorabench or the user's config uses it
    ("py.warnings", "`is_gradient_checkpointing` is deprecated"),
)


class _ToFileOnly(logging.Filter):
    """Drops noise from the console; `forward` hands it to the log files where the logger does not propagate."""

    def __init__(self, forward: bool):
        super().__init__()
        self.forward = forward

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if not any(record.name.startswith(name) and text in msg for name, text in NOISE):
            return True
        if self.forward:
            for h in logging.getLogger().handlers:
                if isinstance(h, logging.FileHandler):
                    h.handle(record)
        return False


def install() -> None:
    """Route warnings through logging and filter the console. Idempotent: a sweep calls it once per member."""
    logging.captureWarnings(True)
    root = logging.getLogger()
    for h in root.handlers:
        if not isinstance(h, logging.FileHandler) and not any(isinstance(f, _ToFileOnly) for f in h.filters):
            h.addFilter(_ToFileOnly(forward=False))
    ds = logging.getLogger("DeepSpeed")   # its own stdout handler, propagate=False: filtered at the logger
    if not any(isinstance(f, _ToFileOnly) for f in ds.filters):
        ds.addFilter(_ToFileOnly(forward=True))
