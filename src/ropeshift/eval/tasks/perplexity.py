"""Long-document perplexity by length bucket (evals.md section 7), two named protocols.

    perplexity          ``strided`` (Press-style, YaRN without --truncate): a span of L + 4 x 256 tokens is
                        read with windows of L tokens moved 256 at a time; the first window scores all of
                        its tokens, each later window scores only its 256 new ones (>= L - 256 context)
    perplexity:single   one forward pass of L tokens per document chunk, every token scored (YaRN's
                        "truncate" mode: the usual PPL-vs-length curve)

Sample i is the i-th disjoint chunk of the haystack text (``--haystack``, default pydoc; kjv holds
~1M tokens), so the seed plays no part. When the tokenizer adds a BOS token, every window starts with
it. Records carry ``nll`` (sum over scored tokens) and ``n_scored``; the report computes
``exp(sum nll / sum n_scored)`` per (method, length): a sum divided once.

The two protocols read the same documents where the haystack holds the strided protocol's spans: ``single``
sample i is then the first window of ``strided`` sample i (same tokens, every token scored), so when both run
(``ruler-lite``) they share batches (``batch_group``) and ``evaluate`` computes each distinct window once:

    strided sample i   [BOS | w0 ........................ ]        5 forwards of L: w0, then 4 windows moved 256
                              [BOS | w1 ...................|+256]
                                     ...
    single sample i    [BOS | w0 ........................ ]        = strided's w0: no forward of its own

A haystack too short for the strided spans (pydoc at 8k) gives ``single`` its own, denser chunks.
"""
from __future__ import annotations

import math

from ..haystacks import Haystack
from ..records import LIKELIHOOD
from .base import Sample, Task, TaskOptions, register

STRIDE = 256
EXTRA_WINDOWS = 4
LOGITS_BYTES = 4 * 1024**3   # the model's logits per forward, in its own dtype
CE_TOKENS = 8192              # (row, position) pairs per fp32 cross-entropy chunk (~1.6 GB at V = 49k)


MARGIN = 64  # ids dropped from the end of a tokenised prefix: the cut may split its last pre-tokens differently


