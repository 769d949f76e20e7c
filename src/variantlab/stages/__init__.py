"""One thin entry point per DVC stage: ``python -m variantlab.stages.<name>`` (dvc.yaml runs them through
``python -m variantlab.stage <name>``, which hands them to the pipeline's warm interpreter when one serves it)."""
