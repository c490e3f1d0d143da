"""The model: backends (torch, ONNX Runtime), checkpoints, the text side and its cache."""
