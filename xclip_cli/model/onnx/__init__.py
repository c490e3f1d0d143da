"""X-CLIP on ONNX Runtime: export (with torch), the cache of prepared checkpoints, the runner."""
