"""Preemption: a cluster's signal becomes a checkpoint at the end of the current training step.

SLURM sends USR2 before a time limit or a preemption (submitit asks for it, then requeues the job) and SIGTERM
on `scontrol requeue` and `scancel` (then SIGKILL after KillWait, 30 s by default). While training, these
signals are only noted; at the end of the step every rank agrees that one arrived (they may see it at
different steps), the checkpoint is written, and the handler that was there before runs (submitit's on
USR2: requeue and exit); after a SIGTERM the process exits at once instead of training on until SIGKILL. The requeued job then resumes from that step, not from the last periodic
checkpoint. Outside training the previous handlers act at once.
"""
from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager

SIGNALS = (signal.SIGUSR2, signal.SIGTERM)
_pending: list[int] = []
_previous: dict = {}
_listeners: list = []   # called once the checkpoint is written, before the previous handlers act (tracking)


def on_preempt(fn) -> None:
    """Call fn() when a noted signal is about to be acted on (the tracker marks its run as preempting)."""
    _listeners.append(fn)


def forget(fn) -> None:
    if fn in _listeners:
        _listeners.remove(fn)


def _note(signum, frame) -> None:
    _pending.append(signum)


@contextmanager
def deferred():
    """Note SIGUSR2/SIGTERM instead of acting on them; on leaving, restore the handlers and act on what came."""
    if threading.current_thread() is not threading.main_thread() or _previous:
        yield                          # handlers belong to the main thread; an outer `deferred` already notes
        return
    _previous.update({s: signal.signal(s, _note) for s in SIGNALS})
    try:
        yield
    finally:
        for s, h in _previous.items():
            signal.signal(s, h)
        _previous.clear()
        _act()


def requested(accelerator=None) -> bool:
    """Whether a signal arrived on any rank (a collective call when there are several processes)."""
    mine = bool(_pending)
    if accelerator is None or accelerator.num_processes == 1:
        return mine
    import torch

    flag = torch.tensor([float(mine)], device=accelerator.device)
    return bool(accelerator.reduce(flag, reduction="sum").item() > 0)


def act() -> None:
    """After the checkpoint: run the previous handlers on the noted signals (submitit's requeues and exits on
    USR2; SIG_DFL terminates); if they return, training goes on, still deferring."""
    for s, h in _previous.items():
        signal.signal(s, h)
    try:
        _act()
    finally:
        for s in _previous:
            signal.signal(s, _note)


def _act() -> None:
    if _pending:
        for fn in list(_listeners):
            try:
                fn()
            except Exception:   # a listener never keeps the job from leaving
                pass
    terminate = False
    while _pending:
        signum = _pending.pop(0)
        handler = signal.getsignal(signum)
        if callable(handler):
            handler(signum, None)
        elif handler == signal.SIG_DFL:
            os.kill(os.getpid(), signum)
        terminate |= signum == signal.SIGTERM
    if terminate:
        # submitit only logs SIGTERM; SLURM (requeue, scancel, preemption) would SIGKILL us after KillWait.
        # The checkpoint is written: leave now, without a failure record (SystemExit is not an error here).
        raise SystemExit(128 + signal.SIGTERM)
