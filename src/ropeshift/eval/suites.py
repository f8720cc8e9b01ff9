"""Named study presets: tasks, lengths, samples and method variants as data (``ropeshift eval --suite NAME``).

    suite = SUITES["ruler-lite"]
    [m.label for m in suite.methods]     # ['rope', 'string', 'string+yarn', 'yarn', ..., 'yarn@fair', ...]
    resolve_relative({"train_length": "2/3L", "factor": 1.5}, 8192)   # {'train_length': 5461, 'factor': 1.5}

A method variant is a ``MethodSpec``: a method name (``a+b`` composes: RoPE-scaling parts are applied first,
then the attention method, as ``apply(apply(model, "yarn", factor=2), "string")``), its ``apply`` parameters
(for a composition, one parameter object per part) and a label naming its rows and results folder. A
parameter value written ``"<r>L"`` (``"2/3L"``, ``"0.5L"``) is ``round(r x L)``, L the model's training length,
resolved when the method is applied, so one preset serves every model.

The paper's fair protocol for length-extrapolating baselines (STRING, section 4.2: "we modify the training
length of the model to 2/3 of the original length and set the extrapolation scaling factor to L_test/L_train =
3/2") is the ``@fair`` rows: ``train_length = L' = round(2/3 L)`` for every such method, and for the
RoPE-scaling ones (yarn, ntk, pi) ``target_length = L``, i.e. factor L / L' = 3/2 (up to rounding L').
The paper does not give DCA's chunk size or Self-Extend's group size for this protocol; we keep each
method's defaults, resolved against the reduced L' (DCA: chunk 3/4 L', local window L'/16; Self-Extend:
group 8, its default window capped at L'/4). Plain ``yarn`` and ``string+yarn`` use factor 2
(extending L to 2L, the usual deployment); at lengths <= L they measure the cost of that setting.
Run: ropeshift eval --suite ruler-lite --dry-run
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..registry import Registry
from .options import MethodSpec, method_specs, parse_lengths, parse_names

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)(?:\s*/\s*(\d+(?:\.\d+)?))?\s*\*?\s*L\s*$")


def resolve_relative(params: dict, train_length: int | None) -> dict:
    """Replace every ``"<r>L"`` string value (``"2/3L"``, ``"0.75L"``) by ``round(r x train_length)``."""
    out = {}
    for key, value in params.items():
        m = _RELATIVE.match(value) if isinstance(value, str) else None
        if m:
            if not train_length:
                raise ValueError(f"parameter {key}={value!r} is relative to the training length, but the model "
                                 "states none (config.max_position_embeddings)")
            ratio = float(m.group(1)) / (float(m.group(2)) if m.group(2) else 1.0)
            value = int(round(ratio * train_length))
        out[key] = value
    return out


def parts(spec: MethodSpec) -> list[tuple[str, dict]]:
    """``[(method name, apply parameters)]`` of a spec; a composition ``a+b`` has one entry per part."""
    names = spec.name.split("+")
    if len(names) == 1:
        return [(spec.name, dict(spec.params))]
    unknown = set(spec.params) - set(names)
    if unknown:
        raise ValueError(f"method {spec.name!r}: parameters of a composition are keyed by part "
                         f"({', '.join(names)}), got {', '.join(sorted(unknown))}")
    return [(n, dict(spec.params.get(n, {}))) for n in names]


@dataclass(frozen=True)
class Suite:
    """A study preset; ``lengths`` in the CLI's syntax (``"1k,2k"``)."""

    name: str
    summary: str
    tasks: tuple[str, ...]
    lengths: str
    samples: int
    methods: tuple[MethodSpec, ...]
    haystack: str | None = None

    def method(self, label: str) -> MethodSpec:
        for m in self.methods:
            if m.label == label:
                return m
        reg = Registry("method of suite " + self.name)
        for m in self.methods:
            reg.register(m.label, m)
        return reg[label]  # raises with "did you mean"


