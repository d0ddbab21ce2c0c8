"""LoftQ."""
from lorabench.adapters import InitMethod, register

register(InitMethod("loftq", None, defaults={"bits": 4, "iters": 1}, mutates_base=True))
