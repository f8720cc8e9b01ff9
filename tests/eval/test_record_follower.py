"""``RecordFollower``: records read while they are written equal a fresh read of the folder, whatever happened to
the files in between. Run: pytest tests/eval/test_record_follower.py -v"""
from __future__ import annotations

import json

import pytest

from ropeshift.eval.record_follower import RecordFollower
from ropeshift.eval.records import GENERATION, Record, iter_records, open_writer, record_path


def _rec(index: int, method: str = "string", score: float = 1.0, length: int = 384) -> Record:
    return Record(kind=GENERATION, model="tiny", task="passkey", length=length, index=index, method=method,
                  prompt_hash=f"h{index}", score=score, method_name=method, params={"shift": 100},
                  prediction=f"answer {index}", references=("7",), details={"extra": [index, "x"]})


def _fresh(root):
    return [r.to_dict() for r in iter_records(root)]


def _followed(follower):
    return [r.to_dict() for r in follower.records()]


def test_polls_while_writers_append_give_a_fresh_reads_records(tmp_path):
    root = tmp_path / "tiny"
    follow = RecordFollower(root)
    assert follow.poll() == []  # no folder yet
    with open_writer(tmp_path, "tiny", "passkey", "string", 384, rank=1) as w1, \
            open_writer(tmp_path, "tiny", "passkey", "string", 384, rank=0) as w0:
        w1.write(_rec(0, score=0.0))                # sample 0 in two writers' files: w0's comes first in the order
        assert [r.index for r in follow.poll()] == [0]
        w0.write(_rec(0, score=1.0))
        w0.write(_rec(1))
        path = record_path(tmp_path, "tiny", "passkey", "string", 384, "w0")
        with open(path, "ab") as f:                 # a torn line: waits for its end
            f.write(b'{"kind": "generation", "model": "ti')
        assert sorted(r.index for r in follow.poll()) == [0, 1]
        assert follow.poll() == []                  # nothing new
        with open(path, "ab") as f:
            f.write(b'ny"}\n')                      # ends as JSON that is no record: read_records raises there
    with pytest.raises(ValueError, match="line 3"):
        list(iter_records(root))
    with pytest.raises(ValueError, match="line 3"):
        follow.records()
    path.write_text("".join(json.dumps(_rec(i).to_dict()) + "\n" for i in (0, 1)) + "not json\n")
    with open_writer(tmp_path, "tiny", "passkey", "rope", 384) as w:
        for i in range(3):
            w.write(_rec(i, method="rope"))
    got = _followed(follow)
    assert got == _fresh(root) and len(got) == 5
    assert [r for r in got if r["index"] == 0 and r["method"] == "string"][0]["score"] == 1.0


def test_a_file_cut_and_rewritten_between_polls_is_read_anew(tmp_path):
    """``records.repair`` (a writer opening a file) cuts an unparsable last line; what is appended after it
    starts where that line started. The follower had consumed the cut line: it reads that file again."""
    root = tmp_path / "tiny"
    path = record_path(tmp_path, "tiny", "passkey", "string", 384, "w0")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(_rec(0).to_dict()) + "\n" + '{"broken": \n')
    follow = RecordFollower(root)
    assert [r.index for r in follow.poll()] == [0]
    with open_writer(tmp_path, "tiny", "passkey", "string", 384) as w:  # repairs: the broken line goes
        w.write(_rec(1))
        w.write(_rec(2))
    got = _followed(follow)
    assert got == _fresh(root) and [r["index"] for r in got] == [0, 1, 2]


def test_a_poll_notices_a_long_file_cut_and_rewritten(tmp_path):
    """Past ``_TAIL`` consumed bytes a poll re-reads only the last ones: a cut there still shows, and the file is
    parsed again from its first byte."""
    from ropeshift.eval import record_follower as rf

    root = tmp_path / "tiny"
    path = record_path(tmp_path, "tiny", "passkey", "string", 384, "w0")
    path.parent.mkdir(parents=True)
    lines = [json.dumps(_rec(i).to_dict()) + "\n" for i in range(40)]
    path.write_text("".join(lines) + '{"broken": \n')
    assert path.stat().st_size > 2 * rf._TAIL
    follow = RecordFollower(root)
    assert len(follow.poll()) == 40
    with open_writer(tmp_path, "tiny", "passkey", "string", 384) as w:  # cuts the broken line, appends after it
        w.write(_rec(40))
    assert [r.index for r in follow.poll()] == list(range(41))  # parsed again: the cut showed in the tail
    assert _followed(follow) == _fresh(root)


def test_the_summary_of_a_followed_run_is_the_summary_of_its_folder(tmp_path):
    """``cli_common.run_records`` gives the same records from a follower as from the folder."""
    from ropeshift.eval import cli_common as cc
    from ropeshift.eval.options import MethodSpec
    from ropeshift.eval.runner import RunConfig

    root = tmp_path / "tiny"
    follow = RecordFollower(root)
    with open_writer(tmp_path, "tiny", "passkey", "rope", 384) as w:
        for i in range(4):
            w.write(_rec(i, method="rope"))
            follow.poll()
    with open_writer(tmp_path, "tiny", "passkey", "rope", 512) as w:
        w.write(_rec(0, method="rope", length=512))
    cfg = RunConfig(model="tiny", tasks=("passkey",), lengths=(384,), methods=(MethodSpec("rope"),), samples=3,
                    out=tmp_path)
    a, b = cc.run_records(cfg, root), cc.run_records(cfg, root, follow)
    assert [r.to_dict() for r in a] == [r.to_dict() for r in b] and len(a) == 3


def test_poll_never_raises_and_a_failed_follower_reads_the_folder_anew(tmp_path, monkeypatch):
    root = tmp_path / "tiny"
    follow = RecordFollower(root)
    with open_writer(tmp_path, "tiny", "passkey", "string", 384) as w:
        w.write(_rec(0))
        monkeypatch.setattr(RecordFollower, "_paths", lambda self: (_ for _ in ()).throw(FileNotFoundError("gone")))
        assert follow.poll() == [] and follow.failed is None  # a folder walk that failed: tried again later
        monkeypatch.undo()
        assert [r.index for r in follow.poll()] == [0]
        w.write(_rec(1))

        def boom(*a):
            raise RuntimeError("unexpected")

        monkeypatch.setattr(RecordFollower, "_advance", boom)
        assert follow.poll() == [] and isinstance(follow.failed, RuntimeError)
        assert follow.poll() == []  # stopped
    assert _followed(follow) == _fresh(root) and len(_fresh(root)) == 2
