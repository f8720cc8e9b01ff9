"""The evaluation runner: methods x tasks x lengths -> per-sample JSONL records, resumable.

    cfg = RunConfig(model="smollm2-135m", tasks=("needle",), lengths=(1024, 2048),
                    methods=(MethodSpec("rope"), MethodSpec("string")), samples=10)
    print(format_plan(cfg))                       # what would run (no model needed)
    run(cfg, model, tokenizer)                    # generate prompts once, then every method on them

Prompts are generated once per (task, length) from the seed and stored under ``_prompts/`` (``sample_store``);
every method reads the stored prompts, so all methods see identical inputs. A record is appended (and
fsynced) to this process's own records file as soon as its sample is scored; a rerun skips samples
whose record exists in any writer's file, after checking that it was made from the same prompt (same
hash). With ``ranks`` (``parallel.Ranks``, under torchrun or ``--workers``) the pending samples are
cut into chunks that the ranks claim as they go; see ``parallel``.
Run: ropeshift eval --help
"""
from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import parallel, rope_share, startup_clock, warm_up
from .batch_log import BatchLog, compile_seconds, counts, gpu_memory, log_path, reset_peak_memory
from .batching import (MemoryCap, claim_queues, cut_batches, length_buckets, only, rows_per_batch,
                       token_weight)
