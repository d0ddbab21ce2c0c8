"""The cluster layer, one job per module: how runs are spread over processes and machines, and how they
survive the cluster, apart from what a run computes.

- distributed: the process group (torchrun, accelerate, SLURM tasks), DDP or DeepSpeed ZeRO, rank helpers
- launcher: Hydra sweeps on SLURM (and one machine's GPUs) through submitit: skip, failure records, summary
- launcher_parallel: Hydra sweeps on worker processes of one CPU machine
- preemption: SLURM's signals become a checkpoint at the end of the training step
- run_lock: one trainer per run id (a second identical run waits)
- tracking: wandb (or nothing), resumed across requeues
"""
