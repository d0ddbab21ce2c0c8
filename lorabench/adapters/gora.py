"""GoRA."""
from lorabench.adapters import InitMethod, register

register(InitMethod("gora", None, defaults={"min_rank": 4, "max_rank": 32, "lr": 0.05}, data_driven=True))
