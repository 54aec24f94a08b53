"""Dashboard logins for the tests: an admin, a viewer of acme, a viewer of zenith, hashed with
cheap argon2 parameters (the tests log in often; production hashes use argon2-cffi's defaults)."""

from __future__ import annotations

from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from pipelines.config import DashboardConfig, DashboardUser, Settings
from services.dashboard.auth import Authenticator, hash_password

ADMIN, VIEWER, OTHER = "ops-admin", "acme-viewer", "zenith-viewer"
PASSWORDS = {ADMIN: "admin-password-1", VIEWER: "acme-password-1", OTHER: "zenith-password-1"}
SECRET = "test-session-secret-0123456789abcdef"
CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def _users() -> list[DashboardUser]:
    return [
        DashboardUser(name=ADMIN, password_hash=hash_password(PASSWORDS[ADMIN], CHEAP), role="admin"),
        DashboardUser(name=VIEWER, password_hash=hash_password(PASSWORDS[VIEWER], CHEAP), tenants=["acme"]),
        DashboardUser(name=OTHER, password_hash=hash_password(PASSWORDS[OTHER], CHEAP), tenants=["zenith"]),
    ]


USERS = _users()


def with_logins(settings: Settings) -> Settings:
    """`settings` with the test users and a fixed session secret."""
    return settings.model_copy(update={"dashboard": DashboardConfig(users=USERS, session_secret=SECRET)})


def auth_for(settings: Settings, **kwargs: object) -> Authenticator:
    return Authenticator(USERS, [t.id for t in settings.tenants], secret=SECRET, **kwargs)  # type: ignore[arg-type]


def log_in(client: TestClient, name: str) -> None:
    r = client.post("/login", data={"name": name, "password": PASSWORDS[name], "next": "/"},
                    follow_redirects=False)
    assert r.status_code == 303, r.text
