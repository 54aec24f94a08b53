"""Replay-file input of the dataflow (JSON Lines of envelopes), and the stop wrapper.

Like the Kafka input (`pipelines.kafka_source`), it yields `Envelope`s (or a `DeadLetter` for a
line that is not an envelope), so the rest of the dataflow cannot tell them apart.
"""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from connectors.registry import dead_letter
from schemas.envelope import Envelope, EnvelopeError, envelope_from_json_line_fast
from schemas.events import DeadLetter

FileItem = Envelope | DeadLetter


class _JsonlPartition(StatefulSourcePartition[FileItem, tuple[int, int]]):
    def __init__(self, path: Path, batch: int, resume: tuple[int, int] | None,
                 name: str | None = None) -> None:
        self._file = path.open("rb")
        # the partition's name (the file name, unique among the replayed files): it is in the
        # source of every record and dead letter, so two files' line 7 are two keys
        self._name = name or path.name
        self._batch = batch
        self._pos, self._line = resume or (0, 0)
        self._file.seek(self._pos)

    def next_batch(self) -> list[FileItem]:
        lines = []
        for _ in range(self._batch):
            line = self._file.readline()
            if not line:
                break
            lines.append(line)
        if not lines:
            self._file.close()
            raise StopIteration()
        out: list[FileItem] = []
        for line in lines:
            self._line += 1
            self._pos += len(line)
            if not line.strip():
                continue
            try:
                out.append(envelope_from_json_line_fast(line, self._line, self._name))
            except EnvelopeError as exc:
                env = Envelope(topic=f"file:{self._name}", value=line.rstrip(b"\n"),
                               timestamp_ms=0, offset=self._line, file=self._name)
                out.append(dead_letter(env, str(exc), "decode"))
        return out

    def snapshot(self) -> tuple[int, int]:
        return self._pos, self._line

    def close(self) -> None:
        self._file.close()


class JsonlSource(FixedPartitionedSource[FileItem, tuple[int, int]]):
    """Replay files: one partition per file, resumable at the byte offset of the next line."""

    def __init__(self, paths: list[Path], batch: int = 5000) -> None:
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"replay file not found: {', '.join(missing)}")
        self._paths = {p.name if i == 0 else f"{i}:{p.name}": p for i, p in enumerate(paths)}
        self._batch = batch

    def list_parts(self) -> list[str]:
        return list(self._paths)

    def build_part(
        self, step_id: str, for_part: str, resume_state: tuple[int, int] | None
    ) -> _JsonlPartition:
        return _JsonlPartition(self._paths[for_part], self._batch, resume_state, for_part)



class _StoppablePartition(StatefulSourcePartition[Any, Any]):
    def __init__(self, inner: StatefulSourcePartition[Any, Any], stop: threading.Event) -> None:
        self._inner = inner
        self._stop = stop

    def next_batch(self) -> list[Any]:
        if self._stop.is_set():
            raise StopIteration()
        # the whole batch travels as one item: Bytewax moves one object, not one per event
        batch = list(self._inner.next_batch())
        return [batch] if batch else []

    def next_awake(self) -> datetime | None:
        return self._inner.next_awake()

    def snapshot(self) -> Any:
        return self._inner.snapshot()

    def close(self) -> None:
        self._inner.close()


class StoppableSource(FixedPartitionedSource[Any, Any]):
    """Wraps a source so a stop request (SIGTERM, Ctrl-C) ends the input cleanly: the dataflow
    then completes, sinks flush and close, and the last snapshot is consistent. Each batch the
    inner source reads becomes one item (a list, in read order)."""

    def __init__(self, inner: FixedPartitionedSource[Any, Any], stop: threading.Event) -> None:
        self._inner = inner
        self._stop = stop

    def list_parts(self) -> list[str]:
        return self._inner.list_parts()

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _StoppablePartition:
        return _StoppablePartition(self._inner.build_part(step_id, for_part, resume_state), self._stop)
