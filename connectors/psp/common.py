"""What the payment connectors share: signature checks, payload reading, the canonical payment
lifecycle, instrument fingerprints and the one place a payment becomes `BalanceOperation`s.

Everything here is a pure function of its inputs (no I/O, no clock unless one is passed in).
Two exception types leave this package: `SignatureError` (the sender can't be trusted: bad or
missing signature, stale timestamp, foreign merchant) and `fields.Rejected` (the payload can't
be interpreted). Nothing else may escape a `verify`, `dedupe_id`, `routing` or `read_*`.

Lifecycle and versions
----------------------
Each provider status maps to one of ``pending | approved | declined | cancelled | failed |
chargeback | refunded``. Every notification about one transaction is a new version of the same
operation (``op_key = psp:<provider>:<transaction id>``), so a latest-version table shows the
latest state. The version is ``event_version(received ms + rank x 1 day, "add") + rank`` with
rank ``pending 0 < approved/declined/cancelled/failed 1 < refunded 2 < chargeback 3``:

* at equal (or close) timestamps the later lifecycle state wins: ``approved`` received in the
  same millisecond as ``pending`` has the higher version;
* a provider *retry* of an older state that arrives after a newer one (we answered 503 the
  first time, the PSP re-sends ``pending`` minutes after ``approved`` went through) does not
  roll the row back, as long as it arrives less than a day later;
* beyond a day, time wins again (a chargeback months after a refund, a reinstated dispute).

Duplicates are harmless. The same Kafka message read again (a replay, a restart of the flow)
gives the same key and the same version. A provider re-send that was published twice (the
receiver restarted and forgot it had acknowledged it) gives the same key and the same state
with a newer version: the latest-version table still holds one row, with the same content.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import importlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl

from connectors.countries import country_code
from connectors.fields import (
    EPOCH,
    MONEY,
    Rejected,
    as_decimal,
    check_time,
    decode_json_object,
    fit_decimal,
    from_epoch_ms,
)
from connectors.psp import masking
from connectors.psp.masking import mask_pans
from connectors.psp.settings import PROVIDER_NAMES, PspProviderSettings, PspSettings
from schemas.envelope import Envelope
from schemas.events import BalanceOperation, event_version
from schemas.money import MINOR_DIGITS

# The masker lives in connectors.psp.masking; re-exported where callers have always found it.
MaskingError = masking.MaskingError
find_pans = masking.find_pans
luhn_ok = masking.luhn_ok
mask_body = masking.mask_body
mask_pan = masking.mask_pan
scrub_pans = masking.scrub_pans

if TYPE_CHECKING:
    from types import ModuleType


class SignatureError(Exception):
    """The notification can't be trusted: missing/bad signature, foreign merchant or key."""

    def __init__(self, reason: str, code: str = "bad_signature") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class StaleError(SignatureError):
    """A correctly signed notification whose signed timestamp is too far from now."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, "stale")


# -- signatures ---------------------------------------------------------------------------------


def equal(a: str, b: str) -> bool:
    """Constant-time comparison (hmac.compare_digest needs bytes for non-ASCII text)."""
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass"))


def header(headers: Mapping[str, str], name: str) -> str:
    """A header value, whatever the case of its name ("" when absent)."""
    value = headers.get(name)
    if value is None:
        wanted = name.lower()
        for key, val in headers.items():
            if key.lower() == wanted:
                value = val
                break
    return value if isinstance(value, str) else ""


def require_secret(secret: str, provider: str) -> None:
    if not secret:
        raise SignatureError(f"no {provider} secret is configured: nothing can be verified",
                             "not_configured")


def check_fresh(signed_at: float, tolerance_s: int, now: float, what: str) -> None:
    """StaleError when |now - signed_at| > tolerance_s (tolerance 0 disables the check)."""
    if tolerance_s and abs(now - signed_at) > tolerance_s:
        raise StaleError(
            f"{what} is {now - signed_at:+.0f}s from now, outside the {tolerance_s}s tolerance"
        )


def tolerance(cfg: PspProviderSettings, default: int) -> int:
    return default if cfg.tolerance_s is None else cfg.tolerance_s


# -- reading payloads ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def parse_form(raw: bytes) -> dict[str, str]:
    """An application/x-www-form-urlencoded body; a repeated field is refused (ambiguous).

    Cached (the receiver reads one body several times): callers must not modify the result.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected("form body is not UTF-8", "decode") from None
    out: dict[str, str] = {}
    try:
        pairs = parse_qsl(text, keep_blank_values=True, errors="strict")
    except (ValueError, UnicodeDecodeError) as exc:
        raise Rejected(f"form body can't be decoded: {exc}", "decode") from None
    for key, value in pairs:
        if key in out:
            raise Rejected(f"form field {key!r} appears more than once", "decode")
        out[key] = value
    if not out:
        raise Rejected("empty form body", "decode")
    return out


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise Rejected(f"JSON key {key[:40]!r} appears more than once", "decode")
        seen.add(key)
    return dict(pairs)


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """A JSON object; a key repeated in any object is refused (parsers disagree on which copy
    counts, so what was signed and what is read could differ)."""
    doc = decode_json_object(raw)
    try:  # orjson keeps the last copy silently: a second, checking parse
        json.loads(raw, object_pairs_hook=_refuse_duplicates)
    except RecursionError:
        raise Rejected("JSON nested too deeply", "decode") from None
    except ValueError as exc:
        raise Rejected(f"not JSON: {exc}", "decode") from None
    return doc


