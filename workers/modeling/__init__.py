"""Model builds: the MiniLM encoder + prototype head, ONNX export, OpenVINO IR, Triton install.

Nothing here does work at import time, and only the build functions import torch: the serving
path (Triton's ``model.py``, the inference client) never needs it.
"""
