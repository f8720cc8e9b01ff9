"""Compile ropeshift's attention kernels for every method of a run before its batches need them (issue 10).

    helpers = start(cfg, device)        # the launcher, once the ranks are spawned; processes, none on a CPU
    ...                                 # the ranks start up and run
    stop(helpers)                       # after the ranks: wait briefly, then terminate what still runs

Why: Triton compiles a kernel at its first launch in a process (one per rule and flag set of the table,
``kernels.spec``) and keeps it in its on-disk cache, where the other processes find it. On a cold H100 machine
(twenty-eighth session, run 8; benchmarks/RESULTS.md) the first batch of each method and kind cost 28.1
rank-seconds more than that cell's median (rope's 8k prefill 4.5 s against 1.6, dca's 8.4 against 2.0), inside
the loop, with the GPU partly idle; a second study on the same machine, its Triton cache filled, lost 1.6. Here
helper processes, started beside the ranks' start-up (16 cores, mostly idle in its first ~25 s), run every
method's attention at each of the run's lengths, so the ranks' first launches find the kernels on disk::

    launcher    [spawn ranks][helpers: the methods in run order ...............][pre-flight]
    rank 0      [tokenizer][weights][prompts][eager batches: rope, string, ...][compiled batches ...
    rank 1, 2   [skeleton][warm-up ......................][weights][batches ...

Each helper builds the model's first decoder layer alone, from its config, with random weights (``model_for``:
``skeleton.read_config``; the attention's shapes, dtype and RoPE are the model's, so are the kernels' constants),
eager (no ``torch.compile``: only ropeshift's own kernels are wanted), and runs ``warm_up.warm_up`` under each of
its methods: a generation batch (prefill into the static cache, decode steps, a captured step) at each length,
with ``length`` and ``length - 1`` prompt tokens (Triton specialises integer arguments on divisibility by 16),
and a likelihood forward of ``length`` tokens when the run scores likelihood. The methods go to the helpers in
run order, the first methods first: every rank needs those first (ranks 1-2 warm up under the second method, rank 0
runs its eager lead batches under the first methods). Until the twenty-ninth session they went last first, and
the compile log (``log_compiles``, H100 run 10, benchmarks/RESULTS.md) showed ranks 1-2 compiling 41 rank-seconds
of the first methods' kernels themselves, the same kernels (constexprs and specialisations) that a helper compiled
later or at the same time.

Nothing here changes a result: the outputs are dropped, and a helper that fails says so on stderr and exits. Off
with ``ROPESHIFT_KERNEL_WARM=0``; on CUDA only (a helper on a machine without it returns at once);
``ROPESHIFT_KERNEL_WARM_LOG=1``: each helper prints its seconds per method, and every helper and rank each
ropeshift kernel it compiles from source (``log_compiles``: what the helpers did not cover). Started by
``launch.run_workers``, so for ``ropeshift eval`` with or without ``--workers`` (not under torchrun).
"""
from __future__ import annotations

import os
import sys
import time

ENV = "ROPESHIFT_KERNEL_WARM"  # "0": no helpers
LOG_ENV = "ROPESHIFT_KERNEL_WARM_LOG"  # "1": on stderr, each helper's seconds per method and every process's
                                       # compiles of ropeshift kernels (``log_compiles``)
HELPERS = 4  # processes at most (each a CUDA context, ~0.5 GiB; one core each, at nice 10)
ROWS, MAX_NEW = 3, 6  # generation rows (not 1: Triton specialises an integer 1) and decode steps per warm-up


def shares(methods, helpers: int) -> list[list]:
    """``methods`` dealt round-robin to ``helpers`` lists, in run order (module docstring); no empty list."""
    order = list(methods)
    n = max(1, min(helpers, len(order)))
    return [order[i::n] for i in range(n) if order[i::n]]


def model_for(name_or_path: str, device: str, dtype: str | None = None):
    """``name_or_path``'s model cut to its first decoder layer, random weights, on ``device``, eval mode, in
    ``dtype`` (a torch dtype's name; None or "auto": ``loader.default_dtype``, as the ranks' ``--dtype auto``).
    The config is read here, not in a forked helper as ``skeleton.skeleton`` does: a helper is a daemon process,
    which may not start processes of its own."""
    import torch

    from ropeshift.loader import default_dtype
    from ropeshift.skeleton import from_config, read_config

    dtype = default_dtype(device) if dtype in (None, "auto") else getattr(torch, dtype)
    config = read_config(name_or_path, dtype)
    config.num_hidden_layers = 1
    for key in ("layer_types", "mlp_only_layers"):  # per-layer lists some configs carry: the first layer's
        if isinstance(getattr(config, key, None), list):
            setattr(config, key, getattr(config, key)[:1])
    return from_config(config, device, dtype)


