"""Hydra registers launchers only from classes defined under the `hydra_plugins` namespace: these name
lorabench's (lorabench/cluster/launcher*.py) for `hydra/launcher=slurm|slurm_multigpu|slurm_local|parallel`."""
from lorabench.cluster import launcher, launcher_parallel


class SlurmLauncher(launcher.SlurmLauncher):
    pass


class LocalLauncher(launcher.LocalLauncher):
    pass


class ParallelLauncher(launcher_parallel.ParallelLauncher):
    pass
