"""Compile a model's decoder layers for evaluation with ``torch.compile``, ropeshift's attention left eager.

In an eager forward of a small model most of the time goes to elementwise kernels, not to GEMMs or attention:
SmolLM2-135M, 48 x 8k prompt tokens on the H200, spent 414 of 781 ms in norms, activations, RoPE and copies
(benchmarks/RESULTS.md, ninth session). ``torch.compile`` fuses them. Compiling the model as a whole would also
trace ropeshift's attention function, whose eager path measures the mask once per forward and picks kernels by
it (a trace cannot), and would guard on the method's state (a recompile per method). So attention stays eager in
both modes::

    "layers": each decoder layer (a module with an attention child) compiled whole; its attention module gets
              ``interface.EAGER_UNDER_COMPILE``, so the attention call is a graph break that runs eagerly:
        [ norm, q k v, RoPE ] -> ropeshift attention (eager) -> [ o, residual, norm, MLP, residual ]
    "blocks": only the layer's children that hold no attention (its norms and MLP) compiled:
        [ norm ] -> q k v, RoPE, attention, o, residual (eager) -> [ norm ] -> [ MLP ] -> residual (eager)

In "layers" mode the attention module's ``layer_idx`` is a dynamic source of dynamo's (``torch.compiler.config.
dynamic_sources``, process-wide, ``LAYER_INDEX_SOURCE``): it stays symbolic, so every layer shares one compiled
graph instead of one per layer (30 recompiles, beyond dynamo's limit of 8, after which the rest ran eager: seen on
the H200, ninth session), while every other integer attribute of the modules stays a constant. Until 2026-12-06
the flag was ``allow_unspec_int_on_nn_module``, which made every module integer symbolic, ``head_dim`` too: the
fused RoPE kernels then indexed q and k by runtime divisions by the head size, through an extra buffer for
``rotate_half``'s halves, and took 113 of a 613-ms prefill of 48 x 8k tokens on the H100, ~10x their memory
floor (``benchmarks/bench_inductor_knobs.py``). The evaluation's static cache keeps its update out of the trace
for the same reason (``graph_decode._cache_class``).

Dynamo's ``nested_graph_breaks`` (resume inside the attention's frame instead of re-tracing the layer from above)
and an early start of inductor's compile workers were tried on the H100 (twenty-sixth and twenty-eighth sessions,
benchmarks/RESULTS.md): the first made every generation batch 0.70-0.79x as fast, neither shortened a rank's cold
compile; ``benchmarks/profile_compile.py`` still times both.

An attention module is one transformers calls the attention interface from: it has ``layer_idx``, ``scaling``
and ``is_causal``. Modules are compiled in place with ``nn.Module.compile`` (no class or forward is touched),
with dynamic shapes, so one compile serves every batch shape (and one more the one-token decode step). Numerics:
fused elementwise chains round once instead of per op, so bf16 texts can differ as between two batch sizes.
"""
from __future__ import annotations

COMPILED = "_ropeshift_compiled"  # set on each compiled module, so a second call does nothing
MODES = ("layers", "blocks")
# Work (generation prompt-token equivalents, ``batching.token_weight``) the last of several CUDA processes runs
# eagerly before it compiles its layers (``eager_lead``): estimated (not timed) at ~20-25 s of one eager process
# on the H100, at least the other processes' first compile (17-22 s in run h, 2026-12-06; 12 s for the prefill
# graphs after the RoPE fix): a GPU idle while they compile costs more than a few eager batches too many.
EAGER_LEAD_TOKENS = 4_000_000


LEAD_ENV = "ROPESHIFT_LEAD"  # "0": rank 0 compiles at its first batch instead of leading eagerly (``lead_others``)

# The attention module's own frame (the graph break at ropeshift's attention splits it from its layer's frame)
LAYER_INDEX_SOURCE = "L['self'].layer_idx"


def layer_index_dynamic() -> None:
    """Make ``layer_idx`` (``LAYER_INDEX_SOURCE``) the one symbolic module integer (module docstring), keeping the
    sources a user listed; with a torch that has no ``dynamic_sources`` every module integer is made symbolic
    instead (``allow_unspec_int_on_nn_module``: one graph for every layer, slower RoPE kernels)."""
    import torch

    conf = torch.compiler.config
    if not hasattr(conf, "dynamic_sources"):
        torch._dynamo.config.allow_unspec_int_on_nn_module = True
        return
    have = [s for s in conf.dynamic_sources.split(",") if s]
    if LAYER_INDEX_SOURCE not in have:
        conf.dynamic_sources = ",".join(have + [LAYER_INDEX_SOURCE])


def is_attention(module) -> bool:
    """A module that calls transformers' attention interface (Llama, Qwen2, Mistral, ... attention classes)."""
    return all(hasattr(module, a) for a in ("layer_idx", "scaling", "is_causal"))


def decoder_layers(model) -> list[tuple[str, object]]:
    """``[(qualified name, module)]``: every module with an attention module among its children."""
    return [(name, m) for name, m in model.named_modules() if any(is_attention(c) for c in m.children())]


