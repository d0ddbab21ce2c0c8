"""lorabench: which LoRA initialization really works, measured with the papers' own protocols."""
__version__ = "0.1.0"
