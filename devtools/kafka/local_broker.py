"""A real, local, single-node Apache Kafka broker (KRaft) for development and tests.

The broker jars come from Maven Central (fetched once with ``mvn`` into
``cache_dir()/kafka-<version>/libs``); the broker runs as a detached ``java`` process
whose data, logs, config and state live under ``<home>/kafka``::

    python -m devtools.kafka.local_broker up      # prints the bootstrap address
    python -m devtools.kafka.local_broker status
    python -m devtools.kafka.local_broker down
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

KAFKA_VERSION = "4.1.1"
HOST = "127.0.0.1"

_HERE = Path(str(resources.files("devtools.kafka")))  # package data: pom.xml, log4j2.properties
_POM = _HERE / "pom.xml"
_LOG4J2 = _HERE / "log4j2.properties"
_MARKER = ".complete"
_JVM_OPTS = ("-Xms256m", "-Xmx512m", "-XX:+UseG1GC", "-Djava.awt.headless=true",
             "-Dlog4j2.shutdownHookEnabled=false")  # else: "Unable to register ... hook" noise


def cache_dir() -> Path:
    """Shared download cache: ``$BROKERSTREAM_CACHE_DIR`` or ``~/.cache/brokerstream``."""
    env = os.environ.get("BROKERSTREAM_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "brokerstream"


def default_home() -> Path:
    """Data dir: ``$BROKERSTREAM_HOME`` or ``~/.local/share/brokerstream``."""
    env = os.environ.get("BROKERSTREAM_HOME")
    return Path(env).expanduser() if env else Path.home() / ".local" / "share" / "brokerstream"


def ensure_jars(progress: Callable[[str], None] = print) -> Path:
    """Return the directory holding the broker's jars, fetching them once with Maven."""
    libs = cache_dir() / f"kafka-{KAFKA_VERSION}" / "libs"
    if (libs / _MARKER).is_file():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError(
            "Maven ('mvn') is not on PATH; it is needed once to fetch the Kafka broker jars "
            "from Maven Central (e.g. `apt-get install maven`)."
        )
    libs.parent.mkdir(parents=True, exist_ok=True)
    progress(f"fetching Kafka {KAFKA_VERSION} broker jars from Maven Central (once)…")
    started = time.monotonic()
    staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=libs.parent))
    try:
        shutil.copy(_POM, staging / "pom.xml")
        out = staging / "libs"
        cmd = [mvn, "-B", "-q", "-f", str(staging / "pom.xml"), "dependency:copy-dependencies",
               f"-DoutputDirectory={out}", "-DincludeScope=runtime"]
        proc = subprocess.run(cmd, cwd=staging, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"mvn failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")
        jars = sorted(p.name for p in out.glob("*.jar"))
        slf4j = [j for j in jars if j.startswith("slf4j-api-")]
        if not any(j.startswith(f"kafka_2.13-{KAFKA_VERSION}") for j in jars) or len(slf4j) != 1:
            raise RuntimeError(f"unexpected jar set from mvn: {jars}")
        (out / _MARKER).write_text("\n".join(jars) + "\n")
        if libs.exists():  # an incomplete earlier attempt
            shutil.rmtree(libs)
        try:
            out.rename(libs)
        except OSError:
            if not (libs / _MARKER).is_file():  # lost a race only if the winner finished
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    progress(f"fetched {len(jars)} jars in {time.monotonic() - started:.1f}s into {libs}")
    return libs


@dataclass
class BrokerState:
    """What ``state.json`` records about a running broker."""

    pid: int
    port: int
    controller_port: int
    data_dir: str
    bootstrap: str
    started_at: float  # unix time

    @classmethod
    def load(cls, path: Path) -> BrokerState | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(path)


