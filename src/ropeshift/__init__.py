"""ropeshift: make RoPE language models use the context they claim (STRING and training-free baselines).

    import ropeshift
    model, tokenizer = ropeshift.load_model("smollm2-135m")
    ropeshift.apply(model, "string")
    model.generate(...)

Importing ropeshift has no side effects: nothing is registered or patched until ``apply`` is called.
"""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["apply", "remove", "describe", "methods", "load_model"]


def __getattr__(name):
    if name == "methods":  # the methods package, callable: ropeshift.methods() lists the method names
        import importlib

        return importlib.import_module(".methods", __name__)
    if name in ("apply", "remove", "describe"):
        from . import api

        return getattr(api, name)
    if name == "load_model":
        from .loader import load_model

        return load_model
    raise AttributeError(f"module 'ropeshift' has no attribute {name!r}")
