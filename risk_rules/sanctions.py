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
import io
import itertools
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydantic import Field

from risk_rules import names
from risk_rules.aml.rules import psp_approved
from risk_rules.engine import Context, Hit, Rule, register
from risk_rules.reference import ofac_value, read_text
from risk_rules.rulekit import P
from schemas.chunked import ChunkedDict
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
    for row in csv.reader(io.StringIO(read_text(sdn_path), newline="")):
        if len(row) < 3:
            continue  # a blank line, or the DOS end-of-file mark OFAC ends the file with
        kind = ofac_value(row[2]).lower()
        if individuals_only and kind != "individual":
            continue
        remarks = ofac_value(row[11]) if len(row) > 11 else ""
        entries[row[0].strip()] = ListEntry(
            row[0].strip(),
            [_ofac_name(row[1])],
            "OFAC",
            ofac_value(row[3]) if len(row) > 3 else "",
            _dobs(remarks),
        )
    if alt_path is not None:
        for row in csv.reader(io.StringIO(read_text(alt_path), newline="")):
            if len(row) >= 4 and row[0].strip() in entries:
                entries[row[0].strip()].names.append(_ofac_name(row[3]))
    return list(entries.values())


def load_eu(path: str | Path, individuals_only: bool = True) -> list[ListEntry]:
    """EU consolidated list CSV (semicolon separated, one row per name/birth-date detail)."""
    entries: dict[str, ListEntry] = {}
    for row in csv.DictReader(io.StringIO(read_text(path), newline=""), delimiter=";"):

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


@lru_cache(maxsize=65536)
def _key(text: str) -> str:
    """The skeleton taken to its fixed point, for index keys: a transliteration can leave a
    digraph behind ("pkhiri" -> "phiri", whose "ph" the listed "Phiri" -> "firi" lost)."""
    key = names.skeleton(text)
    for _ in range(3):
        again = names.skeleton(key)
        if again == key:
            break
        key = again
    return key


def _keys(tok: names.Tok) -> list[str]:
    """A query token's keys: its skeleton's deletions, and its consonants for vowel-stripped
    and vowel-changed spellings."""
    keys = _deletes(_key(tok.text))
    if tok.vowelless or len(tok.cons) >= 3:
        keys.append("c:" + tok.cons)
    return keys


def _listed_keys(tok: names.Tok) -> set[str]:
    """A listed token's keys: its skeleton's deletions and its consonants, also as the
    vowel-stripped spelling would have them ("Tehrani" written "THRN" has skeleton "trn"; the
    leading vowel of a word inside a hyphenated name goes too: "OZTURK" -> "ZTRK")."""
    rest = "".join(c for c in tok.text[1:] if c not in names.VOWELS)
    keys = {*_deletes(_key(tok.text)), "c:" + tok.cons, "c:" + names.make_tok(tok.text[0] + rest).cons}
    if tok.text[0] in names.VOWELS and len(rest) >= 2:
        keys.add("c:" + names.make_tok(rest).cons)
    return keys


_MEMO_SIZE = 65_536  # screening answers kept (cleared when full)
_SLOTS = 8  # token positions told apart per listed name (later ones share the last slot)
_POS = 3  # postings are name index << _POS | token slot
Posting = npt.NDArray[np.int32]


class _Postings:
    """Key -> codes, all in one int32 array; a key maps to (start << 24 | count) in it, a plain
    int rather than an array object per key (most keys of joined forms name one name)."""

    def __init__(self, index: dict[str, list[int]]) -> None:
        self.flat = np.fromiter(itertools.chain.from_iterable(index.values()), dtype=np.int32,
                                count=sum(map(len, index.values())))
        self.at: dict[str, int] = {}
        start = 0
        for k, v in index.items():
            self.at[k] = start << 24 | len(v)
            start += len(v)

    def get(self, keys: list[str]) -> list[Posting]:
        out = []
        for packed in map(self.at.get, keys):
            if packed is not None:
                start = packed >> 24
                out.append(self.flat[start : start + (packed & 0xFFFFFF)])
        return out

    def nbytes(self) -> int:
        return self.flat.nbytes + sys.getsizeof(self.at) + sum(
            sys.getsizeof(k) + sys.getsizeof(v) for k, v in self.at.items())


