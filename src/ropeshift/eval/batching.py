"""How the runner cuts its work into batches: ranks' shares, buckets of tasks, row order, rows per batch.

    queues, first = claim_queues(work, ranks.world, lambda n: rows_per_batch(cfg, n), merged, methods, joins)
    for q, i in parallel.claims(ranks, folder, [len(x) for x in queues], first[ranks.rank]):   # whoever is free
        for method, length, cells in length_buckets(only(work, *queues[q][i]), merged):  # rope first
            rows = [(s, task) for task, todo in cells for s in todo]
            batches = cut_batches(rows, tasks, rows_per_batch(cfg, length), merged and ended_rows_free(model))

``work`` is ``runner.plan_work``'s ``[(method, task, length, pending samples)]``; ``cfg`` a ``runner.RunConfig``;
a single process runs ``length_buckets(work, merged)`` in one go. ``shard`` is the static share a rank would get
if the cost model were exact (the replay tools under benchmarks/ price batches with it).
A merged run (``graph_decode.retire_possible``: CUDA, where the decode loop can retire ended rows) puts every
generation task of a length and method in one bucket; for a method whose ended rows are retired
(``graph_decode.ended_rows_free``) its rows are cut longest answer budget first, so the batches at 8k for one
method on one rank (73 rows each at 600k tokens) look like::

    today (power-of-4 buckets)              merged, longest budget first
    niah+cwe  73 rows   128 steps           niah+cwe  73 rows                  128 steps
    niah+cwe  29 rows   128 steps           niah 29 + kv 17 + vt 17 + pk 10     128 steps
    kv+vt     34 rows    50 steps           passkey    7 rows                     6 steps
    passkey   17 rows     6 steps
"""
from __future__ import annotations

from . import rope_share
from .parallel import Ranks
from .records import GENERATION
from .tasks import resolve_task


# The cost model that orders what the ranks claim (``claim_queues``), in generation prompt-token equivalents,
# from the H200 study of 2026-12-06 (4 processes, benchmarks/RESULTS.md): a generation prompt token ~3.7 us of a
# process, a likelihood row's token ~3x that (strided perplexity forwards 5 windows of L for its 2 rows), and a
# generation batch's decode ~20 ms a step to its longest budget whatever its rows (graph replays of a small model
# are launch-bound).
LIKELIHOOD_TOKEN = 3
DECODE_STEP_TOKENS = 6_000


def token_weight(kind: str) -> int:
    """Cost of one prompt token of a batch of ``kind`` in generation prompt-token equivalents (the cost model)."""
    return 1 if kind == GENERATION else LIKELIHOOD_TOKEN


def shard(work: list[tuple], ranks: Ranks, batch_rows=1, merged: bool = False) -> list[tuple]:
    """This rank's part of ``work`` if every chunk cost what the cost model says: whole sample groups (every
    method of one prompt), in chunks of at most one batch's rows of one decode bucket x length, each chunk
    (costliest first) to the rank with the least estimated cost so far (``deal``). The runner instead lets the
    ranks claim the same chunks' batches as they go (``claim_queues``); the replay tools under benchmarks/ use
    this.
    ``batch_rows``: an int, or a function of the length (``rows_per_batch``); ``merged``: the runner's bucket
    rule (``decode_bucket``).

    Why chunks of a batch: the runner cuts each rank's rows per method and length into batches, and a batch
    decodes to its longest row's budget at a cost that barely depends on its rows. Giving every rank 1/world of
    every cell (as before) cut each method's 1k rows into 4 batches of 112 on 4 ranks, where one rank can run
    them in one batch of 450: 280 generation batches in the 2026-12-06 H200 study, ~200 with whole-batch chunks.
    Balance comes from the cost model (``LIKELIHOOD_TOKEN``, ``DECODE_STEP_TOKENS``), not from slicing every
    cell; when there are fewer chunks than ranks, the costliest chunks are halved until every rank has one.
    Within a bucket x length, generation rows go longest answer budget first, so short-budget rows (passkey, vt)
    share chunks whose batches stop early::

        1k, 6 methods, 9 tasks x 50 prompts = 450 rows a method, 585 rows a batch:
            before   rank 0..3: 112 rows a method -> 4 batches x 6 methods x 128 steps
            chunks   rank r   : 450 rows a method -> 1 batch  x 6 methods x 128 steps
        8k, 73 rows a batch: 7 chunks of <= 65 rows (niah tasks first, passkey + vt last), dealt by cost
    """
    if ranks.world == 1:
        return work
    owner, _ = deal(work, ranks.world, batch_rows, merged)
    return only(work, {p for p, r in owner.items() if r == ranks.rank})


