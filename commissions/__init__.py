"""IB commissions: the partner tree, versioned plans, differential and cascade splits, and the
streaming engine that turns deals into commission rows. See docs/commissions.md."""

from commissions.config import CommissionConfig, CommissionConfigError, load_commissions, parse_commissions
from commissions.engine import CommissionEngine, CommissionStep, Issue
from commissions.money import FixedRates, RateFunction
from commissions.rows import ROW_COLUMNS, CommissionRow, commission_id
from commissions.state import CommissionState
from commissions.statement import Payout, payouts, statement
from commissions.tree import IB, PartnerTree, TreeError

__all__ = [
    "IB",
    "ROW_COLUMNS",
    "CommissionConfig",
    "CommissionConfigError",
    "CommissionEngine",
    "CommissionRow",
    "CommissionState",
    "CommissionStep",
    "FixedRates",
    "Issue",
    "PartnerTree",
    "Payout",
    "RateFunction",
    "TreeError",
    "commission_id",
    "load_commissions",
    "parse_commissions",
    "payouts",
    "statement",
]