from .options import MethodSpec, format_length
from .parallel import Ranks
from .records import GENERATION, Record, model_dir, open_writer, read_cell
from .sample_store import PendingSamples, prepare_samples, start_samples
from .tasks import Sample, TaskOptions, resolve_task


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run. ``samples`` is per task x length."""

    model: str
    tasks: tuple[str, ...]
    lengths: tuple[int, ...]
    methods: tuple[MethodSpec, ...]
    samples: int
    seed: int = 0
    options: TaskOptions = field(default_factory=TaskOptions)
    batch_size: int = 1
    batch_tokens: int | None = None  # rows per generate() = batch_tokens // length (overrides batch_size; 0: off)
    out: Path = Path("runs")
    impl: str | None = None
    plain_attention: str = "model"  # rows without an attention method: "model" (its own) or "ropeshift" (plain)
    workers: int | None = None  # prompt-generation processes (None: one per CPU core)
    share_rope: bool = True  # cells where a method is exactly RoPE or an earlier row copy its records (rope_share)
    compile: str = "auto"  # decoder layers under torch.compile, attention eager (dense_compile.resolve)

    def __post_init__(self):
        if self.samples < 1:
            raise ValueError(f"--samples must be >= 1, got {self.samples}")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.batch_tokens is not None and self.batch_tokens < 0:
            raise ValueError(f"--batch-tokens must be >= 0 (0: use --batch-size), got {self.batch_tokens}")
        if self.compile not in ("auto", "off", "layers", "blocks"):
            raise ValueError(f"compile must be auto, off, layers or blocks, got {self.compile!r}")
        if self.plain_attention not in ("model", "ropeshift"):
            raise ValueError(f"plain_attention must be 'model' or 'ropeshift', got {self.plain_attention!r}")
        if not self.tasks or not self.lengths or not self.methods:
            raise ValueError("a run needs at least one task, one length and one method")
        if any(n < 64 for n in self.lengths):
            raise ValueError(f"lengths must be >= 64 tokens, got {min(self.lengths)}")
        for spec in self.tasks:
            resolve_task(spec)  # unknown task -> "did you mean"
        if self.options.haystack:
            from .haystacks import get_haystack

            get_haystack(self.options.haystack)  # unknown haystack / missing path -> clear error


def model_label(name_or_path: str) -> str:
    """Folder name for a model: the embedded name, or a file's stem / a folder's name."""
    p = Path(name_or_path)
    return p.stem if p.suffix == ".gguf" else (p.name or name_or_path)


def _pending(cfg: RunConfig, task: str, method: MethodSpec, length: int) -> set[int]:
    done = {r.index for r in read_cell(cfg.out, cfg.model, task, method.label, length)}
    return set(range(cfg.samples)) - done


def format_plan(cfg: RunConfig) -> str:
    """A table of what ``run`` would do, with the number of samples already finished."""
    batch = f"{cfg.batch_tokens} tokens" if cfg.batch_tokens else cfg.batch_size
    lines = [f"model {cfg.model}  seed {cfg.seed}  samples {cfg.samples}  batch {batch}  "
             f"out {model_dir(cfg.out, cfg.model)}"]
    total = 0
    for task in cfg.tasks:
        t = resolve_task(task)
        hay = t.haystack_label or t.haystack_for(cfg.options).name
        for method in cfg.methods:
            todo = [len(_pending(cfg, task, method, n)) for n in cfg.lengths]
            total += sum(todo)
            cells = "  ".join(f"{format_length(n)}:{k}" for n, k in zip(cfg.lengths, todo))
            lines.append(f"  {task:<18} {method.label:<20} haystack {hay:<9} to run  {cells}")
    lines.append(f"{total} samples to run")
    return "\n".join(lines)


def write_manifest(cfg: RunConfig, model, model_path: str) -> None:
    import json

    conf = getattr(model, "config", None)
    d = {"model": cfg.model, "path": model_path,
         "train_length": getattr(conf, "max_position_embeddings", None),
         "model_type": getattr(conf, "model_type", None), "dtype": str(getattr(model, "dtype", ""))}
    p = model_dir(cfg.out, cfg.model) / "run.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(d, indent=1))


def _record(sample: Sample, kind: str, method: MethodSpec, info: dict, model: str, prediction, result: dict) -> Record:
    known = {k: result.pop(k) for k in ("score", "nll", "n_scored", "seconds") if k in result}
    return Record(
        kind=kind, model=model, task=sample.task, length=sample.length, index=sample.index, method=method.label,
        prompt_hash=sample.prompt_hash, seed=sample.seed, method_name=info.get("method", method.name),
        params=info.get("params", method.params), impl=info.get("impl"), haystack=sample.haystack,
        n_tokens=sample.n_tokens, depth=sample.depth, depths=sample.depths, prediction=prediction,
        references=tuple(sample.references), details=result, **known,
    )


def plan_work(cfg: RunConfig, samples: dict[tuple[str, int], list[Sample]]) -> list[tuple]:
    """``(method, task, length, pending samples)`` in run order (methods interleaved per cell, so a
    partial run stays paired); refuses records made from other prompts."""
    work = []
    for task in cfg.tasks:
        for length in cfg.lengths:
            for method in cfg.methods:
                done = {r.index: r for r in read_cell(cfg.out, cfg.model, task, method.label, length)}
                for s in samples[task, length]:
                    r = done.get(s.index)
                    if r is not None and r.prompt_hash != s.prompt_hash:
                        raise ValueError(f"the records of {task}/{method.label}/{length} hold sample {s.index} made "
                                         "from another prompt (seed, haystack, options or version changed): "
                                         "use another --out")
                todo = [s for s in samples[task, length] if s.index not in done]
                if todo:
                    work.append((method, task, length, todo))
    return work


def run(cfg: RunConfig, model, tokenizer, *, progress: bool = True, model_path: str | None = None,
        ranks: Ranks = Ranks(), clock: "startup_clock.StartupClock | None" = None, samples: dict | None = None,
        handover=None) -> int:
    """Run every method on every pending sample (this rank's share); return the number of records written.

    With ``ranks.world > 1`` every rank calls ``run`` with the same ``cfg`` inside one process group
    (``parallel.init_group``). ``clock`` times the start-up phases (printed once, after the first batch).
    ``samples``: ``prepare_samples``' result, or ``start_samples``' pending one, when the caller started the
    prompts (rank 0 in ``launch.run_rank``). ``handover(model) -> (tokenizer, model)``: called once this rank's
    work before the prompts is done (its warm-up): a rank > 0 of ``launch.run_rank``, whose ``model`` was built
    without weights and ``tokenizer`` is None, takes rank 0's tokenizer there and returns ``model`` with its
    weights copied in, or a loaded model they do not fit."""
    from . import dense_compile
    from .generation import activate, deactivate
    from .graph_decode import ended_rows_free, retire_possible

    clock = clock or startup_clock.StartupClock(ranks, enabled=progress)
    mode = dense_compile.resolve(cfg.compile, model)
    warm = mode is not None and ranks.world > 1 and not ranks.main and warm_up.enabled()  # compiles in its wait
    lead = 0 if warm else dense_compile.eager_lead(ranks, mode, model)  # work run eagerly before it compiles
    # rank 0 starts while the others still compile (they wait for its plan): eagerly, until they run (lead_others)
    waits = mode is not None and not lead and dense_compile.lead_others(ranks, model, warm_up.enabled())
    if mode and not lead and not waits:
        dense_compile.compile_model(model, mode)  # compiles lazily, at the first forward
    share = cfg.share_rope
    merged = retire_possible(model)  # every generation task of a length and method in one bucket (decode_bucket)
    joins = {}  # {label: {length: donor label}}: the rows that copy an earlier row's records there (rope_share)
    if share and ranks.world > 1 and ranks.main:  # rank 0, while its prompt workers run (the others compile)
        joins = rope_share.equal_lengths(model, _run_order(cfg.methods), cfg.lengths, cfg.impl, cfg.plain_attention)
        clock.mark("joins")
    if warm:  # still before rank 0's prompts: compile the path of this rank's first batches now (eval/warm_up.py)
        warm_up.for_rank(cfg, model, tokenizer, ranks)
        clock.mark("warm-up")
    if handover is not None:  # rank 0's tokenizer taken, and the weights (launch.run_rank)
        tokenizer, loaded = handover(model)
        if loaded is not model:  # the weights did not fit (warned): the loaded model, compiled at its first forward
            model = loaded
            if mode and not lead:
                dense_compile.compile_model(model, mode)
    if ranks.main and samples is None:
        samples = start_samples(cfg, tokenizer, progress)
    if share and ranks.world == 1:  # one process: while its prompt workers make the prompts
        joins = rope_share.equal_lengths(model, _run_order(cfg.methods), cfg.lengths, cfg.impl, cfg.plain_attention)
    if ranks.main:
        samples = samples.result() if isinstance(samples, PendingSamples) else samples
        write_manifest(cfg, model, model_path or cfg.model)
        clock.mark("prompts")
        work = plan_work(cfg, samples)
    plan = _hand_plan(ranks, work if ranks.main else None, joins)  # rank 0 goes on; the others wait for it
    if not ranks.main:  # rank 0's prompts are stored: read them, and take the samples rank 0 planned
        samples = prepare_samples(cfg, tokenizer, progress=False)
        clock.mark("prompts")
        work = _planned(cfg, samples, plan["todo"])
    joins = plan["joins"]
    clock.mark("plan")
    total = sum(len(w[3]) for w in work)
    bar = parallel.Progress(ranks, total, model_dir(cfg.out, cfg.model), plan["run_id"], enabled=progress)
    if ranks.world > 1:   # several: one method's batch of a chunk whenever this rank is free
        queues, first = claim_queues(work, ranks.world, lambda length: rows_per_batch(cfg, length), merged,
                                     _run_order(cfg.methods), joins)
        entries = (entry for q, i in parallel.claims(ranks, bar.folder, [len(x) for x in queues], first[ranks.rank])
                   for entry in length_buckets(only(work, *queues[q][i]), merged))
    else:                 # one process: every (bucket, length) in turn, rope first
        entries = iter(length_buckets(work, merged))
    written, current, last_kind = 0, None, None
    device = next(model.parameters()).device
    log = BatchLog(log_path(cfg.out, cfg.model, ranks.rank))
    memory_cap = MemoryCap()  # batch tokens bounded after an out-of-memory split
    try:
        for method, length, cells in entries:
            if method != current:
                deactivate(model)
                info, current = activate(model, method, cfg.impl, cfg.plain_attention), method
                donors = joins.get(method.label, {})
            tasks = {name: resolve_task(name) for name, _ in cells}
            names = "+".join(tasks) if len(tasks) <= 3 else f"{len(tasks)} tasks"
            note = f"{method.label} {names} {format_length(length)}"
            copies = []
            if length in donors:  # the donor row, earlier in every bucket (and claim item), computed these prompts
                copies, cells = rope_share.copy_from(cfg.out, cfg.model, method, info, length, cells, donors[length])
            batches = cut_batches([(s, name) for name, samples in cells for s in samples], tasks,
                                  rows_per_batch(cfg, length), merged and ended_rows_free(model))
            with contextlib.ExitStack() as stack:
                apps = {name: stack.enter_context(open_writer(cfg.out, cfg.model, name, method.label, length,
                                                              ranks.rank)) for name in tasks}
                for name, record in copies:
                    apps[name].write(record)
                written += len(copies)
                if copies:
                    bar.update(len(copies), note + " (= rope)")
                kind = next(iter(tasks.values())).kind  # one kind per bucket (batching.decode_bucket)
                if last_kind not in (None, kind):
                    release_cached_memory(device)
                last_kind = kind
                for batch in memory_cap.split(batches, length, kind):
                    stats: dict = {"eager": True} if lead > 0 or waits else {}
                    reset_peak_memory(device)
                    t0, compiled = time.perf_counter(), compile_seconds()
                    preds, results = _run_batch([tasks[name] for _, name in batch], model, tokenizer,
                                                [s for s, _ in batch], stats)
                    wall = time.perf_counter() - t0
                    stats.update(gpu_memory(device))
                    compiled = compile_seconds() - compiled
                    if compiled > 0:
                        stats["compile_s"] = compiled
                    if stats.get("oom_rows"):
                        memory_cap.learn(kind, stats["oom_rows"], length)
                    tokens = sum(s.n_tokens for s, _ in batch)
                    if lead > 0:
                        lead -= tokens * token_weight(kind)
                        if lead <= 0:
                            dense_compile.compile_model(model, mode)  # its eager lead is run (eager_lead)
                    if waits and bar.others_started():  # their compile filled inductor's caches: compile now
                        waits = False
                        dense_compile.compile_model(model, mode)
                    secs = wall / len(batch)
                    log.write(rank=ranks.rank, method=method.label, length=length, kind=kind,
                              tasks=counts(name for _, name in batch), rows=len(batch),
                              tokens=tokens, wall_s=round(wall, 4),
                              **{k: round(v, 4) if isinstance(v, float) else v for k, v in stats.items()})
                    for (s, name), p, res in zip(batch, preds, results):
                        apps[name].write(_record(s, tasks[name].kind, method, info, cfg.model, p,
                                                 {**res, "seconds": round(secs, 4)}))
                        written += 1
                    if clock.pending:
                        clock.mark("first batch")
                        clock.report(log)
                    bar.update(len(batch), note)
    except BaseException:
        bar.close()
        raise
    finally:
        log.close()
        deactivate(model)
    bar.finish()
    return written


def _hand_plan(ranks: Ranks, work: list | None, joins: dict) -> dict:
    """What every rank runs, decided by rank 0 (``work``: its ``plan_work``) and sent to the others without
    waiting for them (``parallel.post``): ``{"todo": [(method label, task, length, [sample index])], "joins":
    joins, "run_id": the progress files' id}``. A rank > 0 waits here (``parallel.take``) until rank 0 has stored
    the prompts and planned; one process gets its own ``joins`` back.

    Until the twenty-eighth session every rank planned from the records on disk after a barrier, and gathered
    the joins (a second barrier): rank 0 waited there ~15 s for the others' cold compile (H100 studies of
    2026-12-07) before its first batch. Now it starts as soon as it has sent the plan, eagerly while the others
    compile (``dense_compile.lead_others``); a rank > 0 reads no records (rank 0's snapshot is the plan)."""
    import uuid

    if ranks.world == 1:
        return {"todo": None, "joins": joins, "run_id": uuid.uuid4().hex[:12]}
    if not ranks.main:
        return parallel.take(ranks)
    plan = {"todo": [(m.label, task, length, [s.index for s in todo]) for m, task, length, todo in work],
            "joins": joins, "run_id": uuid.uuid4().hex[:12]}
    parallel.post(ranks, plan)
    return plan


def _planned(cfg: RunConfig, samples: dict, todo: list) -> list[tuple]:
    """``plan_work``'s list from a plan's ``todo`` (``_hand_plan``) and this rank's copy of the prompts."""
    methods = {m.label: m for m in cfg.methods}
    work = []
    for label, task, length, indices in todo:
        by_index = {s.index: s for s in samples[task, length]}
        work.append((methods[label], task, length, [by_index[i] for i in indices]))
    return work


def _run_order(methods) -> list:
    """The run's methods with the rope row first (``claim_queues``' first method), the others in their order."""
    base = rope_share.baseline_row(methods)
    return ([base] if base is not None else []) + [m for m in methods if m is not base]


def release_cached_memory(device) -> None:
    """Give the blocks PyTorch's allocator caches but no tensor uses back to the GPU (a CUDA ``device``; else
    nothing), as the run moves between likelihood and generation batches: their allocations differ in shape (a
    likelihood forward's logits, up to ``tasks.perplexity.LOGITS_BYTES``, against a static KV cache), so a process
    would otherwise hold both peaks, which the other evaluation processes sharing the card cannot use (H100,
    2026-12-06: a rank that began with the likelihood buckets hit an out-of-memory split in its first generation
    bucket)."""
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()


def _run_batch(tasks: list, model, tokenizer, batch: list, stats: dict | None = None) -> tuple[list, list[dict]]:
    """Predictions and score dicts for one batch (``tasks[i]`` is row i's task: generation rows of several tasks
    share one generate() call, each with its own budget and stop; a likelihood batch holds one task or one
    ``batch_group``'s, evaluated by the first row's task); on CUDA
    out-of-memory the batch is split in halves. ``stats`` (a dict) gets the batch's phase seconds
    (``tokenize_s``, ``post_s``: scoring, and ``generate``'s; ``batch_log``)."""
    import torch

    from .generation import answer_end, batch_prompt_ids, generate

    try:
        if tasks[0].kind != GENERATION:
            if len({t.batch_group or t.name for t in tasks}) > 1:
                raise ValueError("a likelihood batch must hold one task or one batch group")
            return [None] * len(batch), tasks[0].evaluate(model, tokenizer, batch)
        t0 = time.perf_counter()
        rows = batch_prompt_ids(tokenizer, [s.prompt for s in batch], [s.add_special_tokens for s in batch])
        t1 = time.perf_counter()
        preds = generate(model, tokenizer, rows, [t.max_new_tokens for t in tasks],
                         stop=[answer_end(t, s) for t, s in zip(tasks, batch)], stats=stats)
        t2 = time.perf_counter()
        scores = [{"score": t.score(s, p), **t.details(s, p)} for t, s, p in zip(tasks, batch, preds)]
        if stats is not None:
            stats.update(tokenize_s=t1 - t0, post_s=time.perf_counter() - t2)
        return preds, scores
    except torch.OutOfMemoryError:
        if len(batch) == 1:
            raise
    torch.cuda.empty_cache()
    half = len(batch) // 2
    print(f"out of memory with a batch of {len(batch)}: retrying as {half} + {len(batch) - half}", file=sys.stderr)
    if stats is not None:
        stats["oom_splits"] = stats.get("oom_splits", 0) + 1
        stats["oom_rows"] = min(stats.get("oom_rows", len(batch)), len(batch))  # the smallest size that failed
    p1, r1 = _run_batch(tasks[:half], model, tokenizer, batch[:half], stats)
    p2, r2 = _run_batch(tasks[half:], model, tokenizer, batch[half:], stats)
    return p1 + p2, r1 + r2
