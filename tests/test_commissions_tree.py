"""The partner tree and the commissions configuration: effective-dated links, and invalid
trees and plans refused with messages that name the IB or the field."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from commissions import CommissionConfigError, PartnerTree, TreeError, load_commissions, parse_commissions
from commissions.tree import IB, chain_text

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "commissions.yaml"
NOV = datetime(2024, 11, 15, tzinfo=UTC)
DEC = datetime(2024, 12, 15, tzinfo=UTC)


def example_doc() -> dict[str, Any]:
    doc = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def refused(doc: dict[str, Any]) -> str:
    with pytest.raises(CommissionConfigError) as err:
        parse_commissions(doc, "test.yaml")
    return str(err.value)


def test_the_example_loads_and_describes_a_three_level_tree() -> None:
    config = load_commissions(EXAMPLE)
    tree = config.build_tree()
    assert [ib.ib_id for ib in tree.chain("IB-3", NOV)] == ["IB-3", "IB-2", "IB-1"]
    assert chain_text(tree.chain("IB-3", NOV)) == "IB-1>IB-2>IB-3"
    assert {p.id for p in config.plans} >= {"master-10", "sub-7", "retail-5", "pool-cascade", "round-turn-8"}


def test_links_are_effective_dated() -> None:
    tree = load_commissions(EXAMPLE).build_tree()
    # IB-4 moved directly under IB-1 from 2024-12-01 (inclusive)
    assert [ib.ib_id for ib in tree.chain("IB-4", NOV)] == ["IB-4", "IB-2", "IB-1"]
    assert [ib.ib_id for ib in tree.chain("IB-4", datetime(2024, 12, 1, tzinfo=UTC))] == ["IB-4", "IB-1"]
    assert [ib.ib_id for ib in tree.chain("IB-4", datetime(2024, 11, 30, 23, 59, 59, tzinfo=UTC))][
        1
    ] == "IB-2"
    assert tree.ib_of("mt5:ACME-MT5-Live:70001", NOV) == "IB-3"
    assert tree.ib_of("mt5:ACME-MT5-Live:70001", datetime(2023, 1, 1, tzinfo=UTC)) is None  # before its date
    assert tree.ib_of("mt5:ACME-MT5-Live:99999", NOV) is None
    tree.assign("mt5:ACME-MT5-Live:70001", "IB-2", DEC)
    assert tree.ib_of("mt5:ACME-MT5-Live:70001", NOV) == "IB-3"
    assert tree.ib_of("mt5:ACME-MT5-Live:70001", DEC) == "IB-2"
    tree.assign("mt5:ACME-MT5-Live:70001", None, datetime(2025, 1, 1, tzinfo=UTC))
    assert tree.ib_of("mt5:ACME-MT5-Live:70001", datetime(2025, 2, 1, tzinfo=UTC)) is None
    tree.set_plan("IB-3", "sub-7", DEC)
    assert (tree.plan_of("IB-3", NOV), tree.plan_of("IB-3", DEC)) == ("retail-5", "sub-7")


def test_a_run_time_move_that_would_make_a_cycle_is_refused_and_changes_nothing() -> None:
    tree = load_commissions(EXAMPLE).build_tree()
    with pytest.raises(TreeError, match=r"IB 'IB-1': the partner tree has a cycle from 2024-12-01.*IB-1"):
        tree.move("IB-1", "IB-3", datetime(2024, 12, 1, tzinfo=UTC))
    assert tree.parent("IB-1", DEC) is None
    tree.move("IB-3", "IB-1", datetime(2024, 12, 1, tzinfo=UTC))  # a legal move
    assert chain_text(tree.chain("IB-3", DEC)) == "IB-1>IB-3"
    assert chain_text(tree.chain("IB-3", NOV)) == "IB-1>IB-2>IB-3"


def test_unknown_ibs_are_named() -> None:
    tree = load_commissions(EXAMPLE).build_tree()
    with pytest.raises(TreeError, match="account mt5:S:1: IB 'IB-9' is not in the partner tree"):
        tree.assign("mt5:S:1", "IB-9", NOV)
    with pytest.raises(TreeError, match="IB 'IB-2': master 'IB-9' is not in the partner tree"):
        tree.move("IB-2", "IB-9", NOV)
    with pytest.raises(TreeError, match="IB 'IB-9' is not in the partner tree"):
        tree.chain("IB-9", NOV)
    with pytest.raises(TreeError, match="IB 'A' is defined twice"):
        PartnerTree([IB("A"), IB("A")])


def test_a_cycle_in_the_file_is_refused_naming_the_ibs_and_the_date() -> None:
    doc = example_doc()
    doc["ibs"][0]["changes"] = [{"from": "2025-02-01", "parent": "IB-3"}]  # IB-1 under its own grandchild
    message = refused(doc)
    assert message.startswith("commissions config error in test.yaml:")
    assert "the partner tree has a cycle from 2025-02-01T00:00:00+00:00" in message
    assert "IB 'IB-1'" in message and message.endswith("IB-1 > IB-2 > IB-3 > IB-1")  # master > sub


def test_reference_errors_name_the_field_and_the_ib() -> None:
    doc = example_doc()
    doc["ibs"][1]["parent"] = "IB-9"
    doc["ibs"][2]["plan"] = "retail-50"
    doc["ibs"][3]["changes"][0]["parent"] = "IB-77"
    doc["accounts"][0]["ib"] = "IB-42"
    doc["ibs"].append({"id": "IB-1", "plan": "sub-7"})
    doc["ibs"].append({"id": "IB-8", "parent": "IB-8"})
    message = refused(doc)
    assert "ibs.1.parent: master 'IB-9' is not defined (IB 'IB-2')" in message
    assert "ibs.2.plan: plan 'retail-50' is not defined (IB 'IB-3')" in message
    assert "ibs.3.changes.0.parent: master 'IB-77' is not defined (IB 'IB-4')" in message
    assert "accounts.0.ib: IB 'IB-42' is not defined (account mt5:ACME-MT5-Live:70001)" in message
    assert "ibs.5.id: IB 'IB-1' is defined twice" in message
    assert "ibs.6.parent: IB 'IB-8' cannot be its own master" in message


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (
            ("plans", 3, "versions", 0, "markup_share"),
            "1.5",
            "plans.3.versions.0.markup_share: Input should be less than or equal to 1",
        ),
        (
            ("plans", 0, "versions", 0, "per_lot", "fx_major"),
            "-1",
            "plans.0.versions.0.per_lot.fx_major: Input should be greater than or equal to 0",
        ),
        (
            ("plans", 0, "versions", 0, "distribution"),
            "pyramid",
            "plans.0.versions.0.distribution: Input should be 'differential' or 'cascade'",
        ),
        (
            ("plans", 4, "versions", 0, "charge"),
            "half",
            "plans.4.versions.0.charge: Input should be 'per_side' or 'round_turn'",
        ),
        (
            ("plans", 4, "versions", 0, "caps", "per_day"),
            "10.005",
            "plans.4.versions.0.caps.per_day: 10.005 is not a whole number of USD minor units",
        ),
        (
            ("plans", 2, "versions", 0, "min_hold_seconds"),
            -5,
            "plans.2.versions.0.min_hold_seconds: Input should be greater than or equal to 0",
        ),
        (
            ("plans", 0, "versions", 1, "version"),
            1,
            "plans.0: versions.1.version: must be above the version before it (1)",
        ),
        (
            ("plans", 4, "versions", 0, "volume_tiers", 1, "from_lots"),
            50,
            "volume_tiers.1.from_lots must be above the tier before it (100)",
        ),
        (
            ("plans", 0, "versions", 0, "rebate"),
            3,
            "plans.0.versions.0.rebate: Extra inputs are not permitted",
        ),
        (("accounts", 0, "account"), "70001", "accounts.0.account: String should match pattern"),
        (("currency",), "usd", "currency: String should match pattern"),
    ],
)
def test_invalid_plans_are_refused_naming_the_field(
    path: tuple[Any, ...], value: object, expected: str
) -> None:
    doc = example_doc()
    node: Any = doc
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    assert expected in refused(doc)


def test_a_plan_version_must_start_after_the_one_before() -> None:
    doc = example_doc()
    doc["plans"][0]["versions"][1]["effective_from"] = "2023-06-01"
    assert "versions.1.effective_from: must be after version 1's" in refused(doc)


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(CommissionConfigError, match="not found"):
        load_commissions(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("plans: [\n", encoding="utf-8")
    with pytest.raises(CommissionConfigError, match="not valid YAML"):
        load_commissions(bad)


# -- random trees: validation accepts exactly the trees without a cycle at any moment -------

MOMENTS = [datetime(2024, m, 1, tzinfo=UTC) for m in (1, 3, 6, 9)]


@settings(max_examples=200, deadline=None)
@given(
    st.integers(2, 7).flatmap(
        lambda n: st.tuples(
            st.just(n),
            st.lists(st.one_of(st.none(), st.integers(0, n - 1)), min_size=n, max_size=n),
            st.lists(
                st.tuples(
                    st.integers(0, n - 1),
                    st.integers(0, len(MOMENTS) - 1),
                    st.one_of(st.none(), st.integers(0, n - 1)),
                ),
                max_size=6,
            ),
        )
    )
)
def test_random_trees_are_accepted_exactly_when_acyclic(
    spec: tuple[int, list[int | None], list[Any]],
) -> None:
    n, parents, moves = spec
    ibs: list[dict[str, Any]] = [
        {"id": f"I{i}", "plan": "p"} | ({"parent": f"I{p}"} if p is not None else {})
        for i, p in enumerate(parents)
    ]
    for ib_index, moment, parent in moves:
        ibs[ib_index].setdefault("changes", []).append(
            {"from": MOMENTS[moment].isoformat(), "parent": None if parent is None else f"I{parent}"}
        )
    doc = {
        "tenant": "t",
        "plans": [{"id": "p", "versions": [{"version": 1, "effective_from": "2024-01-01"}]}],
        "ibs": ibs,
    }

    # brute force: the parent of every IB at every moment, and whether following parents loops
    def parent_at(i: int, moment: datetime) -> int | None:
        current = parents[i]
        for change in sorted(ibs[i].get("changes", []), key=lambda c: c["from"]):
            if datetime.fromisoformat(change["from"]) <= moment:
                current = None if change["parent"] is None else int(change["parent"][1:])
        return current

    def loops(moment: datetime) -> bool:
        for start in range(n):
            seen: set[int] = set()
            node: int | None = start
            while node is not None:
                if node in seen:
                    return True
                seen.add(node)
                node = parent_at(node, moment)
        return False

    self_parent = any(p == i for i, p in enumerate(parents)) or any(
        c["parent"] == ibs[i]["id"] for i in range(n) for c in ibs[i].get("changes", [])
    )
    cyclic = self_parent or any(loops(m) for m in [datetime(2023, 1, 1, tzinfo=UTC), *MOMENTS])
    if cyclic:
        refused(copy.deepcopy(doc))
    else:
        tree = parse_commissions(doc).build_tree()
        for moment in MOMENTS:
            for i in range(n):
                chain = [ib.ib_id for ib in tree.chain(f"I{i}", moment)]
                assert len(chain) == len(set(chain)) and chain[0] == f"I{i}"
