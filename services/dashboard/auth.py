"""Logins of the built-in dashboard page: who may look, and at which tenants.

Users live in the configuration (`dashboard.users`: name, argon2 `password_hash`, `tenants`,
`role`); `brokerstream dashboard hash-password` makes a hash. A successful login gets a session
cookie signed with itsdangerous (HMAC-SHA1 over the payload, compared in constant time, with its
issue time: older than `dashboard.session_hours` is refused). The cookie carries the user's name
and a fingerprint of their password hash, so changing a password or removing a user ends that
user's sessions at once; the tenants are looked up in the configuration at every request, never
taken from the cookie.

Timing: an unknown user name is checked against a dummy hash made with the same argon2
parameters as the configured ones, so a wrong name and a wrong password cost the same and
answer the same. Repeated failures from one address for one name are throttled.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from argon2 import PasswordHasher, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from pipelines.config import DashboardConfig, DashboardUser

log = logging.getLogger(__name__)

COOKIE = "brokerstream_session"
SECRET_ENV = "BROKERSTREAM_DASHBOARD_SECRET"
_SALT = "brokerstream.dashboard.session.v1"  # itsdangerous key derivation: this use only
MAX_FAILURES = 5  # per (address, name) within FAILURE_WINDOW_S, then refused until it passes
FAILURE_WINDOW_S = 300.0


def hash_password(password: str, hasher: PasswordHasher | None = None) -> str:
    """An argon2id hash for `dashboard.users[].password_hash` (argon2-cffi's defaults, RFC 9106's
    low-memory profile)."""
    if not password:
        raise ValueError("the password is empty")
    return (hasher or PasswordHasher()).hash(password)


@dataclass(frozen=True)
class Identity:
    """A logged-in user as the server sees them: the tenants every query is limited to."""

    name: str
    role: str
    tenants: tuple[str, ...]
    ib: str = ""  # a partner's IB (services/dashboard/partners.py); '' for everyone else

    @property
    def admin(self) -> bool:
        return self.role == "admin"

    def public(self) -> dict[str, object]:
        out: dict[str, object] = {"name": self.name, "role": self.role, "tenants": list(self.tenants)}
        if self.ib:
            out["ib"] = self.ib
        return out


class Throttled(Exception):
    """Too many failed logins for this name from this address: try later."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"too many failed logins; try again in {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s


def _fingerprint(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


class Authenticator:
    """Checks passwords and issues / reads the signed session cookies."""

    def __init__(self, users: Sequence[DashboardUser], all_tenants: Iterable[str], *,
                 secret: str = "", session_s: float = 12 * 3600, secure_cookie: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        self.users = {u.name: u for u in users}
        self.all_tenants = tuple(all_tenants)
        self.session_s = session_s
        self.secure_cookie = secure_cookie
        self.clock = clock
        if not secret:
            # Sessions then end when the process does, which is safe; say so once.
            log.warning("dashboard: no session secret (%s or dashboard.session_secret): using a "
                        "random one, so logins end at restart", SECRET_ENV)
            secret = secrets.token_urlsafe(32)
        self._signer = URLSafeTimedSerializer(secret, salt=_SALT)
        self._hasher = PasswordHasher()
        self._dummy: str | None = None
        self._failures: dict[tuple[str, str], list[float]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: DashboardConfig, all_tenants: Iterable[str]) -> Authenticator:
        return cls(config.users, all_tenants, secret=os.environ.get(SECRET_ENV) or config.session_secret,
                   session_s=config.session_hours * 3600, secure_cookie=config.secure_cookie)

    def identity_of(self, user: DashboardUser) -> Identity:
        tenants = self.all_tenants if user.role == "admin" else tuple(user.tenants)
        return Identity(user.name, user.role, tenants, user.ib or "")

    # -- passwords ---------------------------------------------------------------------------

    def _dummy_hash(self) -> str:
        """A hash of a random password with the configured hashes' argon2 parameters: what an
        unknown name is verified against, so that it takes as long as a known one."""
        if self._dummy is None:
            hasher = self._hasher
            for user in self.users.values():
                try:
                    hasher = PasswordHasher.from_parameters(extract_parameters(user.password_hash))
                    break
                except InvalidHashError:
                    continue
            self._dummy = hasher.hash(secrets.token_urlsafe(16))
        return self._dummy

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def login(self, name: str, password: str, address: str = "") -> Identity | None:
        """The user's identity if `password` is theirs, else None (same work either way).
        Raises Throttled after MAX_FAILURES failures for (address, name) in the window."""
        key = (address, name)
        now = self.clock()
        with self._lock:
            recent = [t for t in self._failures.get(key, []) if now - t < FAILURE_WINDOW_S]
            if len(recent) >= MAX_FAILURES:
                raise Throttled(FAILURE_WINDOW_S - (now - recent[0]))
        user = self.users.get(name)
        ok = self._verify(user.password_hash if user else self._dummy_hash(), password)
        if user is not None and ok:
            with self._lock:
                self._failures.pop(key, None)
            return self.identity_of(user)
        with self._lock:
            recent.append(now)
            self._failures[key] = recent
            if len(self._failures) > 10_000:  # bounded: forget the oldest keys
                for old in list(self._failures)[:5_000]:
                    del self._failures[old]
        return None

    # -- sessions ------------------------------------------------------------------------------

    def issue(self, identity: Identity) -> str:
        user = self.users[identity.name]
        return self._signer.dumps({"u": user.name, "h": _fingerprint(user.password_hash)})

    def identify(self, cookie: str | None) -> Identity | None:
        """The identity a session cookie stands for, or None: missing, forged, tampered,
        expired, or for a user whose password changed or who is gone."""
        if not cookie:
            return None
        try:
            payload = self._signer.loads(cookie, max_age=int(self.session_s))
        except SignatureExpired:
            return None
        except BadSignature:
            return None
        if not isinstance(payload, dict):
            return None
        user = self.users.get(str(payload.get("u")))
        fingerprint = payload.get("h")
        if user is None or not isinstance(fingerprint, str):
            return None
        if not secrets.compare_digest(fingerprint, _fingerprint(user.password_hash)):
            return None
        return self.identity_of(user)
