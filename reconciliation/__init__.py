"""Continuous reconciliation of money between the payment providers and the trading platforms
(docs/reconciliation.md). Pure Python: fed canonical balance operations in read order, it
emits typed break records; the dataflow (pipelines/recon_step.py) stores them."""

from reconciliation.breaks import BREAK_KINDS, Break, BreakKind
from reconciliation.matcher import Matcher, platform_reference
from reconciliation.settings import ReconSettings

__all__ = ["BREAK_KINDS", "Break", "BreakKind", "Matcher", "ReconSettings", "platform_reference"]
