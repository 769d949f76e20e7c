"""Commands beyond the pipeline: verify a registered model, batch predictions, registry control."""
