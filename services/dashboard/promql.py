"""A small PromQL evaluator over this process's prometheus_client registry.

The built-in dashboard page has no Prometheus server, yet the engine-health dashboard is written
in PromQL for Grafana. The page runs in the engine's process, so it can read the same metrics
from `prometheus_client.REGISTRY`: `MetricHistory` keeps samples of it (every few seconds, for
an hour) and `evaluate_range` / `evaluate_instant` compute the subset of PromQL the dashboards
use:

* selectors with label matchers: ``m``, ``m{a="x", b!="y", c=~"re", d!~"re"}``;
* ``rate``, ``irate``, ``increase`` of a range selector ``m[5m]``, and ``*_over_time``
  (avg, min, max, sum, count, last);
* aggregations ``sum avg min max count`` with ``by (...)`` / ``without (...)`` on either side,
  ``topk`` / ``bottomk``;
* ``histogram_quantile(q, ...)``;
* arithmetic ``+ - * /`` between scalars and vectors (vector-vector matched on identical labels).

Anything else raises `Unsupported`: the page shows such a panel with a "needs Prometheus" note
instead of a wrong chart. Rates are not extrapolated to the window edges as Prometheus does;
with samples every few seconds the difference is small.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import REGISTRY, CollectorRegistry

Labels = tuple[tuple[str, str], ...]  # sorted (name, value) pairs, __name__ included for selectors
Vector = dict[Labels, float]
Value = float | Vector
Samples = dict[Labels, list[tuple[float, float]]]  # per series, (time, value) in time order

LOOKBACK_S = 300.0  # an instant selector sees the newest sample at most this old (as Prometheus)


class Unsupported(ValueError):
    """The expression is valid PromQL (or not), but outside the subset evaluated here."""


# ---- samples ---------------------------------------------------------------------------

class MetricHistory:
    """Samples of a registry kept for `retention_s`: one shared list of sample times and, per
    series, the values aligned with it (NaN where the series did not exist yet or any more).
    About 8 bytes per series per sample."""

    def __init__(self, registry: CollectorRegistry | Sequence[CollectorRegistry] = REGISTRY, *,
                 retention_s: float = 3600.0, min_interval_s: float = 1.0,
                 clock: Callable[[], float] = time.time) -> None:
        # several registries: the webhook receiver keeps its metrics in one of its own
        self.registries = [registry] if isinstance(registry, CollectorRegistry) else list(registry)
        self.retention_s = retention_s
        self.min_interval_s = min_interval_s
        self.clock = clock
        self.times: deque[float] = deque()
        self.series: dict[Labels, deque[float]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def sample(self, force: bool = False) -> None:
        """Read the registry now (unless the last sample is younger than `min_interval_s`)."""
        now = self.clock()
        with self._lock:
            if not force and self.times and now - self.times[-1] < self.min_interval_s:
                return
            current: dict[Labels, float] = {}
            families = (f for registry in self.registries for f in registry.collect())
            for family in families:
                for s in family.samples:
                    if s.name.endswith("_created"):  # creation timestamps: not worth keeping
                        continue
                    key = tuple(sorted({**s.labels, "__name__": s.name}.items()))
                    current[key] = float(s.value)
            n = len(self.times)
            for key in current.keys() - self.series.keys():
                self.series[key] = deque([math.nan] * n)
            self.times.append(now)
            for key, values in self.series.items():
                values.append(current.get(key, math.nan))
            while self.times and self.times[0] < now - self.retention_s:
                self.times.popleft()
                for values in self.series.values():
                    values.popleft()

    def start(self, interval_s: float = 5.0) -> None:
        """Sample in a daemon thread, so rates exist before anyone opens the page."""
        if self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.is_set():
                with contextlib.suppress(Exception):  # a broken collector must not end sampling
                    self.sample()
                self._stop.wait(interval_s)

        self._thread = threading.Thread(target=loop, name="metric-history", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def span(self) -> tuple[float, float] | None:
        with self._lock:
            return (self.times[0], self.times[-1]) if self.times else None

    def select(self, matchers: list[Matcher], start: float, end: float) -> Samples:
        """(time, value) samples in [start, end] of every series the matchers select."""
        with self._lock:
            times = list(self.times)
            lo = _bisect_left(times, start)
            hi = _bisect_right(times, end)
            found: Samples = {}
            for key, values in self.series.items():
                labels = dict(key)
                if not all(m.matches(labels.get(m.name, "")) for m in matchers):
                    continue
                points = [(times[i], values[i]) for i in range(lo, hi) if not math.isnan(values[i])]
                if points:
                    found[key] = points
            return found


def _bisect_left(times: list[float], t: float) -> int:
    lo, hi = 0, len(times)
    while lo < hi:
        mid = (lo + hi) // 2
        if times[mid] < t:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _bisect_right(times: list[float], t: float) -> int:
    lo, hi = 0, len(times)
    while lo < hi:
        mid = (lo + hi) // 2
        if times[mid] <= t:
            lo = mid + 1
        else:
            hi = mid
    return lo


# ---- syntax ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Matcher:
    name: str
    op: str  # = != =~ !~
    value: str

    def matches(self, actual: str) -> bool:
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        hit = re.fullmatch(self.value, actual) is not None  # PromQL regexes are anchored
        return hit if self.op == "=~" else not hit


@dataclass(frozen=True)
class Number:
    value: float


@dataclass(frozen=True)
class Selector:
    matchers: list[Matcher]
    range_s: float | None = None


@dataclass(frozen=True)
class Call:
    func: str
    args: list[Node]


@dataclass(frozen=True)
class Aggregate:
    op: str
    expr: Node
    grouping: list[str] = field(default_factory=list)
    without: bool = False
    param: Node | None = None


@dataclass(frozen=True)
class Binary:
    op: str
    lhs: Node
    rhs: Node


Node = Number | Selector | Call | Aggregate | Binary

AGGREGATIONS = {"sum", "avg", "min", "max", "count", "topk", "bottomk"}
RANGE_FUNCTIONS = {"rate", "irate", "increase", "avg_over_time", "min_over_time", "max_over_time",
                   "sum_over_time", "count_over_time", "last_over_time"}
_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<duration>\d+(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*)(?![\w.])
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|(?:Inf|NaN)(?![\w:]))
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^(){}\[\],=<>])
""", re.VERBOSE)
_DURATION_PART = re.compile(r"(\d+)(ms|[smhdwy])")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def parse_duration(text: str) -> float:
    return sum(int(n) * _UNIT_S[unit] for n, unit in _DURATION_PART.findall(text))


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise Unsupported(f"cannot read {text[pos:pos + 20]!r}")
        pos = m.end()
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append((kind, m.group()))
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.pos = 0

    def peek(self) -> str:
        return self.toks[self.pos][1] if self.pos < len(self.toks) else ""

    def kind(self) -> str:
        return self.toks[self.pos][0] if self.pos < len(self.toks) else ""

    def take(self, expected: str | None = None) -> str:
        if self.pos >= len(self.toks):
            raise Unsupported("unexpected end of expression")
        tok = self.toks[self.pos][1]
        if expected is not None and tok != expected:
            raise Unsupported(f"expected {expected!r}, found {tok!r}")
        self.pos += 1
        return tok

    def parse(self) -> Node:
        node = self.additive()
        if self.pos != len(self.toks):
            raise Unsupported(f"unsupported syntax at {self.peek()!r}")
        return node

    def additive(self) -> Node:
        node = self.multiplicative()
        while self.peek() in ("+", "-"):
            op = self.take()
            node = Binary(op, node, self.multiplicative())
        return node

    def multiplicative(self) -> Node:
        node = self.unary()
        while self.peek() in ("*", "/"):
            op = self.take()
            node = Binary(op, node, self.unary())
        if self.peek() in ("%", "^", "==", "!=", ">", "<", ">=", "<=") or self.peek() in (
                "and", "or", "unless", "on", "ignoring", "group_left", "group_right", "offset", "@"):
            raise Unsupported(f"operator {self.peek()!r}")
        return node

    def unary(self) -> Node:
        if self.peek() == "-":
            self.take()
            return Binary("*", Number(-1.0), self.unary())
        return self.primary()

    def primary(self) -> Node:
        tok, kind = self.peek(), self.kind()
        if tok == "(":
            self.take()
            node = self.additive()
            self.take(")")
            return node
        if kind == "number":
            self.take()
            return Number(float(tok.replace("Inf", "inf")))
        if kind == "ident":
            if tok in AGGREGATIONS:
                return self.aggregate()
            if self.pos + 1 < len(self.toks) and self.toks[self.pos + 1][1] == "(":
                return self.call()
            return self.selector()
        if tok == "{":
            return self.selector()
        raise Unsupported(f"unexpected {tok!r}" if tok else "empty expression")

    def grouping(self) -> tuple[list[str], bool]:
        without = self.take() == "without"
        self.take("(")
        labels: list[str] = []
        while self.peek() != ")":
            labels.append(self.take())
            if self.peek() == ",":
                self.take()
        self.take(")")
        return labels, without

    def aggregate(self) -> Node:
        op = self.take()
        grouping: list[str] = []
        without = False
        if self.peek() in ("by", "without"):
            grouping, without = self.grouping()
        self.take("(")
        param = None
        if op in ("topk", "bottomk"):
            param = self.additive()
            self.take(",")
        expr = self.additive()
        self.take(")")
        if self.peek() in ("by", "without"):
            grouping, without = self.grouping()
        return Aggregate(op, expr, grouping, without, param)

    def call(self) -> Node:
        func = self.take()
        if func not in RANGE_FUNCTIONS and func != "histogram_quantile":
            raise Unsupported(f"function {func}()")
        self.take("(")
        args: list[Node] = []
        while self.peek() != ")":
            args.append(self.additive())
            if self.peek() == ",":
                self.take()
        self.take(")")
        if func in RANGE_FUNCTIONS:
            if len(args) != 1 or not isinstance(args[0], Selector) or args[0].range_s is None:
                raise Unsupported(f"{func}() of anything but a range selector")
        elif len(args) != 2 or not isinstance(args[0], Number):
            raise Unsupported("histogram_quantile(q, vector) with a constant q")
        return Call(func, args)

    def selector(self) -> Node:
        matchers: list[Matcher] = []
        if self.kind() == "ident":
            matchers.append(Matcher("__name__", "=", self.take()))
        if self.peek() == "{":
            self.take()
            while self.peek() != "}":
                name = self.take()
                op = self.take()
                if op not in ("=", "!=", "=~", "!~"):
                    raise Unsupported(f"label matcher operator {op!r}")
                raw = self.take()
                if raw[:1] not in ("'", '"'):
                    raise Unsupported(f"label value {raw!r} is not a string")
                matchers.append(Matcher(name, op, _unquote(raw)))
                if self.peek() == ",":
                    self.take()
            self.take("}")
        if not matchers:
            raise Unsupported("a selector without a metric name or labels")
        range_s = None
        if self.peek() == "[":
            self.take()
            if self.kind() != "duration":
                raise Unsupported(f"range {self.peek()!r} (subqueries are not supported)")
            range_s = parse_duration(self.take())
            self.take("]")
        return Selector(matchers, range_s)


