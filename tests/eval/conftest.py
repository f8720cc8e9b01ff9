"""Fixtures for the evaluation tests: the tiny tokenizer and a tiny random Llama (session-scoped).

Run: pytest tests/eval -v
"""
from __future__ import annotations

import pytest

from .tiny import tiny_model, tiny_tokenizer


@pytest.fixture(scope="session")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_llama(tok):
    return tiny_model(len(tok))
