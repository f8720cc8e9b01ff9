"""Run details next to the records: who ran what, when, with which versions, for how long.

    started = time.time()
    ... run ...
    record_invocation(cfg, args, started, status="complete")     # appends to <out>/<model>/run_meta.json
    details_rows(read_run_meta(Path("runs/smollm2-135m")), manifests)   # [[key, value], ...] for the report

``run_meta.json`` holds a list, one entry per ``needle``/``eval`` invocation on that model folder (a resumed
run adds an entry; the report shows the latest command and the total wall time). It is JSON, not JSONL, so
record readers never mistake it for results.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import sys
from pathlib import Path

from .options import format_length
from .records import model_dir

META = "run_meta.json"


def command_line(args) -> str:
    """The command as typed (``sys.argv``) when run from the shell, else rebuilt from the parsed flags."""
    if sys.argv[1:2] == [getattr(args, "command", None)]:
        return "ropeshift " + shlex.join(sys.argv[1:])
    parts = [args.command]
    for key, value in sorted(vars(args).items()):
        if key in ("func", "command") or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        parts += [flag] if value is True else [flag, str(value)]
    return "ropeshift " + shlex.join(parts)


def versions() -> dict:
    """Python, torch, transformers, triton and ropeshift versions, and the accelerator's name."""
    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "triton", "ropeshift"):
        try:
            out[name] = getattr(__import__(name), "__version__", "?")
        except ImportError:
            out[name] = "not installed"
    try:
        import torch

        out["device"] = _smi_gpu_name() if not torch.cuda.is_initialized() else None
        if not out["device"]:
            out["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    except Exception:  # noqa: BLE001 - a broken driver must not stop the run's bookkeeping
        out["device"] = "unknown"
    return out


def _smi_gpu_name() -> str | None:
    """The name of the first GPU this process would use (``CUDA_VISIBLE_DEVICES``' first entry, else GPU 0) from
    ``nvidia-smi``; None without it or without a visible GPU. A parent of a multi-process run that never used CUDA
    then starts no CUDA context for its bookkeeping (~0.5-1 s at the end of every run)."""
    import shutil
    import subprocess

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    first = "0" if visible is None else visible.split(",")[0].strip()
    if not first or first.startswith("-") or shutil.which("nvidia-smi") is None:
        return None
    try:
        got = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader", "-i", first],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = got.stdout.strip().splitlines() if got.returncode == 0 else []
    return (lines[0].strip() or None) if lines else None


def record_invocation(cfg, args, started: float, finished: float, status: str) -> Path:
    """Append this invocation's details to ``<out>/<model>/run_meta.json`` and return its path."""
    path = model_dir(cfg.out, cfg.model) / META
    entries = read_meta_file(path)
    entries.append({
        "command": command_line(args), "model": cfg.model, "model_path": getattr(args, "model", cfg.model),
        "tasks": list(cfg.tasks), "lengths": list(cfg.lengths), "samples": cfg.samples, "seed": cfg.seed,
        "batch_size": cfg.batch_size, "batch_tokens": cfg.batch_tokens, "impl": cfg.impl,
        "plain_attention": cfg.plain_attention,
        "methods": {m.label: {"name": m.name, "params": m.params} for m in cfg.methods},
        "started": _dt.datetime.fromtimestamp(started, _dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_s": round(finished - started, 1), "status": status, "versions": versions(),
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(entries, indent=1, default=str))
    tmp.replace(path)
    return path


def read_meta_file(path: Path) -> list[dict]:
    try:
        data = json.loads(Path(path).read_text())
    except (FileNotFoundError, ValueError):
        return []
    return data if isinstance(data, list) else []


def read_run_meta(root: Path) -> dict[str, list[dict]]:
    """model folder name -> its invocations, for every ``run_meta.json`` under ``root``."""
    return {p.parent.name: read_meta_file(p) for p in sorted(Path(root).rglob(META))}


def details_rows(meta: dict[str, list[dict]], manifests: dict[str, dict], records: list[dict]) -> list[list[str]]:
    """Rows ``[item, value]`` of the run-details block (one block per model, keys prefixed when several)."""
    rows: list[list[str]] = []
    models = sorted(set(meta) | set(manifests) | {r.get("model", "") for r in records})
    for model in models:
        pre = f"{model}: " if len(models) > 1 else ""
        runs, man = meta.get(model, []), manifests.get(model, {})
        recs = [r for r in records if r.get("model", "") == model]
        rows.append([pre + "model", f"{model} ({man.get('path', '?')}, {man.get('model_type', '?')}, "
                                    f"{man.get('dtype', '?')}, training length {man.get('train_length', '?')})"])
        if runs:
            last = runs[-1]
            rows += [[pre + "command", last["command"]],
                     [pre + "date", f"{runs[0]['started']} (first) .. {last['started']} (last), "
                                    f"{len(runs)} invocation(s)"],
                     [pre + "wall time", f"{sum(r.get('wall_s', 0) for r in runs):.0f} s in all "
                                         f"(last: {last.get('wall_s', 0):.0f} s, {last.get('status', '?')})"],
                     [pre + "samples, seed", f"{last['samples']} per task x length, seed {last['seed']}, "
                                             f"batch {last.get('batch_size')}, impl {last.get('impl') or 'auto'}"],
                     [pre + "versions", ", ".join(f"{k} {v}" for k, v in last.get("versions", {}).items())]]
        else:
            rows.append([pre + "command", "not recorded (records made before run_meta.json existed)"])
        by_method: dict[str, str] = {}
        for r in recs:
            by_method.setdefault(r["method"], json.dumps(r.get("params") or {}, sort_keys=True, default=str))
        for label, params in sorted(by_method.items()):
            rows.append([pre + f"method {label}", params])
        lengths = sorted({r["length"] for r in recs})
        counts = sorted({(r["task"], r["method"], r["length"]) for r in recs})
        rows.append([pre + "records", f"{len(recs)} over {len(counts)} (task, method, length) cells; lengths "
                                      + ", ".join(format_length(n) for n in lengths)])
    return rows


def run_recorded(cfg, args, plan=None, record: bool = True) -> int | None:
    """``plan(cfg, args)`` (default ``cli_common.run_plan``) plus, for a real (not dry) run and ``record``
    (rank 0 of a parallel run), an entry in ``run_meta.json``.

    Returns what ``plan`` returns (an exit code to stop with, or None to go on to the tables)."""
    import time

    from .cli_common import run_plan

    started, status = time.time(), "failed"
    try:
        code = (plan or run_plan)(cfg, args)
        status = "interrupted" if code else "complete"
        return code
    finally:
        if record and not getattr(args, "dry_run", False):
            record_invocation(cfg, args, started, time.time(), status)
