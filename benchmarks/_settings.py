"""Method settings shared by the benchmarks (bench_attention.py, bench_generate.py), so they cannot disagree.

At sequence length N, with training length L = N / 2 for the baselines (a 2x extension):
  string S = 0.33 N, W = 128 | rerope w = L/4 | rerope_leaky w = L/4, k = 16 | self_extend G = 8, w_n = 1024 |
  dca C = 3L/4, w = L/16 | lm_infinite n_global = 10, n_local = L_d = L.
"plain" (our causal attention, no position change) has no parameters.
"""

ALL_METHODS = ("string", "rerope", "rerope_leaky", "self_extend", "dca", "lm_infinite")


def method_params(name, n):
    """(registered method name, its keyword parameters) of benchmark method ``name`` at sequence length ``n``:
    ``ropeshift.apply(model, registered, **params)`` and ``METHODS[registered](**params)`` take them alike."""
    half = n // 2
    return {
        "plain": ("plain", {}),
        "string": ("string", dict(shift=int(0.33 * n), window=128)),
        "rerope": ("rerope", dict(window=half // 4)),
        "rerope_leaky": ("rerope", dict(window=half // 4, leaky=16.0)),
        "self_extend": ("self_extend", dict(group_size=8, window=1024)),
        "dca": ("dca", dict(chunk_size=3 * half // 4, local_window=half // 16)),
        "lm_infinite": ("lm_infinite", dict(n_global=10, n_local=half, distance_limit=half)),
    }[name]


def method_at(name, n):
    """The benchmarked method instance of ``name`` at sequence length ``n`` (see the module docstring)."""
    from ropeshift.methods.registry import METHODS

    registered, params = method_params(name, n)
    return METHODS[registered](**params)
