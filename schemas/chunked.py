"""A dict whose pickle costs what changed, not what it holds.

Recovery snapshots pickle the state of every key that saw data in the epoch: an account's
position book, a tenant's open positions (hundreds of thousands at a busy broker), a rule
engine's seen ids and pair histories. `ChunkedDict` keeps its items in chunks filled in
insertion order and keeps each chunk's pickled bytes until that chunk changes. New items land
in the newest chunk and most items, once written, stay as they are, so a snapshot re-pickles
the few chunks that moved and copies the others' bytes. Values should be immutable (tuples,
NamedTuples); a value changed in place must be set again (`d[k] = v`) to mark its chunk.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

_MISSING: Any = object()


class ChunkedDict(MutableMapping[K, V], Generic[K, V]):
    __slots__ = ("_blobs", "_chunk_size", "_chunks", "_where")

    def __init__(self, chunk_size: int = 1024) -> None:
        self._chunk_size = chunk_size
        self._chunks: list[dict[K, V]] = [{}]
        self._blobs: list[bytes | None] = [None]
        self._where: dict[K, int] = {}  # key -> its chunk (rebuilt on restore, not pickled)

    def __getitem__(self, key: K) -> V:
        return self._chunks[self._where[key]][key]

    def get(self, key: K, default: Any = None) -> Any:
        i = self._where.get(key)
        return default if i is None else self._chunks[i][key]

    def __contains__(self, key: object) -> bool:
        return key in self._where

    def __setitem__(self, key: K, value: V) -> None:
        i = self._where.get(key)
        if i is None:
            i = len(self._chunks) - 1
            if len(self._chunks[i]) >= self._chunk_size:
                self._chunks.append({})
                self._blobs.append(None)
                i += 1
            self._where[key] = i
        self._chunks[i][key] = value
        self._blobs[i] = None

    def __delitem__(self, key: K) -> None:
        i = self._where.pop(key)
        del self._chunks[i][key]
        self._blobs[i] = None

    def pop(self, key: K, default: Any = _MISSING) -> Any:
        i = self._where.pop(key, None)
        if i is None:
            if default is _MISSING:
                raise KeyError(key)
            return default
        self._blobs[i] = None
        return self._chunks[i].pop(key)

    def __iter__(self) -> Iterator[K]:
        for chunk in self._chunks:
            yield from chunk

    def __len__(self) -> int:
        return len(self._where)

    def filtered(self, keep: Callable[[K, V], bool]) -> ChunkedDict[K, V]:
        """A new dict of the same chunk size with the items `keep` accepts (pruning)."""
        kept: ChunkedDict[K, V] = ChunkedDict(self._chunk_size)
        kept.update((k, v) for k, v in self.items() if keep(k, v))
        return kept

    def _compact(self) -> None:
        # drop emptied chunks (keeping the newest, which takes new keys)
        if len(self._chunks) > 1 and any(not c for c in self._chunks[:-1]):
            keep = [i for i, c in enumerate(self._chunks) if c or i == len(self._chunks) - 1]
            self._chunks = [self._chunks[i] for i in keep]
            self._blobs = [self._blobs[i] for i in keep]
            self._where = {k: n for n, c in enumerate(self._chunks) for k in c}

    def __reduce__(self) -> tuple[Any, tuple[int, list[bytes]]]:
        self._compact()
        for i, blob in enumerate(self._blobs):
            if blob is None:
                self._blobs[i] = pickle.dumps(self._chunks[i], protocol=pickle.HIGHEST_PROTOCOL)
        return _restore, (self._chunk_size, list(self._blobs))  # type: ignore[arg-type]


def _restore(chunk_size: int, blobs: list[bytes]) -> ChunkedDict[Any, Any]:
    restored: ChunkedDict[Any, Any] = ChunkedDict(chunk_size)
    restored._chunks = [pickle.loads(b) for b in blobs]
    restored._blobs = list(blobs)
    restored._where = {k: n for n, c in enumerate(restored._chunks) for k in c}
    return restored
