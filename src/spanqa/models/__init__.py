"""Model artifacts: checkpoints, ONNX export, model packages and their typed manifest."""
