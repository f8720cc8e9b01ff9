"""Fixtures for the evaluation tests: the tiny tokenizer and a tiny random Llama (session-scoped).

Run: pytest tests/eval -v
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from .tiny import tiny_model, tiny_tokenizer


@pytest.fixture(scope="session")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_llama(tok):
    return tiny_model(len(tok))


@pytest.fixture
def model(tiny_llama, request):
    """``tiny_llama`` with the ``MethodSpec`` of ``request.param`` active (parametrize with indirect=True)."""
    from ropeshift.eval.generation import activate, deactivate

    activate(tiny_llama, request.param)
    yield tiny_llama
    deactivate(tiny_llama)


@pytest.fixture(scope="module")
def benchmarks_path():
    """benchmarks/ on ``sys.path`` for a test module's tests (its scripts import each other by name)."""
    bench = str(Path(__file__).resolve().parents[2] / "benchmarks")
    sys.path.insert(0, bench)
    try:
        yield
    finally:
        sys.path.remove(bench)