def _unquote(raw: str) -> str:
    body = raw[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


def parse(expr: str, *, interval_s: float = 60.0, scrape_s: float = 5.0) -> Node:
    """Parse `expr`; Grafana's `$__rate_interval`, `$__interval` and `$__range`-free forms
    are expanded first. Raises `Unsupported` outside the subset."""
    # Grafana's $__rate_interval: at least four scrapes, so a rate always has two samples
    rate_interval = f"{math.ceil(max(4 * scrape_s, interval_s + scrape_s))}s"
    interval = f"{math.ceil(interval_s)}s"
    text = (expr.replace("${__rate_interval}", rate_interval).replace("$__rate_interval", rate_interval)
                .replace("${__interval}", interval).replace("$__interval", interval))
    if "$" in text:
        raise Unsupported("a template variable in the expression")
    return _Parser(text).parse()


# ---- evaluation ------------------------------------------------------------------------

def _drop_name(labels: Labels) -> Labels:
    return tuple(p for p in labels if p[0] != "__name__")


def _range_value(func: str, points: list[tuple[float, float]], range_s: float) -> float | None:
    if func in ("rate", "increase", "irate"):
        if len(points) < 2:
            return None
        if func == "irate":
            (t0, v0), (t1, v1) = points[-2], points[-1]
            return (v1 - v0 if v1 >= v0 else v1) / (t1 - t0) if t1 > t0 else None
        increase = 0.0
        for (_, prev), (_, cur) in itertools.pairwise(points):
            increase += cur - prev if cur >= prev else cur  # a counter reset starts from 0
        elapsed = points[-1][0] - points[0][0]
        if elapsed <= 0:
            return None
        per_s = increase / elapsed
        return per_s if func == "rate" else per_s * range_s
    values = [v for _, v in points]
    return {
        "avg_over_time": lambda: sum(values) / len(values),
        "min_over_time": lambda: min(values),
        "max_over_time": lambda: max(values),
        "sum_over_time": lambda: sum(values),
        "count_over_time": lambda: float(len(values)),
        "last_over_time": lambda: values[-1],
    }[func]()


def _bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus' histogram_quantile on (upper bound, cumulative count) pairs."""
    buckets.sort()
    if len(buckets) < 2 or buckets[-1][0] != math.inf:
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    total = buckets[-1][1]
    if total <= 0:
        return math.nan
    rank = q * total
    for i, (upper, count) in enumerate(buckets):
        if count >= rank:
            if upper == math.inf:
                return buckets[-2][0]
            lower, below = (0.0, 0.0) if i == 0 else buckets[i - 1]
            if i == 0 and upper <= 0:
                return upper
            in_bucket = count - below
            return lower + (upper - lower) * ((rank - below) / in_bucket if in_bucket else 0.0)
    return buckets[-2][0]


def _group_key(labels: Labels, grouping: list[str], without: bool) -> Labels:
    if without:
        return tuple(p for p in labels if p[0] not in grouping and p[0] != "__name__")
    return tuple(p for p in labels if p[0] in grouping)


def _aggregate(node: Aggregate, vec: Vector, k: float | None) -> Vector:
    if node.op in ("topk", "bottomk"):
        count = int(k or 0)
        groups_k: dict[Labels, list[tuple[float, Labels]]] = {}
        for labels, v in vec.items():
            groups_k.setdefault(_group_key(labels, node.grouping, node.without), []).append((v, labels))
        out: Vector = {}
        for items in groups_k.values():
            items.sort(key=lambda it: it[0], reverse=node.op == "topk")
            out.update({labels: v for v, labels in items[:count]})
        return out
    groups: dict[Labels, list[float]] = {}
    for labels, v in vec.items():
        groups.setdefault(_group_key(labels, node.grouping, node.without), []).append(v)
    reduce: dict[str, Callable[[list[float]], float]] = {
        "sum": sum, "min": min, "max": max, "count": lambda vs: float(len(vs)),
        "avg": lambda vs: sum(vs) / len(vs),
    }
    return {key: reduce[node.op](values) for key, values in groups.items()}


def _arith(op: str, a: float, b: float) -> float:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:
        return math.nan if a == 0 else math.copysign(math.inf, a)
    return a / b


class _Preloaded:
    """A range query's view of the history: each selector's series read once for the whole
    range, then sliced per step (instead of scanning every series at every step)."""

    def __init__(self, history: MetricHistory, start: float, end: float) -> None:
        self.history, self.start, self.end = history, start, end
        self._cache: dict[tuple[Matcher, ...], dict[Labels, tuple[list[float], list[float]]]] = {}

    def select(self, matchers: list[Matcher], lo: float, hi: float) -> Samples:
        key = tuple(matchers)
        if key not in self._cache:
            found = self.history.select(matchers, self.start, self.end)
            self._cache[key] = {k: ([t for t, _ in pts], [v for _, v in pts]) for k, pts in found.items()}
        out: Samples = {}
        for labels, (times, values) in self._cache[key].items():
            i, j = _bisect_left(times, lo), _bisect_right(times, hi)
            if j > i:
                out[labels] = list(zip(times[i:j], values[i:j], strict=True))
        return out


class _Source(Protocol):
    def select(self, matchers: list[Matcher], lo: float, hi: float) -> Samples: ...


def evaluate(node: Node, history: _Source, t: float) -> Value:
    """The value of `node` at time `t`: a float (scalar) or an instant vector."""
    if isinstance(node, Number):
        return node.value
    if isinstance(node, Selector):
        if node.range_s is not None:
            raise Unsupported("a range selector outside rate() and the *_over_time functions")
        found = history.select(node.matchers, t - LOOKBACK_S, t)
        return {labels: points[-1][1] for labels, points in found.items()}
    if isinstance(node, Call):
        if node.func == "histogram_quantile":
            q = node.args[0].value  # type: ignore[union-attr]  # checked by the parser
            inner = evaluate(node.args[1], history, t)
            if not isinstance(inner, dict):
                raise Unsupported("histogram_quantile of a scalar")
            by_series: dict[Labels, list[tuple[float, float]]] = {}
            for labels, v in inner.items():
                le = dict(labels).get("le")
                if le is None:
                    continue
                rest = tuple(p for p in _drop_name(labels) if p[0] != "le")
                by_series.setdefault(rest, []).append((float(le.replace("Inf", "inf")), v))
            return {k: _bucket_quantile(q, b) for k, b in by_series.items()}
        sel = node.args[0]
        assert isinstance(sel, Selector) and sel.range_s is not None  # checked by the parser
        out: Vector = {}
        for labels, points in history.select(sel.matchers, t - sel.range_s, t).items():
            value = _range_value(node.func, points, sel.range_s)
            if value is not None:
                out[_drop_name(labels)] = value
        return out
    if isinstance(node, Aggregate):
        inner = evaluate(node.expr, history, t)
        if not isinstance(inner, dict):
            raise Unsupported(f"{node.op}() of a scalar")
        k = evaluate(node.param, history, t) if node.param is not None else None
        if isinstance(k, dict):
            raise Unsupported(f"{node.op}() with a vector parameter")
        return _aggregate(node, inner, k)
    lhs, rhs = evaluate(node.lhs, history, t), evaluate(node.rhs, history, t)
    if isinstance(lhs, float) and isinstance(rhs, float):
        return _arith(node.op, lhs, rhs)
    if isinstance(lhs, dict) and isinstance(rhs, dict):
        right = {_drop_name(k): v for k, v in rhs.items()}
        return {_drop_name(k): _arith(node.op, v, right[_drop_name(k)])
                for k, v in lhs.items() if _drop_name(k) in right}
    if isinstance(lhs, dict):
        assert isinstance(rhs, float)
        return {_drop_name(k): _arith(node.op, v, rhs) for k, v in lhs.items()}
    assert isinstance(lhs, float) and isinstance(rhs, dict)
    return {_drop_name(k): _arith(node.op, lhs, v) for k, v in rhs.items()}


def _as_vector(value: Value) -> Vector:
    return value if isinstance(value, dict) else {(): value}


def evaluate_instant(expr: str | Node, history: MetricHistory, t: float, *,
                     interval_s: float = 60.0) -> list[tuple[Labels, float]]:
    node = parse(expr, interval_s=interval_s) if isinstance(expr, str) else expr
    vec = _as_vector(evaluate(node, history, t))
    return sorted((k, v) for k, v in vec.items() if math.isfinite(v))


def evaluate_range(expr: str | Node, history: MetricHistory, start: float, end: float,
                   step: float) -> dict[Labels, list[tuple[float, float]]]:
    """Evaluate at start, start + step, ... end (Prometheus' range query); non-finite values
    (a quantile of an empty histogram, 0/0) are left out, as gaps."""
    node = parse(expr, interval_s=step) if isinstance(expr, str) else expr
    out: dict[Labels, list[tuple[float, float]]] = {}
    if end < start or step <= 0:
        return out
    steps = int((end - start) // step) + 1
    widest = max([LOOKBACK_S, *_ranges(node)])
    source = _Preloaded(history, start - widest, end)
    for i in range(steps):
        t = start + i * step
        for labels, v in _as_vector(evaluate(node, source, t)).items():
            if math.isfinite(v):
                out.setdefault(labels, []).append((t, v))
    return out


def _selectors(node: Node) -> Iterable[Selector]:
    """Every selector in an expression, depth first."""
    if isinstance(node, Selector):
        yield node
    elif isinstance(node, Call):
        for arg in node.args:
            yield from _selectors(arg)
    elif isinstance(node, Aggregate):
        yield from _selectors(node.expr)
    elif isinstance(node, Binary):
        yield from _selectors(node.lhs)
        yield from _selectors(node.rhs)


def _ranges(node: Node) -> Iterable[float]:
    return (s.range_s for s in _selectors(node) if s.range_s is not None)


def series_name(labels: Labels, legend: str | None = None) -> str:
    """A series' legend: Grafana's `{{label}}` template when given, else its one label's value,
    else `label=value, ...`, else the metric name."""
    values = dict(labels)
    if legend:
        return re.sub(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}", lambda m: values.get(m.group(1), ""),
                      legend)
    shown = [(k, v) for k, v in labels if k != "__name__"]
    if len(shown) == 1:
        return shown[0][1]
    if shown:
        return ", ".join(f"{k}={v}" for k, v in shown)
    return values.get("__name__", "")  # `sum(...)`: no labels, no name (the page shows none)


def metric_names(node: Node) -> Iterable[str]:
    """The metric names a parsed expression reads (for tests and messages)."""
    for selector in _selectors(node):
        yield from (m.value for m in selector.matchers if m.name == "__name__" and m.op == "=")