def only(work: list[tuple], prompts, methods=None) -> list[tuple]:
    """``work`` restricted to the sample groups ``prompts`` (a set of ``(task, length, index)``) and, when given,
    to ``methods``; empty cells out."""
    mine = []
    for method, task, length, todo in work:
        if methods is not None and method not in methods:
            continue
        todo = [s for s in todo if (task, length, s.index) in prompts]
        if todo:
            mine.append((method, task, length, todo))
    return mine


def claim_queues(work: list[tuple], world: int, batch_rows, merged: bool, methods: list,
                 joins: dict) -> tuple[list[list], list[int]]:
    """What the ranks claim (``parallel.claims``), one batch of one method each: ``(queues, first)``, the same on
    every rank. ``queues``: the generation items, then the likelihood items (where there are both), each item
    ``(prompts, methods)``, costliest chunk first (the cost model's estimate), so the last items claimed are the
    cheapest and the ranks end within about one batch of each other (~2-5 s) whatever the estimate's error (a
    static deal of whole chunks left 37 s between the ranks of the H100 study of 2026-12-06). ``first[r]``: the
    queue rank r claims from until it is empty, then the others in turn. Per chunk each method goes on its own,
    except that a method that copies an earlier row's records at the chunk's length (``joins[label]``:
    ``{length: donor label}``, ``rope_share.equal_lengths``) goes with its donor: it costs nothing and needs the
    donor's records of the same prompts (one rank, in order)::

        chunk 8k #1:  (rope)  (string)  (self_extend, self_extend@fair)  ...     chunk 1k:  (rope, string, ...)  ...

    The last ``round(world x likelihood share of the cost)`` ranks (at least one) start on the likelihood queue,
    the others on generation: the card runs likelihood forwards (compute-bound) beside generation's
    bandwidth-bound decode steps, not all ranks' likelihood at once (a likelihood token then cost ~2x a prefill
    token: H100, 2026-12-06), and a rank changes kind about once. A change of kind gives the allocator's cached
    blocks back (``runner.release_cached_memory``); in the H100 study of 2026-12-07, where the kinds were
    interleaved item by item (~35 changes a rank), the batch after a change ran 0.3-0.45 s slower (medians)::

        rank 0, 1   G1 G2 G4 G5 ... G_n                   (generation, costliest first)
        rank 2      L1 L2 ... L_m  G_k ...                 (likelihood, then what is left of generation)
    """
    unit_of, chunks = _costed_chunks(work, world, batch_rows, merged)
    kinds: dict[bool, list] = {True: [], False: []}   # generation (a unit's bucket starts with GENERATION) first
    for cost, units in sorted(chunks, key=lambda c: -c[0]):   # stable: ties keep the work's order
        kinds[units[0][0][0] == GENERATION].append((cost, units))
    prompts = _prompts(unit_of)
    queues, costs = [], []
    for chunk_list in (c for c in kinds.values() if c):
        items, total = [], 0
        for cost, units in chunk_list:
            chunk = frozenset(p for u in units for p in prompts[u])
            length = units[0][1]
            groups: dict[str, list] = {}   # donor label -> the donor, then the rows that copy it here
            for m in methods:
                donor = joins.get(m.label, {}).get(length)
                groups.setdefault(donor if donor in groups else m.label, []).append(m)
            items += [(chunk, tuple(g)) for g in groups.values()]
            total += cost
        queues.append(items)
        costs.append(total)
    first = [0] * world
    if len(queues) == 2 and world > 1:
        n = min(world - 1, max(1, round(world * costs[1] / max(1, sum(costs)))))
        first[world - n:] = [1] * n
    return queues, first


