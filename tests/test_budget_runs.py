"""benchmarks/budget_runs.py counts rows at their token budget and the tokens they spent after every reference."""
import os
import sys

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


class _CharTokenizer:
    """One token per character (ids = code points), as a transformers tokenizer is called here."""

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}

    def decode(self, ids):
        return "".join(map(chr, ids))


def test_budget_runs_counts_rows_that_could_have_stopped():
    from ropeshift.eval.records import Record

    sys.path.insert(0, BENCH)
    try:
        import budget_runs
    finally:
        sys.path.remove(BENCH)

    def rec(task, text, refs, i):
        return Record("generation", "m", task, 1024, i, "rope", f"h{i}", 0.0, prediction=text, references=refs)

    records = [rec("niah", "x 42 and then on and on", ("42",), 0),  # at the budget (23 tokens), answer after 4
               rec("niah", "42\n", ("42",), 1),  # stopped at its answer's end
               rec("niah", "no answer here at all, none", ("42",), 2),  # at the budget, never the answer
               rec("niah", "A b a B c", ("a", "b", "C"), 3),  # every reference (any case) after 9 of 9 tokens
               rec("other", "ignored", ("x",), 4)]
    table = budget_runs.budget_runs(records, _CharTokenizer(), {"niah": 10})
    assert table == {"niah": [4, 3, 2, (23 - 4) + 0]}
    assert budget_runs.first_full_prefix(_CharTokenizer(), [ord(c) for c in "ab42"], ["42"]) == 4
    assert budget_runs.first_full_prefix(_CharTokenizer(), [ord(c) for c in "ab"], ["42"]) is None