def _doc_ids(tokenizer, haystack: Haystack, need: int | None = None) -> tuple[int, ...]:
    """The first token ids of the haystack's text: at least ``need`` of them (None or more than the text holds:
    all), each equal to the whole text's tokenisation at its place.

    Only a prefix of the words is tokenised (the whole kjv text is ~1M tokens, 3.6 s on one core, paid once per
    prompt worker; ruler-lite's 8k samples need 460k of them): ``text(k)`` for a word count ``k`` that covers
    ``need + MARGIN`` tokens, without its last ``MARGIN`` ids. This assumes a word's tokens do not depend on the
    words after it once a space separates them, as with the byte-level BPE of the embedded models (their ids equal
    the whole text's: tested, and checked on SmolLM2's kjv text); the margin keeps a cut that splits differently
    out of reach. Prefixes are kept per (tokenizer, haystack), the last 4 pairs, and grown when a call needs more."""
    key = (tokenizer, haystack)
    if key not in _DOCS and len(_DOCS) >= 4:
        del _DOCS[next(iter(_DOCS))]   # the oldest pair (the lru_cache(maxsize=4) this replaced kept 4 texts)
    words, (k, ids) = haystack.n_words, _DOCS.get(key, (0, ()))
    while not (k == words or (need is not None and len(ids) >= need + MARGIN)):
        k = words if need is None else min(words, max(2 * k, (need + MARGIN) * 5 // 6 + 1024))  # ~1.3 a word
        ids = tuple(tokenizer(haystack.text(k), add_special_tokens=False)["input_ids"])
        _DOCS[key] = (k, ids)
    return ids if k == words else ids[:len(ids) - MARGIN]


_DOCS: dict[tuple, tuple[int, tuple[int, ...]]] = {}  # (tokenizer, haystack) -> (words tokenised, their ids)


def _bos(tokenizer) -> list[int]:
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    bos = tokenizer.bos_token_id
    return [bos] if bos is not None and ids and ids[0] == bos else []


def windows(n_doc: int, length: int, stride: int, n_bos: int) -> list[tuple[int, int, int]]:
    """``(begin, end, n_target)`` over a document of ``n_doc`` tokens: each window holds
    ``tokens[begin:end]`` (at most ``length - n_bos``) and scores its last ``n_target`` tokens."""
    span = length - n_bos
    out, prev_end, begin = [], 0, 0
    while True:
        end = min(begin + span, n_doc)
        # without a BOS the window's first token has no context, so it is never a target (stride >= span
        # would otherwise ask for one: a length <= STRIDE without BOS)
        trg = min(end - prev_end if out else end, end - begin - (0 if n_bos else 1))
        out.append((begin, end, trg))
        prev_end = end
        if end == n_doc:
            return out
        begin += stride


class Perplexity(Task):
    kind = LIKELIHOOD
    batch_group = "perplexity"   # both protocols share batches: evaluate() computes each distinct window once
    reads_haystack = True
    default_haystack = "pydoc"
    chat = False
    max_new_tokens = 0

    def __init__(self, protocol: str):
        if protocol not in ("strided", "single"):
            raise ValueError(f"perplexity protocol must be strided or single, got {protocol!r}")
        self.protocol = protocol
        self.name = "perplexity" if protocol == "strided" else "perplexity:single"
        self.description = {"strided": f"long-document perplexity, windows of L moved {STRIDE} tokens",
                            "single": "long-document perplexity, one forward per L-token chunk"}[protocol]

    def with_arg(self, arg: str | None) -> "Perplexity":
        return self if arg is None else Perplexity(arg)

    def span(self, length: int, n_bos: int, protocol: str | None = None) -> int:
        """Document tokens of one sample of ``protocol`` (default: this task's)."""
        body = length - n_bos
        return body + (EXTRA_WINDOWS * STRIDE if (protocol or self.protocol) == "strided" else 0)

    def make_samples(self, tokenizer, length, n, seed, options=TaskOptions()):
        if n < 1:
            raise ValueError(f"{self.name}: the number of samples must be >= 1, got {n}")
        haystack = self.haystack_for(options)
        bos = _bos(tokenizer)
        span = self.span(length, len(bos))
        ids = _doc_ids(tokenizer, haystack, n * max(span, self.span(length, len(bos), "strided")))
        if n * span > len(ids):
            raise ValueError(
                f"{self.name}: haystack {haystack.name!r} holds {len(ids):,} tokens, but {n} samples at length "
                f"{length} need {n * span:,}: use fewer samples, shorter lengths or a larger haystack (kjv)")
        # single: the strided protocol's documents (their first windows) when the haystack holds them (module doc)
        every = self.span(length, len(bos), "strided")
        every = every if n * every <= len(ids) else span
        out = []
        for i in range(n):
            chunk = list(ids[i * every:i * every + span])
            out.append(Sample(
                task=self.name, length=length, index=i, seed=seed, haystack=haystack.name, prompt="",
                add_special_tokens=False, n_tokens=length, max_new_tokens=0, references=(),
                meta={"input_ids": chunk, "bos": bos, "protocol": self.protocol, "offset": i * every}))
        return out

    def evaluate(self, model, tokenizer, samples: list[Sample]) -> list[dict]:
        """Sum of NLL and number of scored tokens per sample; the samples may mix both protocols and lengths.

        Every sample's windows (``windows``) are pooled and each distinct one (same tokens, same targets) is
        forwarded once: a ``single`` sample is a ``strided`` sample's first window (module doc). Windows of one
        shape go together, at most ``len(samples)`` rows per forward (the runner's batch) and as many as keep the
        model's logits [rows, trg + 1, V] (its own dtype) within ``LOGITS_BYTES``, in even parts (``even_parts``);
        no KV cache; the NLL summed on the device in fp32 chunks of ``CE_TOKENS`` rows x positions; one host sync
        per call."""
        import torch

        device = next(model.parameters()).device
        units: dict[tuple, int] = {}     # (n_target, window tokens) -> unit number
        per_sample = []                  # per sample: [(unit, n_target)]
        for s in samples:
            bos, ids = s.meta["bos"], s.meta["input_ids"]
            stride = STRIDE if s.meta["protocol"] == "strided" else s.length
            per_sample.append([(units.setdefault((trg, tuple(bos + ids[begin:end])), len(units)), trg)
                               for begin, end, trg in windows(len(ids), s.length, stride, len(bos))])
        acc = torch.float32 if device.type == "mps" else torch.float64  # MPS has no fp64
        nll = torch.zeros(len(units), dtype=acc, device=device)
        shapes: dict[tuple, list] = {}   # (window tokens, n_target) -> [(unit, tokens)]
        for (trg, toks), u in units.items():
            shapes.setdefault((len(toks), trg), []).append((u, toks))
        head = model.get_output_embeddings().weight
        vocab, itemsize = head.shape[0], head.element_size()  # the logits come in the output layer's dtype
        for (_, trg), group in shapes.items():
            step = max(1, min(len(samples), LOGITS_BYTES // ((trg + 1) * vocab * itemsize)))
            for part in even_parts(group, step):
                rows = torch.tensor([toks for _, toks in part], device=device)
                sums = torch.zeros(len(part), dtype=acc, device=device)
                with torch.inference_mode():
                    logits = model(input_ids=rows, logits_to_keep=trg + 1, use_cache=False).logits  # [b, trg+1, V]
                    _add_nll_sums(sums, logits[:, :-1], rows[:, -trg:])
                del logits
                nll.index_copy_(0, torch.tensor([u for u, _ in part], device=device), sums)
        values = nll.tolist()
        out = []
        for parts in per_sample:
            v, scored = sum(values[u] for u, _ in parts), sum(trg for _, trg in parts)
            out.append({"score": math.exp(v / scored), "nll": v, "n_scored": scored})
        return out


def even_parts(items: list, most: int) -> list[list]:
    """``items`` cut into the fewest parts of at most ``most`` each, their sizes differing by at most one:
    50 windows at most 7 a forward are 8 parts of 6 or 7, not 7 x 7 + 1. A forward of one row is what a
    compiled model (``dense_compile``) specialises on: dynamo gives size 1 its own graphs, so a lone
    remainder row compiled the layers again inside the study's loop (3-4 s on the H100, 2026-12-07)."""
    n = len(items)
    parts = -(-n // max(1, most))
    cuts = [n * i // parts for i in range(parts + 1)] if parts else [0]
    return [items[a:b] for a, b in zip(cuts, cuts[1:])]


def _add_nll_sums(out, logits, targets):
    """out [b] += per-row sum of -log softmax(logits)[target], in out's dtype: logits [b, t, V] (any float
    dtype), targets [b, t]; computed in fp32 over chunks of ~CE_TOKENS (row, position) pairs (bounds the fp32
    copy)."""
    import torch.nn.functional as F

    b, t, v = logits.shape
    chunk = max(1, CE_TOKENS // b)
    for lo in range(0, t, chunk):
        x = logits[:, lo:lo + chunk].float()
        ce = F.cross_entropy(x.reshape(-1, v), targets[:, lo:lo + chunk].reshape(-1), reduction="none")
        out += ce.view(b, -1).sum(1, dtype=out.dtype)


register(Perplexity("strided"))
