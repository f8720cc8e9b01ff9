"""Task registry: ``TASKS[name]`` (unknown names get "did you mean"); ``resolve_task("qa:PATH")``.

Importing this package registers every built-in task; nothing else happens at import.
"""
from __future__ import annotations

from .base import DESCRIPTIONS, TASKS, Sample, Task, TaskOptions, resolve_task
from . import infbench, niah, niah4, passkey, perplexity, qa, ruler_synth  # noqa: F401  (importing registers the tasks)

__all__ = ["DESCRIPTIONS", "TASKS", "Sample", "Task", "TaskOptions", "resolve_task"]
