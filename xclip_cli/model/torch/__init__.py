"""X-CLIP on torch and transformers: loading checkpoints, the split forward."""