def deal(work: list[tuple], world: int, batch_rows=1, merged: bool = False) -> tuple[dict, list[int]]:
    """``shard``'s plan, the same on every rank: ``({(task, length, index): rank}, estimated cost per rank)``
    (cost in generation prompt-token equivalents, ``LIKELIHOOD_TOKEN`` and ``DECODE_STEP_TOKENS``): the chunks,
    costliest first, each to the rank with the least estimated cost so far."""
    unit_of, chunks = _costed_chunks(work, world, batch_rows, merged)
    load = [0] * world
    rank_of = {}
    for cost, units in sorted(chunks, key=lambda c: -c[0]):   # stable: ties keep the work's order
        r = min(range(world), key=lambda k: (load[k], k))
        load[r] += cost
        rank_of.update(dict.fromkeys(units, r))
    return {prompt: rank_of[u] for prompt, u in unit_of.items()}, load


def _costed_chunks(work: list[tuple], world: int, batch_rows, merged: bool) -> tuple[dict, list[tuple]]:
    """``_chunks`` of ``work`` (``batch_rows``: an int or a function of the length), the costliest halved until
    there are ``world`` of them where they can be."""
    rows_at = batch_rows if callable(batch_rows) else (lambda length: batch_rows)
    if any(rows_at(length) < 1 for _, _, length, _ in work):
        raise ValueError(f"batch rows must be >= 1, got {batch_rows}")
    unit_of, chunks = _chunks(work, rows_at, merged)
    return unit_of, _halved(chunks, world)


def _prompts(unit_of: dict) -> dict:
    """``{unit: {(task, length, index), ...}}`` from ``_chunks``' ``unit_of``."""
    prompts: dict[tuple, set] = {}
    for prompt, u in unit_of.items():
        prompts.setdefault(u, set()).add(prompt)
    return prompts


