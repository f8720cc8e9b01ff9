"""How an evaluation's processes start: ``run_rank`` (one rank of a run: its process group, device, model and
tokenizer, then ``runner.run``) and ``run_workers`` (``--workers N``: N spawned ranks on one machine).

    run_workers(cfg, load, 3, "cuda", load_tokenizer=tokenizer_of)   # 3 processes sharing one GPU
    run_rank(cfg, load, "cuda", load_tokenizer=tokenizer_of)         # this process as one rank (under torchrun)

``load(device, **kw) -> (model, tokenizer)`` loads the model on a rank's device (``cli_common.load``'s keywords:
``with_tokenizer``, ``tokenizer``, ``weights``); ``load_tokenizer() -> tokenizer`` the tokenizer alone.
"""
from __future__ import annotations

import functools

from . import kernel_warm, parallel, startup_clock
from .parallel import Ranks
from .runner import RunConfig, run
from .sample_store import start_samples


def run_rank(cfg: RunConfig, load, device: str | None = None, progress: bool = True,
             model_path: str | None = None, load_tokenizer=None) -> int:
    """One rank of a data-parallel run, under torchrun or spawned by ``run_workers``: join the gloo group,
    load the model on this rank's own device with ``load(device) -> (model, tokenizer)``, run its share.

    ``load_tokenizer() -> tokenizer`` (optional): rank 0 then starts the prompts' worker processes before it loads
    the model (measured on the H200: model 35 s and prompts 18 s one after the other on rank 0, issue 10), and
    ``run`` collects them before it plans. With several ranks it is the only tokenizer loaded: rank 0
    sends it to the others (``parallel.post``, in the background: ~1.6 MB pickled for SmolLM2), and every rank
    loads its weights alone. Rank 0 loads its weights with that tokenizer (``load(device, tokenizer=...)``: a GGUF
    model is converted once, ``gguf_cache``), then posts it and goes on (the rows that copy others, its prompts);
    the others first build their model without weights (``load(device, weights=False) -> (model, None)``,
    ``ropeshift.skeleton``), compile on it, and only then take the tokenizer and copy in the weights
    (``load(device, with_tokenizer=False)``: the converted folder, ~1 s)::

        rank 0      [tokenizer][prompt workers][weights, conversion][post][joins][prompts][post plan][eager batches
        rank 1, 2   [skeleton][warm-up: compile ......................][take][weights][take plan][batches ...

    (until the twenty-seventh session rank 0 sent with a blocking broadcast after its joins, and waited 9-15 s
    there for the others' warm-up before it collected its prompts: 1.5-2.7 s more after the others were ready;
    until the twenty-eighth session all ranks then met at a barrier: ``runner._hand_plan``.)
    A rank 0 that raises while its prompt workers run stops them first (``PendingSamples.close``): it used to
    wait at its exit for those idle workers, forever, and the other ranks for its plan.

    On the H100 host (third study of 2026-12-07) building the tokenizer from the GGUF file took rank 0 8 s, and
    ranks 1 and 2 loaded their weights from the GGUF file for 13.7 s before they could start compiling (18 s):
    the barrier came 35.6 s after the command's start, 10 s after rank 0's prompts were ready."""
    parallel.allocator_defaults()  # before this rank's first CUDA allocation (spawned ranks too)
    ranks = Ranks.from_env()
    kernel_warm.log_compiles(f"rank {ranks.rank}")  # ROPESHIFT_KERNEL_WARM_LOG=1: the kernels it compiles
    samples = None  # rank 0's prompts, made by worker processes (start_samples)
    created = parallel.init_group(ranks)
    try:
        dev = parallel.device_for(ranks, device)
        if ranks.world > 1 and dev == "cpu":
            import torch

            torch.set_num_threads(parallel.cpu_threads(ranks))
        clock = startup_clock.StartupClock(ranks, enabled=progress)
        share = load_tokenizer is not None and ranks.world > 1  # one tokenizer, rank 0's, sent to the others
        handover = None
        if load_tokenizer is not None and ranks.main:  # made by worker processes while the model loads
            tokenizer = load_tokenizer()
            clock.mark("tokenizer")
            samples = start_samples(cfg, tokenizer, progress)
            clock.mark("prompt workers")  # stored prompts read, the missing ones handed to forked workers
        if share and ranks.main:
            model, _ = load(dev, tokenizer=tokenizer)  # a GGUF model converted once, with this tokenizer
            clock.mark("model")
            parallel.post(ranks, tokenizer)  # sent in the background; the others take it after their warm-up
            clock.mark("tokenizer sent")
        elif share:
            model, tokenizer = load(dev, weights=False)  # its config read by a forked helper meanwhile
            clock.mark("skeleton")
            handover = functools.partial(_take_weights, ranks, load, dev, clock)
        else:
            model, tokenizer = load(dev)
            clock.mark("model")
        return run(cfg, model, tokenizer, progress=progress, model_path=model_path, ranks=ranks, clock=clock,
                   samples=samples, handover=handover)
    except BaseException:
        if samples is not None:  # rank 0 failed while its prompt workers were running: stop them, or it hangs
            samples.close()      # at its exit joining them (and the other ranks for its plan)
        raise
    finally:
        if created:
            import torch.distributed as dist

            dist.destroy_process_group()


def _take_weights(ranks: Ranks, load, device: str, clock, model) -> tuple:
    """``(tokenizer, model)`` for a rank > 0 whose ``model`` was built without weights (``run_rank``): rank 0's
    tokenizer (sent once its weights, and a GGUF model's converted folder, are ready), then the weights loaded
    alone and copied into ``model`` (``skeleton.adopt``); the loaded model itself, with a warning, when they do
    not fit it."""
    import warnings

    from ropeshift import skeleton

    tokenizer = parallel.take(ranks)
    clock.mark("tokenizer")
    loaded, _ = load(device, with_tokenizer=False)
    try:
        skeleton.adopt(model, loaded)
    except ValueError as e:
        warnings.warn(f"rank {ranks.rank}: {e}; running the loaded model instead (compiled again)", stacklevel=2)
        model = loaded
    clock.mark("weights")
    return tokenizer, model


def run_workers(cfg: RunConfig, load, workers: int, device: str | None = None, progress: bool = True,
                model_path: str | None = None, load_tokenizer=None, check=None, dtype: str | None = None,
                idle=None) -> None:
    """Run ``cfg`` in ``workers`` spawned processes, one device each (``load`` must be picklable).

    When a worker dies the others are stopped and ``torch.multiprocessing``'s exception is raised;
    finished samples are saved, and rerunning (with any number of workers) resumes. ``check()`` (optional: the
    CLI's pre-flight) runs in this process while the workers start (first, with one worker); if it raises, they
    are stopped and its error is the command's. Before it, on CUDA, ``kernel_warm.start`` forks the helpers that
    compile ropeshift's attention kernels for the run's methods beside the ranks' start-up (in ``dtype``, the
    ranks' ``--dtype`` name). ``idle()`` (optional, several workers): called every few seconds while they run
    (``parallel.spawn``)."""
    helpers = []  # kernel_warm's processes: ropeshift's attention kernels compiled beside the ranks' start-up

    def meanwhile():
        helpers.extend(kernel_warm.start(cfg, device, parallel.start_method(), dtype=dtype))
        if check is not None:
            check()

    try:
        if workers == 1:
            meanwhile()
            run_rank(cfg, load, device, progress, model_path, load_tokenizer)
            return
        parallel.spawn(run_rank, (cfg, load, device, progress, model_path, load_tokenizer), workers,
                       meanwhile=meanwhile, idle=idle)
    finally:
        kernel_warm.stop(helpers)
