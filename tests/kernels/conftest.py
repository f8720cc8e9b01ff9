"""Kernel tests run on CUDA when present, else on CPU through Triton's interpreter.

TRITON_INTERPRET must be set before the kernels module is imported (the tests import it lazily).
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
