"""CorDA."""
from lorabench.adapters import InitMethod, register

register(InitMethod("corda", None, defaults={"method": "ipm"}, data_driven=True, mutates_base=True))