def obj(doc: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A nested object; absent or null gives {}."""
    value = doc.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Rejected(f"field {name!r}: expected an object, got {type(value).__name__}")
    return value


def text(doc: Mapping[str, Any], name: str) -> str:
    """A scalar as the provider printed it ("" when absent or null)."""
    value = doc.get(name)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if not value.is_integer() else str(int(value))
    raise Rejected(f"field {name!r}: expected a scalar, got {type(value).__name__}")


def need(doc: Mapping[str, Any], name: str) -> str:
    value = text(doc, name)
    if not value:
        raise Rejected(f"missing field {name!r}")
    return value


def from_unix_s(value: Any, name: str) -> datetime:
    seconds = as_decimal(value, name)
    try:
        return EPOCH + timedelta(seconds=float(seconds))
    except (OverflowError, ValueError):
        raise Rejected(f"field {name!r}: {value!r} is not a usable unix time") from None


_ASCII_DIGITS = re.compile(r"[0-9]+")


def digits(value: str) -> bool:
    """Only ASCII digits (str.isdigit also says yes to "¹" or "٣")."""
    return _ASCII_DIGITS.fullmatch(value) is not None


# -- money --------------------------------------------------------------------------------------

MAX_AMOUNT = Decimal(10) ** 15
_DECIMAL = re.compile(r"(?:0|[1-9][0-9]{0,17})(?:\.[0-9]{1,18})?")


def money(value: Any, name: str) -> Decimal:
    """A non-negative amount from a decimal string (or an integer); never through a float."""
    if isinstance(value, float):
        raise Rejected(f"field {name!r}: amounts must be decimal strings, got the float {value!r}")
    if isinstance(value, str) and not _DECIMAL.fullmatch(value):
        # no "1e3", "+5", " 5", "5.", "0x10", "١٠": one way to write each amount
        raise Rejected(f"field {name!r}: {value[:40]!r} is not a plain decimal amount")
    amount = as_decimal(value, name)
    if amount < 0:
        raise Rejected(f"field {name!r}: expected a non-negative amount, got {value!r}")
    exponent = amount.as_tuple().exponent
    if amount >= MAX_AMOUNT or (isinstance(exponent, int) and exponent < -18 and amount):
        raise Rejected(f"field {name!r}: {value!r} is out of range for an amount")
    return amount


def need_money(doc: Mapping[str, Any], name: str, label: str = "") -> Decimal:
    value = doc.get(name)
    if value is None or value == "":
        raise Rejected(f"missing field {label or name!r}")
    return money(value, label or name)


# ISO 4217 minor units (providers that send amounts in minor units): the project's one table,
# from the maintained ISO list (schemas.money); codes it does not list count in hundredths.
ISO_EXPONENTS: Mapping[str, int] = MINOR_DIGITS


def minor_units(value: Any, name: str, currency: str, exponents: Mapping[str, int]) -> Decimal:
    """An amount sent as an integer count of minor units (cents) -> Decimal in major units."""
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,20}", value):
        count = int(value)
    elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**20:
        count = value
    else:
        raise Rejected(f"field {name!r}: expected a non-negative whole number of minor units, "
                       f"got {value!r}")
    return Decimal(count).scaleb(-exponents.get(currency, 2))


_CURRENCY = re.compile(r"^[A-Z0-9]{2,10}$")


def currency_code(value: str, name: str) -> str:
    code = value.strip().upper()
    if not _CURRENCY.match(code):
        raise Rejected(f"field {name!r}: {value!r} is not a currency code")
    return code


def country2(value: str) -> str:
    """ISO 3166-1 alpha-2 from an alpha-2 or alpha-3 code or a country name ("" if unknown)."""
    if not value.strip():
        return ""
    return country_code(value[:100]) or ""


# -- lifecycle ----------------------------------------------------------------------------------

Status = Literal["pending", "approved", "declined", "cancelled", "failed", "chargeback", "refunded"]
LIFECYCLE: tuple[str, ...] = (
    "pending", "approved", "declined", "cancelled", "failed", "chargeback", "refunded",
)
STATUS_RANK: dict[str, int] = {
    "pending": 0, "approved": 1, "declined": 1, "cancelled": 1, "failed": 1,
    "refunded": 2, "chargeback": 3,
}
LIFECYCLE_WINDOW_MS = 86_400_000  # how long a later lifecycle state outranks a newer arrival


def lifecycle_version(timestamp_ms: int, status: str) -> int:
    rank = STATUS_RANK[status]
    return event_version(timestamp_ms + rank * LIFECYCLE_WINDOW_MS, "add") + rank


def map_status(table: Mapping[str, str], value: str, provider: str, name: str) -> str:
    status = table.get(value)
    if status is None:
        raise Rejected(f"{provider} {name} {value!r} is not a known status "
                       f"(known: {', '.join(sorted(table))})")
    return status


# -- accounts -----------------------------------------------------------------------------------

_ACCOUNT_REF = re.compile(r"^(?P<server>[^:]+):(?P<login>[0-9]{1,18})(?::.*)?$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class PspAccount:
    server: str
    login: int
    platform: str = ""


def account_ref(value: str, name: str) -> PspAccount:
    """``<server>:<login>[:<anything>]`` as brokers put it in a provider's reference field."""
    match = _ACCOUNT_REF.match(value.strip())
    if match is None:
        raise Rejected(f"field {name!r} = {value[:80]!r} does not name a trading account: "
                       "expected '<server>:<login>[:<reference>]'", "route")
    return PspAccount(match["server"], int(match["login"]))


def is_payout_ref(value: str, prefix: str) -> bool:
    """Whether a signed ``<server>:<login>:<reference>`` names a payout: its reference starts
    with the configured payout prefix (``WD`` by default), so the direction is signed too."""
    parts = value.split(":", 2)
    return len(parts) == 3 and parts[2].startswith(prefix)


def account_fields(server: str, login: str, platform: str, where: str) -> PspAccount:
    if not server:
        raise Rejected(f"{where}: no 'server' names the trading server", "route")
    if not re.fullmatch(r"[0-9]{1,18}", login.strip()):
        raise Rejected(f"{where}: login {login[:40]!r} is not an account number", "route")
    return PspAccount(server.strip(), int(login.strip()), platform.strip().lower())


def pick_account(signed: PspAccount | None, unsigned: PspAccount | None, allow_unsigned: bool,
                 signed_name: str, unsigned_name: str, provider: str) -> PspAccount:
    """The account from the signed field; an unsigned one must agree with it, and is used
    alone only when the provider is configured with ``allow_unsigned_account``."""
    if signed is not None and unsigned is not None and (
            (signed.server, signed.login) != (unsigned.server, unsigned.login)):
        raise Rejected(f"{unsigned_name} names {unsigned.server}:{unsigned.login} but the signed "
                       f"{signed_name} names {signed.server}:{signed.login}", "route")
    if signed is not None:
        return PspAccount(signed.server, signed.login, unsigned.platform if unsigned else "")
    if unsigned is not None:
        if allow_unsigned:
            return unsigned
        raise Rejected(f"the account is named only in {unsigned_name}, which the {provider} "
                       f"signature does not cover: name it in {signed_name} "
                       "('<server>:<login>:<reference>')", "route")
    raise Rejected(f"no trading account: {signed_name} should read "
                   "'<server>:<login>[:<reference>]'", "route")


def maybe(parse: Callable[[], PspAccount | None]) -> PspAccount | None:
    """An account when the field names one, None when it doesn't."""
    try:
        return parse()
    except Rejected:
        return None


def ack_ok(raw_body: bytes, secret: str, now: float) -> tuple[bytes, str, dict[str, str]]:
    """A plain HTTP 200: all a provider that retries until it gets one needs."""
    return b"OK", "text/plain; charset=utf-8", {}


def check_merchant(signed: str, merchant_id: str) -> None:
    """The merchant id the provider signed must be the configured one (when one is)."""
    if merchant_id and not equal(signed, merchant_id):
        raise SignatureError("merchant_id is not the configured merchant", "foreign_merchant")


def signed_account(signed: Callable[[], PspAccount | None], echo: Callable[[], PspAccount | None],
                   disagree: str) -> PspAccount | None:
    """The account the signed fields name (None when they name none). An unsigned echo of it
    that can't even be read, or names another account, is not the provider's: `disagree`."""
    account = maybe(signed)
    try:
        unsigned = echo()
    except Rejected as exc:
        raise SignatureError(exc.reason, "tampered") from None
    if account and unsigned and (account.server, account.login) != (unsigned.server, unsigned.login):
        raise SignatureError(disagree, "tampered")
    return account


@dataclass(frozen=True, slots=True)
class Routing:
    """What the receiver needs before it can publish: the Kafka key and `server` header."""

    txn_id: str
    server: str = ""
    login: str = ""

    @property
    def key(self) -> str:
        return self.login or self.txn_id


def routing_from(txn_id: str, account: Callable[[], PspAccount]) -> Routing:
    try:
        acc = account()
    except Rejected:
        return Routing(txn_id)
    return Routing(txn_id, acc.server, str(acc.login))


# -- fingerprints -------------------------------------------------------------------------------

def card_parts(number: str) -> tuple[str, str]:
    """(BIN, last 4) of a card number, masked or not. Never returns more than 6 + 4 digits."""
    compact = re.sub(r"[\s-]", "", number)
    lead = re.match(r"[0-9]*", compact)
    trail = re.search(r"[0-9]*$", compact)
    head = lead.group(0) if lead else ""
    tail = trail.group(0) if trail else ""
    return head[:6] if len(head) >= 6 else "", tail[-4:] if len(tail) >= 4 else ""


def expiry(month: str, year: str) -> str:
    """MM/YYYY from the many ways providers print an expiry ("" when unreadable)."""
    m, y = month.strip(), year.strip()
    if not (digits(m) and digits(y)) or not 1 <= int(m) <= 12:
        return ""
    if len(y) == 2:
        y = "20" + y
    return f"{int(m):02d}/{y}" if len(y) == 4 else ""


def expiry_text(value: str) -> str:
    """"12/2024", "12/24", "1224", "2024-12" -> "12/2024" ("" when unreadable)."""
    v = value.strip()
    match = re.fullmatch(r"([0-9]{1,2})\s*[/.-]\s*([0-9]{2}|[0-9]{4})", v)
    if match:
        return expiry(match[1], match[2])
    match = re.fullmatch(r"([0-9]{4})-([0-9]{1,2})", v)
    if match:
        return expiry(match[2], match[1])
    if re.fullmatch(r"[0-9]{4}", v):
        return expiry(v[:2], v[2:])
    return ""


def card_instrument(number: str, exp: str, bin_: str = "", last4: str = "") -> str:
    """Normalised card instrument: BIN + last 4 + expiry, never the full number."""
    b, l4 = card_parts(number) if number else ("", "")
    b = b or (bin_.strip()[:6] if digits(bin_.strip()) else "")
    l4 = l4 or (last4.strip()[-4:] if digits(last4.strip()) else "")
    if not l4:
        return ""
    return f"card:{b}:{l4}:{exp}"


def email_instrument(email: str) -> str:
    e = email.strip().lower()
    return f"ewallet:{e}" if "@" in e else ""


def crypto_instrument(address: str) -> str:
    a = address.strip()
    if a.lower().startswith("0x"):  # EVM addresses: the letter case is only a checksum
        a = a.lower()
    return f"crypto:{a}" if a else ""


def account_instrument(kind: str, identifier: str) -> str:
    """A wallet login, bank account or crypto address as a normalised instrument."""
    ident = identifier.strip()
    if not ident:
        return ""
    if "@" in ident:
        return email_instrument(ident)
    if kind == "crypto":
        return crypto_instrument(ident)
    compact = re.sub(r"\s", "", ident).upper()
    return f"{kind}:{compact}"


def fingerprint(tenant: str, salt: str, instrument: str) -> str:
    """Hex SHA-256 of the tenant-scoped salt and the normalised instrument ("" if none)."""
    if not instrument:
        return ""
    return hashlib.sha256(f"{tenant}\x1f{salt}\x1f{instrument}".encode()).hexdigest()


# -- card numbers anywhere ----------------------------------------------------------------------
# The masker lives in connectors.psp.masking (imported at the top of this module).


def method_from_name(name: str, default: str = "") -> str:
    """card / crypto / bank / ewallet from a provider's payment-method name."""
    n = name.lower()
    if any(w in n for w in ("card", "visa", "master", "maestro", "amex", "cc_", "diners", "jcb")):
        return "card"
    if any(w in n for w in ("crypto", "bitcoin", "btc", "usdt", "eth", "ltc", "coin", "tether")):
        return "crypto"
    if any(w in n for w in ("bank", "wire", "sepa", "transfer", "trustly", "sofort", "ideal",
                            "ach", "eft", "pix", "giro")):
        return "bank"
    return default


# -- context and output -------------------------------------------------------------------------


@dataclass(frozen=True)
class PspContext:
    """What the readers need from the configuration: provider settings and server ownership."""

    psp: PspSettings
    servers: Mapping[str, tuple[str, str]]  # server name -> (tenant id, platform)

    @classmethod
    def from_settings(cls, settings: Any) -> PspContext:
        index = settings.server_index()
        return cls(settings.psp, {name: (tenant, srv.platform)
                                  for name, (tenant, srv) in index.items()})

    def provider(self, name: str) -> PspProviderSettings:
        cfg = self.psp.providers.get(name)
        if cfg is None:
            raise Rejected(f"payment provider {name!r} is not configured (psp.providers)", "route")
        return cfg

    def route(self, provider: str, account: PspAccount) -> tuple[str, str]:
        """(tenant, server) after checking the server belongs to the provider's tenant."""
        tenant = self.provider(provider).tenant
        owner = self.servers.get(account.server)
        if owner is None:
            raise Rejected(f"server {account.server!r} named by the {provider} payload is not in "
                           "the configuration", "route")
        if owner[0] != tenant:
            raise Rejected(f"server {account.server!r} belongs to tenant {owner[0]!r}, but "
                           f"{provider} is configured for tenant {tenant!r}", "route")
        if account.platform and account.platform not in (owner[1], "psp"):
            raise Rejected(f"the payload says platform {account.platform!r}, but server "
                           f"{account.server!r} is {owner[1]}", "route")
        return tenant, account.server


_CONTEXT_CACHE: list[tuple[Any, PspContext]] = []


def context(settings: Any) -> PspContext:
    """A PspContext from itself or from the engine's Settings (the last one is cached)."""
    if isinstance(settings, PspContext):
        return settings
    if _CONTEXT_CACHE and _CONTEXT_CACHE[0][0] is settings:
        return _CONTEXT_CACHE[0][1]
    if not (hasattr(settings, "psp") and hasattr(settings, "server_index")):
        raise TypeError("PSP readers need the engine Settings or a PspContext, "
                        f"not {type(settings).__name__} (see connectors.psp.common.psp_readers)")
    ctx = PspContext.from_settings(settings)
    _CONTEXT_CACHE[:] = [(settings, ctx)]
    return ctx


Kind = Literal["deposit", "withdrawal", "refund", "chargeback"]


@dataclass(frozen=True, slots=True)
class Payment:
    """What one notification says, provider-neutral. `amount` is a magnitude (>= 0)."""

    provider: str
    txn_id: str
    kind: Kind
    amount: Decimal
    currency: str
    status: str
    account: PspAccount
    time: datetime
    method: str = ""
    payer_name: str = ""
    country: str = ""
    instrument: str = ""
    comment: str = ""
    key_suffix: str = ""  # a reversal reported as its own transaction: ":refund"/":chargeback"
    reversal_amount: Decimal | None = None  # magnitude reversed, when not the whole amount
    book_reversal: bool = True  # False when the provider books the reversal as its own payment


SIGN = {"deposit": 1, "withdrawal": -1, "refund": -1, "chargeback": -1}


def build_ops(env: Envelope, ctx: PspContext, p: Payment) -> list[BalanceOperation]:
    """The operation for this state of the transaction, plus its reversing operation when the
    state is a chargeback or refund of a deposit/withdrawal reported on the transaction itself."""
    tenant, server = ctx.route(p.provider, p.account)
    # every provider's amount and time pass the one column/plausibility check (fields.py)
    signed = fit_decimal(p.amount * SIGN[p.kind], "amount", MONEY)
    check_time(p.time, "time")
    fp = fingerprint(tenant, ctx.psp.salt(), p.instrument)
    version = lifecycle_version(env.timestamp_ms, p.status)
    common: dict[str, Any] = {
        "tenant": tenant, "platform": "psp", "server": server, "login": p.account.login,
        "op_id": p.txn_id, "currency": p.currency, "status": p.status, "provider": p.provider,
        "method": p.method, "payer_name": mask_pans(p.payer_name)[:200],
        "instrument_fingerprint": fp, "country": p.country, "comment": mask_pans(p.comment)[:500],
        "time": p.time, "event": "add", "version": version, "is_deleted": False,
        "source": env.source,
    }
    ops = [BalanceOperation.from_checked(
        op_key=f"psp:{p.provider}:{p.txn_id}{p.key_suffix}", kind=p.kind, amount=signed, **common
    )]
    if (p.book_reversal and p.status in ("chargeback", "refunded")
            and p.kind in ("deposit", "withdrawal")):
        kind = "chargeback" if p.status == "chargeback" else "refund"
        reversed_ = p.amount if p.reversal_amount is None else p.reversal_amount
        ops.append(BalanceOperation.from_checked(
            op_key=f"psp:{p.provider}:{p.txn_id}:{kind}", kind=kind,
            amount=-reversed_ * SIGN[p.kind], **common,
        ))
    return ops


def env_time(env: Envelope) -> datetime:
    return from_epoch_ms(env.timestamp_ms)


# -- registry -----------------------------------------------------------------------------------


def provider_modules() -> dict[str, ModuleType]:
    """Provider name -> its module (imported lazily: the modules import this one)."""
    return {name: importlib.import_module(f"connectors.psp.{name}") for name in PROVIDER_NAMES}


def psp_readers(settings: Any) -> dict[str, Callable[[Envelope, Any], list[BalanceOperation]]]:
    """``{"psp.skrill": reader, ...}`` for the normaliser; each reader ignores the router it is
    given and reads with `settings` (the engine Settings, or a PspContext)."""
    ctx = context(settings)
    readers: dict[str, Callable[[Envelope, Any], list[BalanceOperation]]] = {}
    for name, module in provider_modules().items():
        read = getattr(module, f"read_{name}")

        def reader(env: Envelope, _router: Any, _read: Any = read) -> list[BalanceOperation]:
            ops: list[BalanceOperation] = _read(env, ctx)
            return ops

        readers[f"psp.{name}"] = reader
    return readers