class LocalKafka:
    """One broker per ``home``; everything lives in ``home/kafka``."""

    def __init__(self, home: Path, progress: Callable[[str], None] = print) -> None:
        self.home = Path(home).expanduser().resolve()
        self.root = self.home / "kafka"
        self.data_dir = self.root / "data"
        self.logs_dir = self.root / "logs"
        self.state_file = self.root / "state.json"
        self.config_file = self.root / "server.properties"
        self.cluster_id_file = self.root / "cluster_id"
        self.progress = progress

    def status(self) -> BrokerState | None:
        """The running broker's state, or None (a stale state file is removed)."""
        state = BrokerState.load(self.state_file)
        if state is None or _is_broker(state.pid):
            return state
        self.state_file.unlink(missing_ok=True)
        return None

    def start(self, port: int | None = None, timeout_s: float = 60) -> BrokerState:
        """Start the broker (or return the already running one) and wait until it answers."""
        with self._lock():
            running = self.status()
            if running is not None:
                if _wait_ready(running.bootstrap, running.pid, timeout_s):
                    return running
                self._kill(running.pid, timeout_s=5)
            libs = ensure_jars(self.progress)
            for d in (self.data_dir, self.logs_dir):
                d.mkdir(parents=True, exist_ok=True)
            if port and not _bind(port):
                raise RuntimeError(f"port {HOST}:{port} is already in use")
            # Reuse the ports of the previous run when they are free (the data dir persists).
            old = _read_properties(self.config_file)
            port = port or _reuse_or_free_port(_listener_port(old, "PLAINTEXT"))
            cport = _reuse_or_free_port(_listener_port(old, "CONTROLLER"), avoid=port)
            self._write_config(port, cport)
            if not (self.data_dir / "meta.properties").exists():
                self._format(libs)
            log_start = _size(self.logs_dir / "server.log")
            pid = self._spawn(libs)
            state = BrokerState(pid, port, cport, str(self.data_dir), f"{HOST}:{port}",
                                time.time())
            state.save(self.state_file)
            if not _wait_ready(state.bootstrap, pid, timeout_s):
                why = f"was not ready after {timeout_s:g}s" if _is_broker(pid) else "exited"
                self._kill(pid, timeout_s=5)
                raise RuntimeError(f"Kafka broker {why}:\n{self._log_report(log_start)}")
            return state

    def stop(self, timeout_s: float = 30) -> bool:
        """SIGTERM the broker's process group (SIGKILL after timeout); True if one was running."""
        with self._lock():
            state = self.status()
            if state is None:
                return False
            self._kill(state.pid, timeout_s)
            return True

    # -- internals ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield

    def _kill(self, pid: int, timeout_s: float) -> None:
        for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)  # spawned with setsid: pgid == pid
            deadline = time.monotonic() + wait_s
            while _is_broker(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if not _is_broker(pid):
                break
        self.state_file.unlink(missing_ok=True)

    def _write_config(self, port: int, cport: int) -> None:
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"{HOST}:{cport}",
            "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{cport}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "4",
            # Keep everything: raw events carry their platform event time as the message
            # timestamp, and time-based retention deletes a segment by its newest timestamp,
            # so history published with old timestamps would vanish at the next retention check.
            "log.retention.ms": "-1",
            "log.retention.bytes": "-1",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
        }
        text = "".join(f"{k}={v}\n" for k, v in props.items())
        self.config_file.write_text(f"# written by devtools.kafka.local_broker\n{text}")

    def _format(self, libs: Path) -> None:
        if not self.cluster_id_file.is_file():
            self.cluster_id_file.write_text(_random_cluster_id() + "\n")
        cluster_id = self.cluster_id_file.read_text().strip()
        cmd = [*self._java(libs), "kafka.tools.StorageTool", "format", "--standalone",
               "-t", cluster_id, "-c", str(self.config_file)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"formatting Kafka storage failed:\n{proc.stdout}{proc.stderr}")

    def _spawn(self, libs: Path) -> int:
        """Start the broker detached in its own session (pgid == pid); return its pid.

        ``posix_spawn`` rather than ``Popen(start_new_session=True)``: the broker outlives
        us on purpose, and a dropped Popen warns "subprocess ... is still running"
        (ResourceWarning). ``_is_broker`` reaps it if it exits while we are alive.
        """
        cmd = [*self._java(libs), f"-XX:ErrorFile={self.logs_dir}/hs_err_pid%p.log",
               "kafka.Kafka", str(self.config_file)]
        log_flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        return os.posix_spawn(cmd[0], cmd, os.environ, setsid=True, file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(self.logs_dir / "stdout.log"), log_flags, 0o644),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ])

    def _java(self, libs: Path) -> list[str]:
        java_home = os.environ.get("JAVA_HOME")
        java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
        if java is None:
            raise RuntimeError("'java' (17+) is not on PATH and JAVA_HOME is not set")
        return [java, *_JVM_OPTS, f"-Dlog4j2.configurationFile={_LOG4J2}",
                f"-Dkafka.logs.dir={self.logs_dir}", "-cp", f"{libs}/*"]

    def _log_report(self, server_log_start: int, lines: int = 30) -> str:
        """This run's ERROR/FATAL lines and causes, then the last lines of both logs."""
        parts = []
        server_log = self.logs_dir / "server.log"
        if server_log.is_file():
            with open(server_log, "rb") as fh:
                fh.seek(server_log_start)
                run = fh.read().decode(errors="replace").splitlines()
            errors = [ln for ln in run if re.search(r"\b(ERROR|FATAL)\b|^Caused by:", ln)]
            if errors:
                parts.append("errors in this run:\n" + "\n".join(errors[:15]))
        for path in (server_log, self.logs_dir / "stdout.log"):
            text = path.read_text(errors="replace") if path.is_file() else ""
            if text.strip():
                parts.append(f"--- last lines of {path} ---\n"
                             + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(parts) or "(no broker log output)"


# -- helpers -----------------------------------------------------------------------------------


@contextlib.contextmanager
def running(home: Path, progress: Callable[[str], None] = print) -> Iterator[BrokerState]:
    """A local broker under `home` for the length of a `with` block (benchmarks): the jars
    fetched if needed, the broker started, and stopped on the way out."""
    ensure_jars(progress)
    broker = LocalKafka(home, progress)
    try:
        yield broker.start()
    finally:
        broker.stop()


def _is_broker(pid: int) -> bool:
    """Is ``pid`` a live (non-zombie) Kafka broker process?"""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our own child that has exited: reap it
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # guard against pid reuse; an empty cmdline is a zombie or a child not yet exec'd
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        zombie = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return sys.platform != "linux"  # no /proc to check against: trust the pid
    return not zombie and (not cmdline or b"kafka.Kafka" in cmdline)


def _wait_ready(bootstrap: str, pid: int, timeout_s: float) -> bool:
    """Poll until the broker at ``bootstrap`` serves metadata (False if it dies or times out)."""
    host, port = bootstrap.rsplit(":", 1)
    deadline = time.monotonic() + timeout_s
    admin: AdminClient | None = None
    while time.monotonic() < deadline and _is_broker(pid):
        if admin is None:  # avoid librdkafka's connection-refused noise while the JVM boots
            with contextlib.suppress(OSError), socket.create_connection((host, int(port)), 1):
                admin = AdminClient({"bootstrap.servers": bootstrap})
        if admin is not None:
            with contextlib.suppress(KafkaException):
                if admin.list_topics(timeout=2).brokers:
                    return True
        time.sleep(0.2)
    return False


def _random_cluster_id() -> str:
    """Same format as ``StorageTool random-uuid`` (base64url of a random UUID, no padding)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _bind(port: int) -> int | None:
    """Bind ``port`` (0: any) like the JVM does; return the bound port or None if taken."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return None
        bound: int = s.getsockname()[1]
        return bound


def _reuse_or_free_port(previous: int | None, avoid: int | None = None) -> int:
    """``previous`` if it can still be bound, else a fresh ephemeral port (never ``avoid``)."""
    if previous and previous != avoid and _bind(previous):
        return previous
    while (port := _bind(0)) is None or port == avoid:
        pass
    return port


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0


def _read_properties(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs if not k.lstrip().startswith("#")}


def _listener_port(props: Mapping[str, str], name: str) -> int | None:
    for listener in props.get("listeners", "").split(","):
        if listener.startswith(f"{name}://"):
            return int(listener.rsplit(":", 1)[1])
    return None


def _print_state(state: BrokerState, kafka: LocalKafka) -> None:
    print(f"Kafka {KAFKA_VERSION} broker running")
    print(f"  bootstrap: {state.bootstrap}")
    print(f"  pid:       {state.pid}")
    print(f"  data dir:  {state.data_dir}")
    print(f"  logs:      {kafka.logs_dir}")


def main(argv: list[str] | None = None) -> int:
    home_opt = argparse.ArgumentParser(add_help=False)
    home_opt.add_argument("--home", type=Path, default=None,
                          help="brokerstream data dir (default: $BROKERSTREAM_HOME or "
                               "~/.local/share/brokerstream)")
    parser = argparse.ArgumentParser(prog="kafka", description="Local Apache Kafka broker")
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", parents=[home_opt], help="start the broker (if not running)")
    up.add_argument("--port", type=int, default=None, help="PLAINTEXT port (default: free)")
    up.add_argument("--timeout", type=float, default=60, help="seconds to wait for start-up")
    sub.add_parser("down", parents=[home_opt], help="stop the broker")
    sub.add_parser("status", parents=[home_opt], help="show whether the broker is running")
    sub.add_parser("fetch", help="only download the broker jars")
    args = parser.parse_args(argv)

    try:
        if args.cmd == "fetch":
            print(ensure_jars())
            return 0
        kafka = LocalKafka(args.home or default_home())
        if args.cmd == "up":
            t0 = time.monotonic()
            state = kafka.start(port=args.port, timeout_s=args.timeout)
            _print_state(state, kafka)
            print(f"  ready in:  {time.monotonic() - t0:.1f}s")
            return 0
        if args.cmd == "down":
            print("stopped" if kafka.stop() else "not running")
            return 0
        running = kafka.status()
        if running is None:
            print("not running")
            return 3  # LSB "program is not running", as `brokerstream kafka status`
        _print_state(running, kafka)
        return 0
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