def warm_methods(cfg, methods, model) -> dict[str, float]:
    """Run each of ``methods`` (``MethodSpec``) on ``model`` at each of ``cfg.lengths`` (module docstring);
    returns the seconds per method label."""
    import torch

    from .generation import activate, deactivate
    from .records import GENERATION, LIKELIHOOD
    from .tasks import resolve_task
    from .warm_up import warm_up

    kinds = {resolve_task(t).kind for t in cfg.tasks}
    seconds = {}
    for method in methods:
        t0 = time.perf_counter()
        activate(model, method, cfg.impl, cfg.plain_attention)
        try:
            for length in sorted(cfg.lengths, reverse=True):
                if GENERATION in kinds:
                    for tokens in (length, length - 1):
                        warm_up(model, None, GENERATION, sizes=(ROWS, tokens, MAX_NEW))
                if LIKELIHOOD in kinds:
                    warm_up(model, None, LIKELIHOOD, sizes=(ROWS - 1, length, MAX_NEW))
        finally:
            deactivate(model)
        if next(model.parameters()).is_cuda:  # the cached blocks back to the card the ranks share (~1 GiB)
            torch.cuda.empty_cache()
        seconds[method.label] = time.perf_counter() - t0
    return seconds


def log_compiles(role: str) -> None:
    """With ``ROPESHIFT_KERNEL_WARM_LOG=1``: each ropeshift kernel this process compiles from source (a miss in
    Triton's on-disk cache) from now on is printed on stderr with its seconds and specialisation (``compile_line``),
    so a study's log says which first launches the helpers did not cover. Through ``triton.knobs.compilation.
    listener`` (an earlier listener is still called); nothing without Triton or the variable."""
    if not _logging():
        return
    try:
        from triton import knobs
    except ImportError:
        return
    before = knobs.compilation.listener
    names = ("src", "metadata", "metadata_group", "times", "cache_hit")

    def listener(*args, **kwargs):
        if before is not None:
            before(*args, **kwargs)
        try:
            got = {**dict(zip(names, args)), **kwargs}
            line = None if got.get("cache_hit") else compile_line(got["src"], got["times"])
            if line:
                print(f"kernel compiled ({role}, pid {os.getpid()}, at {time.time():.1f}): {line}", file=sys.stderr,
                      flush=True)
        except Exception:  # noqa: BLE001 - a log line must never fail a compile
            pass

    knobs.compilation.listener = listener


def compile_line(src, times) -> str | None:
    """``name seconds s {constexpr: value} div16=[args]`` for a Triton source of a ropeshift kernel (``src.fn``:
    its JIT function; ``times.total``: microseconds); None for any other kernel."""
    jit = getattr(src, "fn", None)
    fn = getattr(jit, "fn", jit)
    if not getattr(fn, "__module__", "").startswith("ropeshift"):
        return None
    arg = list(getattr(jit, "arg_names", ()))

    def name(path):
        i = path[0] if isinstance(path, tuple) and path else path
        return arg[i] if isinstance(i, int) and i < len(arg) else str(path)

    consts = {name(k): v for k, v in (getattr(src, "constants", None) or {}).items() if isinstance(v, (bool, int))}
    div16 = sorted(name(k) for k, v in (getattr(src, "attrs", None) or {}).items() if "tt.divisibility" in str(v))
    return f"{fn.__name__} {times.total / 1e6:.2f} s {consts} div16={div16}"


def _logging() -> bool:
    return os.environ.get(LOG_ENV) == "1"


def _helper(cfg, methods, device: str, dtype: str | None = None) -> None:
    """One helper process: its methods on a one-layer model (module docstring); never raises."""
    try:
        os.nice(10)
        import torch

        if not torch.cuda.is_available():
            return
        log_compiles("helper")
        t0 = time.perf_counter()
        seconds = warm_methods(cfg, methods, model_for(cfg.model, device, dtype))
        if _logging():
            done = ", ".join(f"{k} {v:.1f}" for k, v in seconds.items())
            print(f"kernel warm-up {time.perf_counter() - t0:.1f} s: {done}", file=sys.stderr, flush=True)
    except Exception as e:  # noqa: BLE001 - a helper only saves time; the run goes on without it
        print(f"kernel warm-up helper failed ({type(e).__name__}: {e}); the ranks compile these kernels "
              "themselves", file=sys.stderr, flush=True)


def start(cfg, device: str | None, start_method: str = "fork", helpers: int = HELPERS,
          dtype: str | None = None) -> list:
    """The helper processes for ``cfg`` (``runner.RunConfig``) on ``device`` (None: cuda:0) in the ranks'
    ``dtype`` (``--dtype``: a name, or None / "auto"), started now; none when ``device`` is not CUDA or
    ``ROPESHIFT_KERNEL_WARM=0``. Call it in a process that has not started CUDA (the launcher), after the ranks
    are forked (``start_method``: ``parallel.start_method()``'s)."""
    import multiprocessing as mp

    if os.environ.get(ENV) == "0" or (device is not None and not str(device).startswith("cuda")):
        return []
    device = device if device and ":" in str(device) else "cuda:0"
    ctx = mp.get_context(start_method)
    procs = []
    for methods in shares(cfg.methods, helpers):
        p = ctx.Process(target=_helper, args=(cfg, methods, device, dtype), daemon=True)
        p.start()
        procs.append(p)
    return procs


def stop(procs, wait_s: float = 2.0) -> None:
    """Wait up to ``wait_s`` in all for the helpers, then terminate the ones still running."""
    end = time.monotonic() + wait_s
    for p in procs:
        p.join(max(0.0, end - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.terminate()
            p.join()
