"""A keyed stateful step whose snapshots are cheap and consistent.

Bytewax's `stateful_map` snapshots by `copy.deepcopy(state)` at every epoch for every key that
saw data. For a large, long-lived state (the commission engine holds every recent deal of a
tenant) that is a deep copy of an ever-growing object each second. Here the snapshot is the
state pickled to bytes: immutable, so it stays consistent however the live state changes
after, and several times cheaper than a deep copy. Values arrive a batch per key per call.

Bytewax 0.21 asks every touched key for a snapshot at every epoch even when recovery is off
(bytewax issue #353): a replay without recovery would pickle state it never stores, so
`run_flow` turns snapshots off (`SNAPSHOTS`) unless recovery is on.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.operators import StatefulBatchLogic

S = TypeVar("S")
V = TypeVar("V")
W = TypeVar("W")

Mapper = Callable[[S | None, V], tuple[S | None, Iterable[W]]]


class _Snapshots:
    """Whether snapshots are stored: set by `run_flow` before the flow starts."""

    enabled = True


SNAPSHOTS = _Snapshots()


def _pickled(state: Any) -> Any:
    """A snapshot: the state as bytes, or None when snapshots are off."""
    if not SNAPSHOTS.enabled:
        return None
    return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


class _PickledStateLogic(StatefulBatchLogic[V, W, bytes], Generic[S, V, W]):
    def __init__(self, mapper: Mapper[S, V, W], state: S | None, order: Callable[[V], Any] | None,
                 batched: bool) -> None:
        self._mapper = mapper
        self._state = state
        self._order = order
        self._batched = batched

    def on_batch(self, values: list[Any]) -> tuple[Iterable[Any], bool]:
        if self._batched:  # each value is a list of one upstream batch's values, in order
            values = values[0] if len(values) == 1 else [v for batch in values for v in batch]
        if self._order is not None:
            values = sorted(values, key=self._order)  # stable: ties keep arrival order
        out: list[W] = []
        state = self._state
        for value in values:
            state, produced = self._mapper(state, value)
            out.extend(produced)
        self._state = state
        # a mapper with `end_batch(state)` acts once per batch (e.g. a snapshot of aggregates)
        end_batch = getattr(self._mapper, "end_batch", None)
        if end_batch is not None and state is not None:
            out.extend(end_batch(state))
        if self._batched:  # the outputs travel on as one list
            return ([out] if out else []), state is None
        return out, state is None  # DISCARD (True) once the mapper drops the state

    def on_eof(self) -> tuple[Iterable[Any], bool]:
        # A mapper with a `finish(state)` method gets the last word when the input ends
        # (the end of a replay or a bounded run): e.g. a final snapshot.
        finish = getattr(self._mapper, "finish", None)
        if finish is None or self._state is None:
            return [], self._state is None
        out = list(finish(self._state))
        if self._batched:
            return ([out] if out else []), False
        return out, False

    def snapshot(self) -> Any:  # bytes, or None when snapshots are off
        return _pickled(self._state)


def stateful_flat_map(
    step_id: str, up: Stream[tuple[str, Any]], mapper: Mapper[S, V, W],
    order: Callable[[V], Any] | None = None, batched: bool = False,
) -> Stream[tuple[str, Any]]:
    """Like `op.stateful_flat_map`: mapper(state or None, value) -> (new state or None, outputs).
    `order`: a sort key applied to each batch of a key (e.g. event time, when several upstream
    partitions feed this key and each delivers its own batch in turn). `batched`: the stream
    carries (key, list of values), one item per key per upstream batch, and the outputs of each
    such batch leave as one (key, list of outputs): Bytewax moves one item where there were many."""

    def build(resume: bytes | None) -> _PickledStateLogic[S, V, W]:
        state: Any = None if resume is None else pickle.loads(resume)
        return _PickledStateLogic(mapper, state, order, batched)

    return op.stateful_batch(step_id, up, build)


BatchMapper = Callable[[S | None, list[V]], tuple[S, Iterable[W]]]


class _BatchStateLogic(StatefulBatchLogic[list[V], W, bytes], Generic[S, V, W]):
    def __init__(self, mapper: BatchMapper[S, V, W], state: S | None) -> None:
        self._mapper = mapper
        self._state = state

    def on_batch(self, values: list[list[V]]) -> tuple[Iterable[W], bool]:
        flat = values[0] if len(values) == 1 else [v for batch in values for v in batch]
        self._state, out = self._mapper(self._state, flat)
        return out, False

    def snapshot(self) -> Any:  # bytes, or None when snapshots are off
        return _pickled(self._state)


def stateful_batch_map(
    step_id: str, up: Stream[tuple[str, list[V]]], mapper: BatchMapper[S, V, W]
) -> Stream[tuple[str, W]]:
    """A keyed step that sees each key's values a batch at a time: the stream carries (key, list
    of values), one item per key per upstream batch; mapper(state or None, values in order) ->
    (state, outputs)."""

    def build(resume: bytes | None) -> _BatchStateLogic[S, V, W]:
        return _BatchStateLogic(mapper, None if resume is None else pickle.loads(resume))

    return op.stateful_batch(step_id, up, build)