class Screener:
    """Screens a name against the lists through an index, so that one screen scores only the
    few names that could reach the threshold.

    Every distinct listed token is filed under its skeleton, the skeleton's one-letter deletions
    and its consonants (`_tokens`), adjacent tokens joined under the same keys (`_pairs`, for a
    query that writes them as one word), and a name of two or more tokens written as one word
    (`_whole`, for one-word queries). A posting names the name and its token's slot. A query
    token covers the listed tokens it shares a key with; two adjacent query tokens joined cover
    what they share a key with too. `compare` pairs every token of the shorter name with a close
    counterpart (a weak pair sinks the name), so a name is scored only when the query covers
    all of its tokens, or all of the query's tokens find one in it: a name that shares only a
    common given name with the query is not scored. A one-word query scores one-word listings
    and names written as one word; a one-word listing is scored only against the query written
    as one word. The counting is done on numpy arrays over all names (a few microseconds each)."""

    def __init__(self, entries: list[ListEntry]) -> None:
        self.entries = entries
        # recent answers: one person's accounts on several platforms ask the same question
        self._memo: dict[tuple[str, date | None, float], tuple[Match, ...]] = {}
        self._names: list[tuple[int, str, list[names.Tok]]] = []
        full_counts: list[int] = []  # per name: its distinct non-initial tokens
        singles: list[bool] = []  # names of one distinct token
        letters: dict[str, list[int]] = defaultdict(list)  # first letter -> names with a token
        tokens: dict[str, list[int]] = defaultdict(list)
        exact: dict[str, list[int]] = defaultdict(list)  # skeleton -> the tokens that are it
        pairs: dict[str, list[int]] = defaultdict(list)
        whole: dict[str, list[int]] = defaultdict(list)
        for ei, e in enumerate(entries):
            e.tokens = []
            for listed in e.names:
                toks = names.tokens(listed)
                e.tokens.append([t.text for t in toks])
                if not toks:
                    continue
                ni = len(self._names)
                self._names.append((ei, listed, toks))
                distinct = names._dedupe(toks)
                full = [t for t in distinct if not t.initial]
                full_counts.append(min(len(full), _SLOTS))
                singles.append(len(distinct) == 1)
                for letter in {t.text[0] for t in distinct}:
                    letters[letter].append(ni)
                code = {t.text: ni << _POS | min(pos, _SLOTS - 1) for pos, t in enumerate(full)}
                for t in full:
                    exact[t.skel].append(code[t.text])
                    for k in _listed_keys(t):
                        tokens[k].append(code[t.text])
                if len(distinct) < 2:
                    continue
                for x, y in itertools.pairwise(toks):
                    covered = [code[t.text] for t in (x, y) if not t.initial]
                    for k in _deletes(_key(x.text + y.text)):
                        pairs[k].extend(covered)
                for k in _deletes(_key("".join(t.text for t in toks))):
                    whole[k].append(ni << _POS)
        self._tokens = _Postings(tokens)
        self._exact = _Postings(exact)
        self._pairs = _Postings(pairs)
        self._whole = _Postings(whole)
        self._need = np.asarray(full_counts, dtype=np.int8)
        self._multi = ~np.asarray(singles, dtype=bool)
        self._single_codes = {ni << _POS for ni, one in enumerate(singles) if one}
        self._letters: dict[str, npt.NDArray[np.bool_]] = {}
        for letter, found in letters.items():
            mask = np.zeros(len(self._names), dtype=bool)
            mask[found] = True
            self._letters[letter] = mask

    @property
    def size(self) -> int:
        """Names indexed (primary names and aliases)."""
        return len(self._names)

    def index_bytes(self) -> int:
        """Memory of the index's arrays and key tables (not the names themselves)."""
        masks = self._need.nbytes + self._multi.nbytes + sum(m.nbytes for m in self._letters.values())
        return masks + sum(p.nbytes() for p in (self._tokens, self._exact, self._pairs, self._whole))

    def _singles(self, keys: list[str]) -> set[int]:
        """One-word listings with one of these keys."""
        found: set[int] = set()
        for p in self._tokens.get(keys):
            found.update(c for c in p.tolist() if c in self._single_codes)
        return {c >> _POS for c in found}

    def _joined(self, x: names.Tok, y: names.Tok) -> list[Posting]:
        """Listed tokens like `x` and `y` written as one word, less those that are `x` or `y`
        (`compare` pairs the exact token first, so the joined form never takes them)."""
        found = self._tokens.get(_deletes(_key(x.text + y.text)))
        same = self._exact.get([x.skel, y.skel])
        if not found or not same:
            return found
        return [np.setdiff1d(np.concatenate(found), np.concatenate(same), assume_unique=False)]

    def _candidates(self, toks: list[names.Tok]) -> set[int]:
        distinct = names._dedupe(toks)
        full = [t for t in distinct if not t.initial]
        if not full:
            return set()
        if len(distinct) == 1:
            keys = _keys(full[0])
            whole = self._whole.get(keys)
            out = self._singles(keys)
            if whole:
                out.update((np.unique(np.concatenate(whole)) >> _POS).tolist())
            return out
        joined = [self._joined(x, y) for x, y in itertools.pairwise(full)]
        n, size = len(full), len(self._names)
        # which listed token slots the query covers, and which query tokens find each name: a
        # token like it, two adjacent tokens written as it, or it and its neighbour written as
        # one word like a listed token
        listed = np.zeros((_SLOTS, size), dtype=bool)
        query = np.zeros(size, dtype=np.int16)
        by_pair = np.zeros(size, dtype=bool)  # a query token like two listed tokens joined
        for i, t in enumerate(full):
            keys = _keys(t)
            as_pair = self._pairs.get(keys)
            found = self._tokens.get(keys) + as_pair
            names_found = [c >> _POS for c in found]
            for codes in as_pair:
                by_pair[codes >> _POS] = True
            if i > 0:
                names_found += [c >> _POS for c in joined[i - 1]]
            if i < len(joined):
                names_found += [c >> _POS for c in joined[i]]
            if found:
                codes = np.concatenate(found)
                listed[codes & (_SLOTS - 1), codes >> _POS] = True
            if names_found:
                seen = np.zeros(size, dtype=bool)
                seen[np.concatenate(names_found)] = True
                query += seen
        # by the query's own tokens: when it is the shorter name, its tokens take distinct
        # listed tokens (two query tokens that both look like one listed "Andrei" are not two)
        own = listed.sum(axis=0, dtype=np.int8)
        by_joined = np.zeros(size, dtype=bool)
        for codes in itertools.chain.from_iterable(joined):
            listed[codes & (_SLOTS - 1), codes >> _POS] = True
            by_joined[codes >> _POS] = True
        covered = listed.sum(axis=0, dtype=np.int8) if by_joined.any() else own
        query_side = (query >= n) & ((own >= np.minimum(self._need, n)) | by_joined)
        # the query's initials must find a token with their letter
        for t in distinct:
            if t.initial:
                query_side &= self._letters.get(t.text, False)
        # and when the listed name is the shorter, its tokens take distinct query tokens (or
        # two of them one query token written as one word)
        listed_side = (covered >= self._need) & ((query >= np.minimum(self._need, n)) | by_pair)
        ok = self._multi & (covered > 0) & (listed_side | query_side)
        out = set(np.flatnonzero(ok).tolist())
        # one-word listings: only against the query written as one word, either order
        for seq in (full, full[::-1]):
            out |= self._singles(_deletes(_key("".join(t.text for t in seq))))
        return out

    def screen(self, name: str, dob: date | None = None, threshold: float = 88) -> list[Match]:
        key = (name, dob, threshold)
        found = self._memo.get(key)
        if found is None:
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.clear()
            found = self._memo[key] = tuple(self.screen_uncached(name, dob, threshold))
        return list(found)

    def screen_uncached(self, name: str, dob: date | None = None, threshold: float = 88) -> list[Match]:
        """`screen` without the memo (the benchmark times this)."""
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


