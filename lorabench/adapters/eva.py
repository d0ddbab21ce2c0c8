"""EVA."""
from lorabench.adapters import InitMethod, register

register(InitMethod("eva", None, defaults={"rho": 2.0, "tau": 0.99, "use_label_mask": True}, data_driven=True))
