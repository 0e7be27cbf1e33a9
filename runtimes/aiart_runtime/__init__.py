"""aiart's model server: one Open Inference Protocol surface for every runtime."""

__version__ = "0.1.0"
