"""One thin entry point per DVC stage: ``python -m variantlab.stages.<name>``."""
