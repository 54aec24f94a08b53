"""Sanctions screening of everyone who moves money (account holders, PSP payers, withdrawal
beneficiaries) against OFAC SDN (+ALT) and EU consolidated lists.

Names are compared with `risk_rules.names` (scripts, diacritics, look-alikes, invisible characters,
order, joined/split tokens, initials, titles and particles, vowel-stripped and phonetic spellings;
a weak token sinks the name). `Screener` indexes the listed names so one screen scores only the few
names that share keys with the query. A listed date of birth that differs from the account's
discounts the hit.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from pydantic import Field

from risk_rules import names
from risk_rules.aml.rules import P, psp_approved
from risk_rules.engine import Hit, Rule, register
from schemas.events import Account, BalanceOperation

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
    """Order-free, token-aware similarity 0..100 of two token lists (`names.compare`)."""
    return names.compare([names.make_tok(t) for t in a], [names.make_tok(t) for t in b])


@dataclass(frozen=True)
class Match:
    entry: ListEntry
    listed_name: str
    score: float
    dob_match: bool | None


def _deletes(key: str) -> list[str]:
    """The key and its one-letter deletions: two keys share one when they are one edit apart
    (or two substitutions in some cases), the SymSpell idea."""
    if len(key) < 4:
        return [key]
    return [key, *{key[:i] + key[i + 1 :] for i in range(len(key))}]


def _keys(tok: names.Tok) -> list[str]:
    keys = _deletes(tok.skel)
    if tok.vowelless or len(tok.cons) >= 3:  # vowel-stripped and vowel-changed spellings
        keys.append("c:" + tok.cons)
    return keys


class Screener:
    """Screens a name against the lists through an index: every listed token is filed under its
    skeleton and the skeleton's one-letter deletions (adjacent tokens also joined, and the
    consonants for vowel-less spellings); a query gathers the names that share keys with at least
    two of its tokens (one, for one-word names), and only those are scored."""

    def __init__(self, entries: list[ListEntry]) -> None:
        self.entries = entries
        self._names: list[tuple[int, str, list[names.Tok]]] = []
        self._index: dict[str, list[int]] = defaultdict(list)
        for ei, e in enumerate(entries):
            e.tokens = []
            for listed in e.names:
                toks = names.tokens(listed)
                e.tokens.append([t.text for t in toks])
                if not toks:
                    continue
                ni = len(self._names)
                self._names.append((ei, listed, toks))
                keys: set[str] = set()
                for t in toks:
                    if not t.initial:
                        keys.update(_deletes(t.skel))
                        keys.add("c:" + t.cons)
                for x, y in itertools.pairwise(toks):
                    keys.update(_deletes(names.make_tok(x.text + y.text).skel))
                if len(toks) > 2:
                    keys.update(_deletes(names.make_tok("".join(t.text for t in toks)).skel))
                for k in keys:
                    self._index[k].append(ni)

    def _candidates(self, toks: list[names.Tok]) -> set[int]:
        full = [t for t in names._dedupe(toks) if not t.initial]
        if not full:
            return set()
        units = [_keys(t) for t in full]
        units += [_deletes(names.make_tok(x.text + y.text).skel) for x, y in itertools.pairwise(full)]
        if len(full) > 1:
            units.append(_deletes(names.make_tok("".join(t.text for t in full)).skel))
        idx = self._index
        hits = [set().union(*(idx.get(k, ()) for k in keys)) for keys in units]
        if len(full) == 1:
            return hits[0]
        # a name found through a joined unit, or through two different tokens of the query
        out: set[int] = set().union(*hits[len(full) :])
        singles = hits[: len(full)]
        for i in range(len(singles)):
            for j in range(i + 1, len(singles)):
                out |= singles[i] & singles[j]
        return out

    def screen(self, name: str, dob: date | None = None, threshold: float = 88) -> list[Match]:
        toks = names.tokens(name)
        best: dict[int, tuple[float, str]] = {}
        for ni in self._candidates(toks):
            ei, listed, listed_toks = self._names[ni]
            s = names.compare(toks, listed_toks)
            if s >= threshold and s > best.get(ei, (-1.0, ""))[0]:
                best[ei] = (s, listed)
        out = []
        for ei, (s, listed) in best.items():
            e = self.entries[ei]
            dob_match = None if dob is None or not e.dobs else dob in e.dobs
            if dob_match is False:
                continue
            out.append(Match(e, listed, s, dob_match))
        return sorted(out, key=lambda m: (-m.score, m.entry.entry_id))


class SanctionsParams(P):
    min_score: float = Field(default=88, ge=0, le=100)


def _party(op: BalanceOperation) -> str:
    """Who the name on a payment is: the payer of a deposit, the beneficiary of a payout."""
    return "beneficiary" if op.kind == "withdrawal" or op.amount < 0 else "payer"


@register
class SanctionsScreening(Rule):
    """Screens the account holder's name when the account is first seen and when its name or date
    of birth changes, and the payer (deposit) or beneficiary (withdrawal) name of every approved
    PSP operation that names one. Repeated payments by the same listed payer fall in the rule's
    cool-down per (account, entry, party)."""

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
        return [self._hit(matches[0], "account holder", account.name, account.account_key,
                          account.tenant, [account.account_key], account.updated_at)]

    def on_op(self, op: BalanceOperation, account: str) -> list[Hit]:
        screener = self.ctx.screener
        if screener is None or not op.payer_name or not psp_approved(op):
            return []
        acc = self.ctx.accounts.get(account)
        if acc is not None and acc.name and names.normalise(acc.name) == names.normalise(op.payer_name):
            return []  # the holder paying: already screened on the account
        # the holder's date of birth says nothing about a third party's
        dob = acc.date_of_birth if acc is not None and names.similarity(
            acc.name, op.payer_name) >= self.p.min_score else None
        matches = screener.screen(op.payer_name, dob, self.p.min_score)
        if not matches:
            return []
        party = _party(op)
        return [self._hit(matches[0], party, op.payer_name, account, op.tenant, [op.op_key], op.time,
                          cooldown_key=f"{account}|{party}|{matches[0].entry.entry_id}")]

    def _hit(
        self, m: Match, party: str, name: str, subject: str, tenant: str, evidence: list[str],
        t: datetime, cooldown_key: str = "",
    ) -> Hit:
        return Hit(
            subject,
            tenant,
            f"{party} '{name}' matches {m.entry.source} entry {m.entry.entry_id} "
            f"'{m.listed_name}' (score {m.score:.0f} >= {self.p.min_score:.0f}"
            f"{', date of birth matches' if m.dob_match else ''})",
            {
                "party": party,
                "account_name" if party == "account holder" else "party_name": name,
                "entry": m.entry.entry_id,
                "list": m.entry.source,
                "listed_name": m.listed_name,
                "program": m.entry.program,
                "score": round(m.score, 1),
                "min_score": self.p.min_score,
                "dob_match": m.dob_match,
            },
            evidence,
            t,
            cooldown_key=cooldown_key,
        )