PAYOUT_MEMORY = timedelta(days=60)  # a payout's statuses arrive within this


class SanctionsParams(P):
    min_score: float = Field(default=88, ge=0, le=100)


def _party(op: BalanceOperation) -> str:
    """Who the name on a payment is: the payer of a deposit, the beneficiary of a payout."""
    return "beneficiary" if op.kind == "withdrawal" or op.amount < 0 else "payer"


@register
class SanctionsScreening(Rule):
    """Screens the account holder's name when the account is first seen and when its name or date
    of birth changes, the payer name of every approved PSP deposit that names one, and the
    beneficiary name of every PSP payout when it is first seen (pending: before the money
    leaves; else approved), once per payout. Repeated payments by the same listed payer fall in
    the rule's cool-down per (account, entry, party)."""

    rule_id = "sanctions_screening"
    category = "aml"
    Params = SanctionsParams
    p: SanctionsParams

    def __init__(self, params: SanctionsParams, ctx: Context) -> None:
        super().__init__(params, ctx)
        # payouts already screened (op key -> event time), forgotten after PAYOUT_MEMORY
        self.payouts: ChunkedDict[str, datetime] = ChunkedDict(4096)
        self._prune_at = 2 * 4096

    def _first_payout(self, op: BalanceOperation) -> bool:
        if op.op_key in self.payouts:
            return False
        self.payouts[op.op_key] = op.time
        if len(self.payouts) >= self._prune_at:
            horizon = op.time - PAYOUT_MEMORY
            self.payouts = self.payouts.filtered(lambda _, t: t >= horizon)
            self._prune_at = max(2 * 4096, 2 * len(self.payouts))
        return True

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
        if screener is None or not op.payer_name or op.platform != "psp":
            return []
        if op.kind == "withdrawal":
            if op.status not in ("pending", "approved") or not self._first_payout(op):
                return []
        elif not psp_approved(op):
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
        return sanctions_hit(m, party, name, subject, tenant, evidence, t, self.p.min_score,
                             cooldown_key)


def sanctions_hit(
    m: Match, party: str, name: str, subject: str, tenant: str, evidence: list[str], t: datetime,
    min_score: float, cooldown_key: str = "",
) -> Hit:
    """The hit of a screen (live, by the rule, or by `brokerstream sanctions rescreen`)."""
    return Hit(
        subject,
        tenant,
        f"{party} '{name}' matches {m.entry.source} entry {m.entry.entry_id} "
        f"'{m.listed_name}' (score {m.score:.0f} >= {min_score:.0f}"
        f"{', date of birth matches' if m.dob_match else ''})",
        {
            "party": party,
            "account_name" if party == "account holder" else "party_name": name,
            "entry": m.entry.entry_id,
            "list": m.entry.source,
            "listed_name": m.listed_name,
            "program": m.entry.program,
            "score": round(m.score, 1),
            "min_score": min_score,
            "dob_match": m.dob_match,
        },
        evidence,
        t,
        cooldown_key=cooldown_key,
    )
