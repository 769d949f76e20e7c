"""variantlab: declare open-model variants once, train, compare and promote them reproducibly."""

__version__ = "0.1.0"