def _halved(chunks: list[tuple], world: int) -> list[tuple]:
    """``chunks`` (``(cost, units)``) with the costliest halved until there are ``world`` of them (or no chunk of
    several units is left)."""
    chunks = list(chunks)
    while len(chunks) < world and any(len(units) > 1 for _, units in chunks):
        cost, units = max(chunks, key=lambda c: (c[0], len(c[1])))
        chunks.remove((cost, units))
        half = len(units) // 2
        chunks += [(cost * len(part) // len(units), part) for part in (units[:half], units[half:])]
    return chunks


def _chunks(work: list[tuple], rows_at, merged: bool) -> tuple[dict, list[tuple]]:
    """``({(task, length, index): unit}, [(cost, [unit, ...])])``. A unit is a sample group
    (bucket, length, -budget, group, index): a likelihood batch group's tasks share one (``evaluate`` computes
    their common windows once), any other task's prompt is its own. Each bucket x length's units, in budget then
    work order, are cut into chunks of at most a batch's rows (near-equal rows; the fewest where every unit is
    one row, a perplexity document's unit holds two); cost = the units' weighted prompt tokens + the chunk's
    methods x its longest budget x ``DECODE_STEP_TOKENS``."""
    unit_of: dict[tuple, tuple] = {}
    units: dict[tuple, list] = {}   # unit -> [rows (tasks), cost in tokens, methods]
    for method, task, length, todo in work:
        t = resolve_task(task)
        group = t.batch_group if t.kind != GENERATION and t.batch_group else task
        head = (decode_bucket(t, merged), length, -t.max_new_tokens if t.kind == GENERATION else 0, group)
        weight = token_weight(t.kind)
        for s in todo:
            u = unit_of.setdefault((task, length, s.index), (*head, s.index))
            entry = units.setdefault(u, [set(), 0, set()])
            entry[0].add(task)
            entry[1] += weight * s.n_tokens
            entry[2].add(method)
    cells: dict[tuple, list] = {}
    for u in units:
        cells.setdefault(u[:2], []).append(u)
    chunks = []
    for (_, length), members in cells.items():
        members.sort(key=lambda u: u[2])   # longest budget first, then the work's order (sort is stable)
        rows = sum(len(units[u][0]) for u in members)
        target = -(-rows // -(-rows // rows_at(length)))   # near-equal rows in the fewest batches
        part, held = [], 0
        for u in members + [None]:
            r = len(units[u][0]) if u is not None else 0
            if part and (u is None or held + r > target):
                methods = len(set().union(*(units[p][2] for p in part)))
                cost = sum(units[p][1] for p in part) + methods * -min(p[2] for p in part) * DECODE_STEP_TOKENS
                chunks.append((cost, part))
                part, held = [], 0
            if u is not None:
                part.append(u)
                held += r
    return unit_of, chunks


def rows_per_batch(cfg, length: int) -> int:
    """Rows of one generate() / evaluate() call at ``length``: ``batch_tokens // length`` when a token budget is
    set (short prompts get large batches, long ones small), else ``batch_size``."""
    return max(1, cfg.batch_tokens // length) if cfg.batch_tokens else cfg.batch_size


class MemoryCap:
    """Prompt tokens per batch that this process learned it can hold, per batch kind (generation, likelihood).

    Unbounded until a batch runs out of GPU memory (``runner._run_batch`` then retries it in halves and reports
    the smallest row count that failed); from then on that kind's batches hold at most ``KEEP`` (3/4) of those
    tokens, at every length (memory goes with tokens: KV cache and activations). Without a bound every later
    batch of the same size paid its own failed attempt: 28 of them, ~4-5 s each, in the 2026-12-06 H100 study (3
    processes sharing the card at 600k tokens a batch). With half (the first bound) one split cost more than it
    saved: with three processes on the card a failure is mostly another process's peak at that moment, and a
    rank whose batches were halved for the rest of the run decoded twice the steps (160 batches against 85-93 on
    the other ranks, a 423 s span against 321-342: H100, 2026-12-06, sixteenth session). A further failure
    lowers the bound again (3/4 of the new failure)::

        cap = MemoryCap()
        for batch in cap.split(batches, length, kind):   # one entry's batches (one kind), longer ones cut in order
            ... run it; on an out-of-memory split: cap.learn(kind, smallest failed rows, length)
    """

    KEEP = 0.75   # of the smallest failed batch's tokens

    def __init__(self):
        self.tokens: dict[str, int] = {}

    def learn(self, kind: str, failed_rows: int, length: int) -> None:
        t = max(1, int(failed_rows * length * self.KEEP))
        self.tokens[kind] = min(self.tokens.get(kind, t), t)

    def rows(self, kind: str, length: int) -> int | None:
        """The most rows a batch of ``kind`` at ``length`` may hold (None: no bound learned)."""
        t = self.tokens.get(kind)
        return None if t is None else max(1, t // length)

    def split(self, batches, length: int, kind: str):
        """``batches`` (all of ``kind``) in order, each cut into pieces of at most ``rows(kind, length)``, none of
        one row where two can be had (``fill_cuts``); the bound is read again before each batch, so one learned
        mid-bucket applies to the rest of it."""
        for batch in batches:
            cap = self.rows(kind, length)
            if cap is None or len(batch) <= cap:
                yield batch
            else:
                yield from fill_cuts(batch, cap)


def decode_bucket(task, merged: bool = False) -> tuple:
    """The bucket of a task's rows: tasks of one bucket share batches (at one length and method).

    Generation, ``merged`` (the decode loop can retire ended rows, ``graph_decode.retire_possible``): one bucket
    for every task. Where an ended row then costs a step only its few projections, not its KV reads, short answers
    (passkey 6 tokens, vt 30) ride in the long ones' batches (niah 128), ordered longest budget first
    (``cut_batches``): full batches, and the shortest budgets in the tail batch, which stops early.
    Otherwise budgets round up to the same power of 4 (passkey 6 and number_string 12 -> 16; vt 30,
    kv_retrieval 50 and needle 24 -> 64; niah 128 and cwe 120 -> 256), so a batch's rows run within 4x the
    decode steps they need. A likelihood task is its own bucket, or its ``batch_group``'s (both perplexity
    protocols: evaluate computes their shared windows once)."""
    if task.kind != GENERATION:
        return (task.batch_group or task.name,)
    if merged:
        return (GENERATION,)
    bucket = 1
    while bucket < task.max_new_tokens:
        bucket *= 4
    return (GENERATION, bucket)


def cut_batches(rows: list[tuple], tasks: dict, step: int, merged: bool = False) -> list[list[tuple]]:
    """``rows`` (``(sample, task name)``) of one ``length_buckets`` entry cut into batches of at most ``step`` rows,
    none of one row where two can be had (``fill_cuts``).

    Within a bucket rows go by prompt tokens (little padding), then task, then prompt index; a likelihood bucket
    keeps each prompt index's tasks together (a batch group's rows of one document share a batch). ``merged``
    (the active method's ended rows are retired, ``graph_decode.ended_rows_free``): generation rows of every
    budget together, longest budget first (``decode_bucket``). Otherwise an entry that holds several power-of-4
    buckets (a merged run's, for a method whose rows the loop does not retire) is cut bucket by bucket."""
    if not rows:
        return []
    if tasks[rows[0][1]].kind != GENERATION:  # cut between documents: a document's rows as one unit
        docs: dict[int, list] = {}
        for row in sorted(rows, key=lambda x: (x[0].n_tokens, x[0].index, x[1])):
            docs.setdefault(row[0].index, []).append(row)
        per = max(len(d) for d in docs.values())
        return [[row for doc in piece for row in doc] for piece in fill_cuts(list(docs.values()), step // per)]
    if merged:
        groups = [sorted(rows, key=lambda x: (-tasks[x[1]].max_new_tokens, x[0].n_tokens, x[1], x[0].index))]
    else:
        by_bucket: dict[tuple, list] = {}
        for row in rows:
            by_bucket.setdefault(decode_bucket(tasks[row[1]]), []).append(row)
        groups = [sorted(g, key=lambda x: (x[0].n_tokens, x[1], x[0].index))
                  for _, g in sorted(by_bucket.items(), key=lambda kv: -kv[0][1])]
    return [piece for g in groups for piece in fill_cuts(g, step)]


def fill_cuts(items: list, most: int) -> list[list]:
    """``items`` in order, cut into full pieces of ``most`` (at least 1) and a remainder, except that a one-item
    remainder takes the item before it: 97 rows at most 48 a batch are 48 + 47 + 2, not 48 + 48 + 1. Under
    ``torch.compile`` a batch of one row is a new specialisation of the layers (size 1), compiled again: six such
    batches cost 13 s on one rank of the H100 study of 2026-12-06, its longest. Full pieces first, because the
    rows come longest answer budget first and a short tail batch stops early: cutting into near-equal pieces
    instead took 2.6 % more decode forwards (``benchmarks/estimate_buckets.py`` on the 2026-12-05 records:
    21,398 against 20,847)."""
    most = max(1, most)
    out = [items[i:i + most] for i in range(0, len(items), most)]
    if len(out) > 1 and len(out[-1]) == 1 and most > 1:
        out[-2], out[-1] = out[-2][:-1], out[-2][-1:] + out[-1]
    return out


def length_buckets(work: list[tuple], merged: bool = False) -> list[tuple]:
    """``work`` (``(method, task, length, todo)``) regrouped into ``(method, length, [(task, todo), ...])``: one
    entry per decode bucket (``decode_bucket``, ``merged`` passed on) x length x method, in the order each first
    occurs (bucket-major, then length, then method, the rope row first: the methods that are exactly RoPE at a
    length copy its records, ``rope_share``; a partial run finishes whole buckets for every method). The runner
    cuts each entry into batches that mix its tasks, so a length holds few large generate() calls instead of one
    per task.

    With several ranks the runner calls this per claimed item (``claim_queues``: one chunk, one method or the rope
    row with the methods that copy it), and the ranks' first items are different methods, so each method's
    Triton kernels are JIT-compiled (3-5 s a method on the H100, 2026-12-06) first on one rank while the others,
    reaching it later, load them from Triton's on-disk cache.
    """
    groups: dict[tuple, list] = {}
    for method, task, length, todo in work:
        key = (decode_bucket(resolve_task(task), merged), length, method)
        groups.setdefault(key, []).append((task, todo))
    first: dict[tuple, int] = {}
    for i, key in enumerate(groups):
        first.setdefault(key[:2], i)   # (bucket, length) in order of first occurrence
    order = sorted(groups, key=lambda k: (first[k[:2]], k[2].label != rope_share.BASELINE))   # stable: run order
    return [(method, length, groups[_, length, method]) for _, length, method in order]
