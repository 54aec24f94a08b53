"""Sanctions screening of account names against OFAC SDN (+ALT) and EU consolidated lists.

Names are normalised (case, accents, punctuation, "SURNAME, Given" order) and compared token
by token: each token of the shorter name is matched to its best counterpart in the other name
(fuzzy, so transliterations such as Dmitri/Dmitry still match) and the scores are averaged,
weighted by token length; a left-out middle name does not lower the score, but at least two
tokens must match. A listed date of birth that differs from the account's discounts the hit.
"""

from __future__ import annotations

import contextlib
import csv
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from pydantic import Field
from rapidfuzz import fuzz

from risk_rules.aml.rules import P, normalise_name
from risk_rules.engine import Hit, Rule, register
from schemas.events import Account

_MONTHS = {
    m: i
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
    )
}


@dataclass
class ListEntry:
    entry_id: str
    names: list[str]
    source: str  # "OFAC" / "EU"
    program: str = ""
    dobs: set[date] = field(default_factory=set)
    tokens: list[list[str]] = field(default_factory=list)


def _ofac_name(raw: str) -> str:
    """'SURNAME, Given Names' -> 'Given Names SURNAME'."""
    if "," in raw:
        last, _, first = raw.partition(",")
        return f"{first.strip()} {last.strip()}"
    return raw


def _ofac_value(v: str) -> str:
    v = v.strip()
    return "" if v == "-0-" else v


def _dobs(remarks: str) -> set[date]:
    out = set()
    for d, m, y in re.findall(r"DOB (\d{1,2}) ([A-Za-z]{3}) (\d{4})", remarks):
        month = _MONTHS.get(m.lower())
        if month:
            out.add(date(int(y), month, int(d)))
    return out


def load_ofac(
    sdn_path: str | Path, alt_path: str | Path | None = None, individuals_only: bool = True
) -> list[ListEntry]:
    entries: dict[str, ListEntry] = {}
    with open(sdn_path, newline="", encoding="utf-8") as fh:
        for row in csv.reader(fh):
            if len(row) < 3:
                continue
            kind = _ofac_value(row[2]).lower()
            if individuals_only and kind != "individual":
                continue
            remarks = _ofac_value(row[11]) if len(row) > 11 else ""
            entries[row[0].strip()] = ListEntry(
                row[0].strip(),
                [_ofac_name(row[1])],
                "OFAC",
                _ofac_value(row[3]) if len(row) > 3 else "",
                _dobs(remarks),
            )
    if alt_path is not None:
        with open(alt_path, newline="", encoding="utf-8") as fh:
            for row in csv.reader(fh):
                if len(row) >= 4 and row[0].strip() in entries:
                    entries[row[0].strip()].names.append(_ofac_name(row[3]))
    return list(entries.values())


def load_eu(path: str | Path, individuals_only: bool = True) -> list[ListEntry]:
    """EU consolidated list CSV (semicolon separated, one row per name/birth-date detail)."""
    entries: dict[str, ListEntry] = {}
    with open(path, newline="", encoding="utf-8-sig") as fh:
        for row in csv.DictReader(fh, delimiter=";"):

            def col(*names: str, row: dict[str, str] = row) -> str:
                for n in names:
                    if row.get(n):
                        return row[n].strip()
                return ""

            eid = col("Entity_LogicalId", "Entity_logical_id")
            kind = col("Subject_type", "Entity_SubjectType", "Entity_SubjectType_ClassificationCode").lower()
            if not eid or (individuals_only and kind and kind not in ("p", "person")):
                continue
            entry = entries.setdefault(
                eid, ListEntry(eid, [], "EU", col("Entity_Regulation_Programme", "Leba_numtitle"))
            )
            name = col("NameAlias_WholeName", "Naal_wholename")
            if name and name not in entry.names:
                entry.names.append(name)
            dob = col("BirthDate_BirthDate", "Birt_date")
            if dob:
                with contextlib.suppress(ValueError):
                    entry.dobs.add(datetime.strptime(dob[:10], "%Y-%m-%d").date())
    return [e for e in entries.values() if e.names]


def token_score(a: list[str], b: list[str]) -> float:
    """Order-free, token-aware similarity 0..100 (see the module docstring)."""
    if len(a) > len(b):
        a, b = b, a
    if len(a) < 2:
        return fuzz.ratio(" ".join(a), " ".join(b)) if a and len(b) == 1 else 0.0
    total = weight = 0.0
    used: set[int] = set()
    for tok in sorted(a, key=len, reverse=True):
        best, best_j = 0.0, -1
        for j, other in enumerate(b):
            if j in used:
                continue
            s = fuzz.ratio(tok, other)
            if s > best:
                best, best_j = s, j
        if best_j >= 0:
            used.add(best_j)
        total += best * len(tok)
        weight += len(tok)
    return total / weight if weight else 0.0


@dataclass(frozen=True)
class Match:
    entry: ListEntry
    listed_name: str
    score: float
    dob_match: bool | None


class Screener:
    def __init__(self, entries: list[ListEntry]) -> None:
        self.entries = entries
        for e in entries:
            e.tokens = [normalise_name(n).split() for n in e.names]

    def screen(self, name: str, dob: date | None = None, threshold: float = 88) -> list[Match]:
        tokens = normalise_name(name).split()
        out = []
        for e in self.entries:
            best, best_name = 0.0, ""
            for listed, toks in zip(e.names, e.tokens, strict=True):
                s = token_score(tokens, toks)
                if s > best:
                    best, best_name = s, listed
            if best < threshold:
                continue
            dob_match = None if dob is None or not e.dobs else dob in e.dobs
            if dob_match is False:
                continue
            out.append(Match(e, best_name, best, dob_match))
        return sorted(out, key=lambda m: -m.score)


class SanctionsParams(P):
    min_score: float = Field(default=88, ge=0, le=100)


@register
class SanctionsScreening(Rule):
    """Screens the account holder's name when the account is first seen and when it changes."""

    rule_id = "sanctions_screening"
    category = "aml"
    Params = SanctionsParams
    p: SanctionsParams

    def on_account(self, account: Account, previous: Account | None) -> list[Hit]:
        screener = self.ctx.screener
        if screener is None or not account.name:
            return []
        if (
            previous is not None
            and previous.name == account.name
            and previous.date_of_birth == account.date_of_birth
        ):
            return []
        matches = screener.screen(account.name, account.date_of_birth, self.p.min_score)
        if not matches:
            return []
        m = matches[0]
        return [
            Hit(
                account.account_key,
                account.tenant,
                f"account holder '{account.name}' matches {m.entry.source} entry {m.entry.entry_id} "
                f"'{m.listed_name}' (score {m.score:.0f} >= {self.p.min_score:.0f}"
                f"{', date of birth matches' if m.dob_match else ''})",
                {
                    "account_name": account.name,
                    "entry": m.entry.entry_id,
                    "list": m.entry.source,
                    "listed_name": m.listed_name,
                    "program": m.entry.program,
                    "score": round(m.score, 1),
                    "min_score": self.p.min_score,
                    "dob_match": m.dob_match,
                },
                [account.account_key],
                account.updated_at,
            )
        ]
