"""First sight of every notification, kept on disk: replays and edited copies are refused.

A provider signs some fields of a notification, never "this is new". Two holes follow, and
this guard closes both for every provider, in the receiver, before anything is published:

* **Replay.** Skrill and CoinsPaid sign no time at all, so a notification captured last month
  still verifies. Praxis, Nuvei and Stripe sign a time, but a copy is valid for the whole
  tolerance. A notification id is therefore accepted only within ``replay_window_s`` of the
  moment it was *first seen* (``psp.replay_window_s``, per provider ``replay_window_s``), and a
  notification already published is answered without publishing it again.
* **Edited copies.** Skrill, Praxis and Nuvei sign some fields only. Their notification id is
  built from signed values (Praxis and Nuvei: the signature itself), and the first body seen
  under it is the only one accepted: the same signature with another status, type or any
  other unsigned field is refused as tampered. CoinsPaid and Stripe sign the whole body, so
  any body that verifies is genuine; only the window applies.

The first sightings live in a small SQLite file (``psp.replay_db``; default
``$BROKERSTREAM_HOME/psp/replay.sqlite3``), so a restart of the receiver does not reopen a
window, and several receiver processes on one host share it. Ids of providers that sign no
time are kept for good (forgetting one would let its replay in again, ~150 bytes each); ids of
providers with a signed time are dropped once their signed time can no longer pass the
freshness check (two tolerances after first sight).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

from connectors.psp.common import SignatureError, provider_modules
from connectors.psp.settings import PspSettings

PRUNE_EVERY = 1000  # admissions between two prunes of expired signed-time ids


def default_path() -> Path:
    """$BROKERSTREAM_HOME/psp/replay.sqlite3 (the lookup of pipelines.config.home_dir,
    repeated here because connectors don't import the services' layer)."""
    env = os.environ.get("BROKERSTREAM_HOME")
    if env:
        home = Path(env).expanduser()
    else:
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        home = Path(base) / "brokerstream"
    return home / "psp" / "replay.sqlite3"


class ReplayedError(SignatureError):
    """A genuine notification seen before: outside its window, or edited since."""


class ReplayGuard:
    """Remembers (provider, notification id) -> first sight, body digest, published."""

    def __init__(self, psp: PspSettings, path: str | Path | None = None) -> None:
        self.psp = psp
        self.modules: dict[str, ModuleType] = provider_modules()
        where = str(path if path is not None else (psp.replay_db or default_path()))
        if where != ":memory:":
            Path(where).parent.mkdir(parents=True, exist_ok=True)
        # one connection, used by the receiver's event loop (and guarded for threads)
        self._db = sqlite3.connect(where, timeout=10, isolation_level=None,
                                   check_same_thread=False)
        self._lock = threading.Lock()
        self._admitted = 0
        with self._lock:
            if where != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a commit survives a crash of the receiver (not of the machine's
            # power) without an fsync per request on the event loop
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS first_seen (provider TEXT NOT NULL, "
                "id TEXT NOT NULL, seen_at REAL NOT NULL, digest BLOB NOT NULL, "
                "published INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (provider, id)) WITHOUT ROWID")
            self._db.execute("CREATE INDEX IF NOT EXISTS first_seen_at ON first_seen "
                             "(provider, seen_at)")

    def _key(self, provider: str, body: bytes,
             headers: Mapping[str, str]) -> tuple[str, bool, bytes]:
        replay_id, bound = self.modules[provider].replay_id(body, headers)
        return str(replay_id), bool(bound), hashlib.sha256(body).digest()

    def admit(self, provider: str, body: bytes, headers: Mapping[str, str], now: float) -> bool:
        """Record the first sight of this (verified) notification, or check a repeat of it.

        Returns True when this very body was already published (answer, don't publish again);
        raises ReplayedError (code ``replayed`` or ``tampered``) when it must be refused."""
        replay_id, bound, digest = self._key(provider, body, headers)
        window = self.psp.replay_window(provider)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT seen_at, digest, published FROM first_seen "
                    "WHERE provider = ? AND id = ?", (provider, replay_id)).fetchone()
                if row is None:
                    self._db.execute("INSERT INTO first_seen VALUES (?, ?, ?, ?, 0)",
                                     (provider, replay_id, now, digest))
                    self._db.execute("COMMIT")
                    self._admitted += 1
                    if self._admitted % PRUNE_EVERY == 0:
                        self._prune(now)
                    return False
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        seen_at, first_digest, published = float(row[0]), bytes(row[1]), bool(row[2])
        same = first_digest == digest
        if bound and not same:
            raise ReplayedError(f"{provider} notification {replay_id[:80]!r} was first seen with "
                                "other content under the same signature", "tampered")
        if now - seen_at > window:
            raise ReplayedError(f"{provider} notification {replay_id[:80]!r} was first seen "
                                f"{now - seen_at:.0f}s ago, outside the {window}s replay window",
                                "replayed")
        return published and same

    def published(self, provider: str, body: bytes, headers: Mapping[str, str]) -> None:
        """Kafka confirmed this body: a repeat of it is answered without publishing."""
        replay_id, _, digest = self._key(provider, body, headers)
        with self._lock:
            self._db.execute("UPDATE first_seen SET published = 1 WHERE provider = ? AND id = ? "
                             "AND digest = ?", (provider, replay_id, digest))

    def _prune(self, now: float) -> None:
        """Drop ids whose signed time can no longer pass the freshness check (caller holds
        the lock). Providers without a signed time, or with the check off, keep theirs."""
        for provider, cfg in self.psp.providers.items():
            module = self.modules.get(provider)
            default = getattr(module, "DEFAULT_TOLERANCE_S", 0)  # 0: no signed time
            tolerance = default if cfg.tolerance_s is None else cfg.tolerance_s
            if not default or not tolerance:
                continue
            horizon = now - 2 * tolerance - self.psp.replay_window(provider)
            self._db.execute("DELETE FROM first_seen WHERE provider = ? AND seen_at < ?",
                             (provider, horizon))

    def count(self, provider: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT count(*) FROM first_seen WHERE provider = ?",
                                   (provider,)).fetchone()
        return int(row[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
