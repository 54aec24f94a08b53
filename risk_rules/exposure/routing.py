"""Configuration that places an account: which book its flow goes to (A-book: passed on to
liquidity providers; B-book: the broker takes the other side), and whether it is a hedging or a
netting account.

Both are plain pydantic models a risk manager can read as YAML, for example::

    book_routing:
      version: "2026-11-01"
      default_book: B
      books: {A: 0, B: 1, HYBRID: 0.5}   # share of each book the broker keeps (B-book share)
      accounts: {"mt5:ACME-MT5-Live:70001": A}
      rules:
        - {group: "real\\\\A-*", book: A}
        - {tenant: zenith, book: HYBRID}
    account_modes:
      default: hedging
      rules:
        - {group: "*netting*", mode: netting}

Group patterns are shell-style (`*`, `?`, `[...]`), matched case-sensitively; backslashes in
MetaTrader group names (`real\\A-book`) are plain characters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from fnmatch import fnmatchcase
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from risk_rules.exposure.positions import Mode


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Match(_Strict):
    """Conditions of a rule; an absent condition matches everything."""

    tenant: str | None = None
    server: str | None = None
    platform: str | None = None
    group: str | None = Field(default=None, description="shell-style pattern on the account group")
    logins: list[int] = Field(default_factory=list, description="only these logins (empty: all)")

    def matches(self, tenant: str, server: str, platform: str, group: str, login: int) -> bool:
        return (
            (self.tenant is None or self.tenant == tenant)
            and (self.server is None or self.server == server)
            and (self.platform is None or self.platform == platform)
            and (self.group is None or fnmatchcase(group, self.group))
            and (not self.logins or login in self.logins)
        )


R = TypeVar("R", bound=_Match)
V = TypeVar("V")


def _placed(accounts: Mapping[str, V], rules: Iterable[R], value: Callable[[R], V], default: V, *,
            tenant: str, server: str, platform: str, group: str, account_key: str, login: int) -> V:
    """The account's own entry first, then the first rule that matches, then the default."""
    found = accounts.get(account_key)
    if found is not None:
        return found
    for rule in rules:
        if rule.matches(tenant, server, platform, group, login):
            return value(rule)
    return default


class BookRule(_Match):
    book: str


class BookRouting(_Strict):
    """Which book an account's trades go to: per-account entries first, then the first rule
    that matches, then the default. `books` gives each book's B-book share (0 = fully A-book,
    1 = fully B-book): the broker's own exposure is minus the clients' times that share."""

    version: str = "1"
    default_book: str = "B"
    books: dict[str, Decimal] = Field(default_factory=lambda: {"A": Decimal(0), "B": Decimal(1)})
    accounts: dict[str, str] = Field(default_factory=dict, description="account_key -> book")
    rules: list[BookRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _books_known(self) -> BookRouting:
        for book, share in self.books.items():
            if not Decimal(0) <= share <= Decimal(1):
                raise ValueError(f"books.{book}: the B-book share must be between 0 and 1, got {share}")
        used = {self.default_book, *self.accounts.values(), *(r.book for r in self.rules)}
        unknown = sorted(used - set(self.books))
        if unknown:
            raise ValueError(f"book(s) {', '.join(unknown)} used but not listed in books")
        return self

    def book_for(self, *, tenant: str, server: str, platform: str, group: str, account_key: str,
                 login: int) -> str:
        return _placed(self.accounts, self.rules, lambda rule: rule.book, self.default_book,
                       tenant=tenant, server=server, platform=platform, group=group,
                       account_key=account_key, login=login)

    def b_share(self, book: str) -> Decimal:
        return self.books[book]


class ModeRule(_Match):
    mode: Mode


class AccountModes(_Strict):
    """Hedging or netting per account: per-account entries, then rules (by group, server, ...),
    then the default. MT4 has no netting accounts: MT4 accounts are always hedging."""

    default: Mode = "hedging"
    accounts: dict[str, Mode] = Field(default_factory=dict, description="account_key -> mode")
    rules: list[ModeRule] = Field(default_factory=list)

    def mode_for(self, *, tenant: str, server: str, platform: str, group: str, account_key: str,
                 login: int) -> Mode:
        if platform == "mt4":
            return "hedging"
        return _placed(self.accounts, self.rules, lambda rule: rule.mode, self.default,
                       tenant=tenant, server=server, platform=platform, group=group,
                       account_key=account_key, login=login)
