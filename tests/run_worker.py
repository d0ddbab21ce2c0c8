"""`python tests/run_worker.py STOP_AT override ...`: one lorabench run in a fresh process (DeepSpeed and
torchrun set process-wide state that must not leak into the test process). STOP_AT < 0 runs to the end;
otherwise the run is interrupted at that step, as a killed job would be, and the worker exits with 3."""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import compose  # noqa: E402

from lorabench.run import run  # noqa: E402
from lorabench.train import Interrupted  # noqa: E402

if __name__ == "__main__":
    stop_at = int(sys.argv[1])
    try:
        run(compose(*sys.argv[2:]), stop_at=None if stop_at < 0 else stop_at)
    except Interrupted:
        sys.stdout.flush()
        sys.stderr.flush()
        # skip the interpreter's teardown: with DeepSpeed's process group still alive, a C++ thread can abort
        # it ("terminate called without an active exception") and turn exit status 3 into SIGABRT
        os._exit(3)
