"""Test-only: on PYTHONPATH, every process that imports this sleeps LORABENCH_TEST_STEP_SLEEP seconds before
each optimizer step. The SLURM requeue and timeout tests need a run that cannot finish inside one job slot
on any machine; sleeping changes no number, so the resumed run still equals its uninterrupted reference."""
import os
import time

_SLEEP = float(os.environ.get("LORABENCH_TEST_STEP_SLEEP", "0"))
if _SLEEP > 0:
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    register_optimizer_step_pre_hook(lambda optimizer, args, kwargs: time.sleep(_SLEEP))
