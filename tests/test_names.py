"""Name normalisation and comparison (risk_rules/names.py), one variant class at a time."""

from __future__ import annotations

import pytest

from risk_rules import names
from risk_rules.aml.rules import name_score
from risk_rules.sanctions import ListEntry, Screener
from tests import name_variants as nv


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("Jürgen Müller-Strauß", ["jurgen", "muller", "strauss"]),
        ("Đorđe Janković", ["djordje", "jankovic"]),
        ("ĐORĐE JANKOVIĆ", ["djordje", "jankovic"]),
        ("Łukasz Wróbel", ["lukasz", "wrobel"]),
        ("Søren Ødegård Æsa Yılmaz", ["soren", "odegard", "aesa", "yilmaz"]),
        ("Vor\u200banko", ["voranko"]),  # deleted, not a token break
        ("MüllerSanchez", ["muller", "sanchez"]),
        ("Dr. Samir al-Qadirah", ["samir", "qadirah"]),
        ("Дмитрий", ["dmitriy"]),
        ("Μπαρρανι", ["barrani"]),
        ("Vоrаnkо", ["voranko"]),  # Cyrillic о, а folded as look-alikes
    ],
)
def test_tokens(raw: str, want: list[str]) -> None:
    assert [t.text for t in names.tokens(raw)] == want


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Juergen Mueller-Strauss", "Jürgen Müller-Strauß"),
        ("Djordje Jankovic", "Đorđe Janković"),
        ("Guangming Chen", "CHEN, Guang Ming"),
        ("Pedro MULLERSANCHEZ", "Pedro Müller-Sanchez"),
        ("KRMV, Mhmmd Ysf", "Muhammad Yusuf KARIMOV"),
        ("Youssef Barrani", "Yusuf BARRANI"),
    ],
)
def test_similar(a: str, b: str) -> None:
    assert names.similarity(a, b) >= 88


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Omar Jaber Abdullah", "Osama Jaber ABDULLAH"),
        ("Voranko", "Dmitar Ilkovic Voranko"),
        ("J. Voranko", "Dmitar Voranko"),
        ("Anna Wrobel", "Lukasz Wrobel"),
    ],
)
def test_not_similar(a: str, b: str) -> None:
    assert names.similarity(a, b) < 88


def test_payer_check_uses_the_same_normalisation() -> None:
    assert name_score("LUKASZ WROBEL", "Łukasz Wróbel") == 100
    assert name_score("Wrobel", "Łukasz Wróbel") == 100  # a surname alone is not a third party
    assert name_score("Anna Wrobel", "Łukasz Wróbel") < 85


@pytest.fixture(scope="module")
def listed() -> list[nv.Listed]:
    return nv.synthetic_list(1500, seed=3)


@pytest.fixture(scope="module")
def screener(listed: list[nv.Listed]) -> Screener:
    return Screener([ListEntry(e.entry_id, list(e.names), "SYN") for e in listed])


@pytest.mark.parametrize("cls", nv.ALL_CLASSES)
def test_recall_per_class(listed: list[nv.Listed], screener: Screener, cls: str) -> None:
    rows = nv.variants(listed, cls, 60, seed=5)
    extra = [ListEntry(f"x{k}", [name], "SYN") for k, (name, _, eid) in enumerate(rows) if not eid]
    scr = Screener(extra) if extra else screener
    found = 0
    for k, (_, query, eid) in enumerate(rows):
        found += (eid or f"x{k}") in {m.entry.entry_id for m in scr.screen(query)}
    assert found / len(rows) >= 0.93, cls


def test_near_misses_rarely_hit(listed: list[nv.Listed], screener: Screener) -> None:
    rows = nv.near_misses(listed, 300, seed=5)
    hits = sum(eid in {m.entry.entry_id for m in screener.screen(q)} for _, q, eid in rows)
    assert hits / len(rows) <= 0.04