def _fair(name: str, scaling: bool) -> MethodSpec:
    # factor = L / L' (= 3/2 up to rounding L'), given as target_length = L so transformers' YaRN check agrees
    params = {"train_length": "2/3L", **({"target_length": "1L"} if scaling else {})}
    return MethodSpec(name, params, alias=f"{name}@fair")


RULER_LITE = Suite(
    name="ruler-lite",
    summary="RULER-style retrieval + STRING's niah4 + perplexity, 1k-8k, 50 samples, STRING and baselines "
            "(with the paper's fair protocol for extrapolation methods)",
    tasks=("passkey", "niah_single_1", "niah_single_2", "niah_single_3", "niah_multikey_1", "niah4", "vt",
           "kv_retrieval", "cwe", "perplexity", "perplexity:single"),
    lengths="1k,2k,4k,6k,8k",
    samples=50,
    haystack="kjv",
    methods=(
        MethodSpec("rope"),
        MethodSpec("string"),
        MethodSpec("string+yarn", {"yarn": {"factor": 2.0}}, alias="string+yarn"),
        MethodSpec("yarn", {"factor": 2.0}, alias="yarn"),
        MethodSpec("rerope"),
        MethodSpec("self_extend"),
        MethodSpec("dca"),
        MethodSpec("lm_infinite"),
        _fair("yarn", True), _fair("ntk", True), _fair("pi", True), _fair("dca", False), _fair("self_extend", False),
    ),
)

# the second embedded model's study (issue 10, section 4): a longer-context model (qwen2.5-coder-0.5b, L = 32k),
# its lengths L/8..L; fewer samples per cell, since one 32k prompt costs ~16 8k ones in attention
RULER_LONG = Suite(
    name="ruler-long",
    summary="RULER-style retrieval at 4k-32k for 32k-context models, 25 samples, STRING and the strongest baselines "
            "of ruler-lite",
    tasks=("passkey", "niah_single_1", "niah_single_2", "niah_multikey_1", "niah4", "vt"),
    lengths="4k,8k,16k,24k,32k",
    samples=25,
    haystack="kjv",
    methods=tuple(RULER_LITE.method(label) for label in
                  ("rope", "string", "rerope", "self_extend", "dca", "yarn@fair", "self_extend@fair")),
)

SUITES: Registry = Registry("suite")
SUITES.register(RULER_LITE.name, RULER_LITE)
SUITES.register(RULER_LONG.name, RULER_LONG)


@dataclass(frozen=True)
class RunSettings:
    tasks: tuple[str, ...]
    lengths: tuple[int, ...]
    samples: int
    methods: tuple[MethodSpec, ...]
    haystack: str | None


def run_settings(args, *, tasks: str, lengths: str, samples: int, methods: str) -> RunSettings:
    """Resolve ``eval``'s flags against ``--suite`` (flags given explicitly narrow or override the suite).

    ``--methods`` with a suite selects suite rows by label; ``--tasks``/``--lengths``/``--samples``/
    ``--haystack`` replace the suite's. Without a suite, the keyword defaults apply."""
    suite = SUITES[args.suite] if getattr(args, "suite", None) else None
    if suite is None:
        specs = method_specs(parse_names(args.methods or methods, "methods"), shift=args.shift,
                             window=args.window, config_path=args.method_config)
        return RunSettings(parse_names(args.tasks or tasks, "tasks"), parse_lengths(args.lengths or lengths),
                           samples if args.samples is None else args.samples, specs, args.haystack)
    if args.shift is not None or args.window is not None or args.method_config:
        raise ValueError(f"--shift/--window/--method-config cannot change the methods of --suite {suite.name} "
                         "(its rows are fixed data); drop --suite to set parameters")
    specs = suite.methods
    if args.methods:
        specs = tuple(suite.method(label) for label in parse_names(args.methods, "methods"))
    return RunSettings(parse_names(args.tasks, "tasks") if args.tasks else suite.tasks,
                       parse_lengths(args.lengths or suite.lengths),
                       suite.samples if args.samples is None else args.samples, specs,
                       args.haystack if args.haystack is not None else suite.haystack)
