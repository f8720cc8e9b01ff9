"""Effective-context-length harness: offline, seeded tasks, a resumable runner, reports.

Layout:
    tasks/       task registry (``TASKS``) and the task generators/scorers
    haystacks    haystack registry (noise, pydoc, kjv, essays:PATH, file:PATH)
    runner       runs methods x tasks x lengths, writes per-sample JSONL records
    records      the typed Record, per-writer crash-safe appends, merged de-duplicated reads
    parallel     data-parallel ranks (torchrun / --workers): sharding by sample, one progress bar
    report_*     tables, plots and the HTML page over stored records
    freq         the STRING paper's position-frequency analysis

Nothing here is imported by ``import ropeshift``; the CLI imports it on demand.
Run: ropeshift eval --help
"""
