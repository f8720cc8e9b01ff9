"""Shared fixtures: seeded RNG, tiny random-init models per architecture, the embedded real model.

Run: pytest tests -v   (add -m "not slow" to skip tests that load the 93 MB SmolLM2 model)
"""
from __future__ import annotations

import pytest
import torch

from .tiny_models import ARCHS, tiny_model  # noqa: F401  (re-exported for tests)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def smollm2():
    """(model, tokenizer) of the embedded SmolLM2-135M-Instruct, loaded once per session (CPU, fp32)."""
    pytest.importorskip("gguf")
    from ropeshift.loader import EMBEDDED, load_model

    try:
        EMBEDDED["smollm2-135m"].path()
    except FileNotFoundError as e:
        pytest.fail(f"{e} (the slow tests need it)")
    return load_model("smollm2-135m", device="cpu", progress=False)
