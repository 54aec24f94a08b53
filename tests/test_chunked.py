"""ChunkedDict behaves as a dict, and a pickle taken at any point restores the same mapping."""

from __future__ import annotations

import pickle

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.chunked import ChunkedDict

ops = st.lists(st.tuples(st.sampled_from(["set", "del", "pop", "snap"]), st.integers(0, 60), st.integers()),
               max_size=300)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_same_as_a_dict_through_any_snapshots(steps: list[tuple[str, int, int]]) -> None:
    chunked: ChunkedDict[tuple[str, int], int] = ChunkedDict(chunk_size=4)
    plain: dict[tuple[str, int], int] = {}
    for op, k, v in steps:
        key = ("acct", k)
        if op == "set":
            chunked[key] = v
            plain[key] = v
        elif op == "del" and key in plain:
            del chunked[key]
            del plain[key]
        elif op == "pop":
            assert chunked.pop(key, None) == plain.pop(key, None)
        elif op == "snap":
            chunked = pickle.loads(pickle.dumps(chunked))
        assert len(chunked) == len(plain)
    assert dict(chunked.items()) == plain
    assert all(chunked.get(k) == v and k in chunked for k, v in plain.items())
    assert dict(pickle.loads(pickle.dumps(chunked)).items()) == plain
