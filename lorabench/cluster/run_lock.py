"""One run id, one trainer: a claim on the run's output folder that a second identical run waits for.

Two identical runs started together (two sweeps submitted at once, a run started twice by hand) share one
output folder and one checkpoint: without a claim both trained, deleted each other's checkpoints ("Parent
directory .../step-0000015 does not exist") and the slower one's record collided with the faster one's
(FileExistsError) or left a spurious `.failed` beside it. Now the first takes the claim and trains; the
second says which process holds it, waits, and then finds the first one's record (run.py returns it, as for
any finished run) or, if the first died, takes over from its checkpoint.

How: rank 0 holds an exclusive flock(2) on `<out>/.claim` (created if missing; the holder writes its host,
pid and SLURM job id there for the waiting one's message). The kernel drops the lock with its holder's
process, so a run killed by SIGKILL, OOM or a lost node leaves no stale claim to clean up by hand (unlike a
pid file). Linux NFS clients map flock onto POSIX locks that the server arbitrates, so it also holds across
nodes that share a results folder over NFS. The other ranks poll with rank 0 (one broadcast every `poll`
seconds), so no collective waits long enough to time out.
"""
from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path

FILE = ".claim"
_held: dict[str, int] = {}   # this process's claims: a run that raised past its release must not lock itself out


class Claim:
    def __init__(self, out: Path, accelerator, say, poll: float = 5.0):
        self.fd, self.waited = None, False
        main = accelerator is None or accelerator.is_main_process
        self.key = str(Path(out).resolve() / FILE)
        if main:
            if self.key in _held:    # flock locks per open file: a leaked claim of ours would block us forever
                os.close(_held.pop(self.key))
            out.mkdir(parents=True, exist_ok=True)
            self.fd = _held[self.key] = os.open(self.key, os.O_RDWR | os.O_CREAT, 0o644)
        while not _agree(self._try() if main else False, accelerator):
            if main and not self.waited:
                say(f"run {out.name} is being trained by another process ({self._holder()}); waiting for it: "
                    f"its record will be this run's, or, if it dies, this run resumes from its checkpoint")
            self.waited = True
            time.sleep(poll)
        if main:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, f"host={socket.gethostname()} pid={os.getpid()} "
                               f"slurm_job={os.environ.get('SLURM_JOB_ID', '-')}\n".encode(), 0)
            if self.waited:
                say(f"run {out.name}: the other process is gone; this one holds the claim now")

    def _try(self) -> bool:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _holder(self) -> str:
        try:
            return os.pread(self.fd, 200, 0).decode(errors="replace").strip() or "unknown"
        except OSError:
            return "unknown"

    def release(self) -> None:
        """Idempotent; closing the descriptor drops the lock (the file stays: deleting it would let a waiter
        and a newcomer lock two different files)."""
        if self.fd is not None and _held.get(self.key) == self.fd:
            os.close(_held.pop(self.key))
        self.fd = None


def _agree(mine: bool, accelerator) -> bool:
    """Rank 0's answer on every rank."""
    if accelerator is None or accelerator.num_processes == 1:
        return mine
    from accelerate.utils import broadcast_object_list

    return bool(broadcast_object_list([mine], from_process=0)[0])