def dense_blocks(model) -> list[tuple[str, object]]:
    """``[(qualified name, module)]``: every child of a decoder layer that holds no attention module and has
    parameters: the layers' norms and MLPs."""
    out = []
    for name, layer in decoder_layers(model):
        for attr, child in layer.named_children():
            if any(is_attention(m) for m in child.modules()) or not any(True for _ in child.parameters()):
                continue
            out.append((f"{name}.{attr}" if name else attr, child))
    return out


def compile_model(model, mode: str = "layers", backend: str = "inductor") -> int:
    """Compile ``decoder_layers`` ("layers", their attention eager) or ``dense_blocks`` ("blocks") in place;
    returns how many modules were newly compiled (0 when already done). ``backend="eager"``: dynamo's trace only
    (tests)."""
    from ..attention.interface import EAGER_UNDER_COMPILE

    if mode not in MODES:
        raise ValueError(f"compile mode must be one of {MODES}, got {mode!r}")
    if mode == "layers":
        layer_index_dynamic()  # one graph for every layer (module docstring)
        targets = decoder_layers(model)
        for _, layer in targets:
            for child in layer.children():
                if is_attention(child):
                    setattr(child, EAGER_UNDER_COMPILE, True)
    else:
        targets = dense_blocks(model)
    n = 0
    for _, module in targets:
        if getattr(module, COMPILED, False):
            continue
        module.compile(backend=backend, dynamic=True)
        setattr(module, COMPILED, True)
        n += 1
    return n


def eager_lead(ranks, mode: str | None, model) -> int:
    """Work this rank runs with eager layers before it compiles them (``EAGER_LEAD_TOKENS`` for the last of
    several ranks on CUDA, else 0: compile at once).

    Every process compiles its layers at its first forward, 17-22 s of CPU, and in a data-parallel run on one
    GPU they all reach it together, so the GPU idled for those seconds (H100, run h: 0 % busy until ~40 s, ~99 %
    from ~60 s). The last rank instead starts at once with eager layers (~1.5x their compiled GPU time), keeping
    the GPU busy while the others compile, and compiles later while they run, from inductor's on-disk cache
    that their compile filled::

        rank 0, 1   [compile ........][compiled batches ...........................]
        rank 2      [eager batches ...][compile ........][compiled batches ..........]
        GPU         [rank 2 ..........][ranks 0, 1 .......................................]

    The switch counts work, not seconds; which batches run eager depends on the items this rank claims
    (``batching.claim_queues``), so it may differ between two runs of a plan (an eager batch's records differ from
    a compiled one's as between two batch sizes: fused elementwise chains round once).

    Since 2026-12-07 the runner asks for a lead only where the warm-up is off (``ROPESHIFT_WARM_UP=0``): otherwise
    the ranks other than 0 compile while they wait for rank 0's prompts (``eval/warm_up.py``)."""
    if not mode or ranks.world < 2 or ranks.rank != ranks.world - 1:
        return 0
    return EAGER_LEAD_TOKENS if next(iter(model.parameters())).device.type == "cuda" else 0


def lead_others(ranks, model, others_warm: bool) -> bool:
    """Whether rank 0 of several CUDA ranks runs its first batches eagerly, compiling its layers only once every
    other rank has started its batches (``runner.run``: ``Progress.others_started``), when the others compile
    in their wait (``others_warm``: ``warm_up.enabled()``)::

        rank 0      [tokenizer][weights][prompts][eager batches .......][compile][compiled batches ..........]
        rank 1, 2   [skeleton][warm-up: compile ...................][weights][compiled batches ..............]
        GPU                                  [rank 0 ..............][ranks 0-2 ..............................]

    Rank 0 has its prompts ~15 s before the others have compiled (H100 studies of 2026-12-07: its prompts at
    ~23 s, the others ready at ~37 s), and a compile of its own then would be as cold as theirs (~20 s of one
    core, the GPU idle); once they have compiled, the same graphs come from inductor's on-disk caches that their
    compile filled (6.3-6.6 s in those runs). Eager layers cost ~1.5x their compiled GPU time, on a GPU that
    would otherwise idle. ``ROPESHIFT_LEAD=0`` turns it off (rank 0 compiles at its first batch)."""
    import os

    if not others_warm or ranks.world < 2 or not ranks.main or os.environ.get(LEAD_ENV, "1") == "0":
        return False
    return next(iter(model.parameters())).device.type == "cuda"


def resolve(setting: str, model) -> str | None:
    """``RunConfig.compile``: "auto" is "layers" on CUDA and None (no compile) elsewhere (on a CPU the eager
    forward is GEMM-bound and a compile costs more than it saves); "layers" / "blocks" as named; "off": None."""
    if setting not in ("auto", "off", *MODES):
        raise ValueError(f"compile must be auto, off, {' or '.join(MODES)}, got {setting!r}")
    if setting == "off":
        return None
    if setting in MODES:
        return setting
    return "layers" if next(iter(model.parameters())).device.type == "cuda" else None
