"""The embedded local broker: real Apache Kafka in KRaft mode, run from the jars Maven fetched.

``c360 kafka start|stop|status`` and the test fixtures both use :class:`LocalKafka`. Its state (server
properties, data, log, pid) lives under ``<state_dir>/kafka``.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from lakehouse.config import Config
from lakehouse.errors import C360Error
from lakehouse.jars import JVM_DIR, ensure_jars, jar_dir, require_tool
from lakehouse.kafka_security import jaas_quote

log = logging.getLogger(__name__)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (for tests and throwaway brokers)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child (ours, not yet reaped) counts as dead.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap: str
    log_file: Path

    def describe(self) -> str:
        if self.running:
            return f"local Kafka broker running at {self.bootstrap} (pid {self.pid}); log: {self.log_file}"
        return f"local Kafka broker not running (would listen at {self.bootstrap}); log: {self.log_file}"


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, base64url without padding, like Kafka's ``Uuid.randomUuid()`` —
    which, like this, never returns one starting with "-": the storage tool would read it as an option
    (about 1 start in 64 failed with "argument --cluster-id/-t: expected one argument" before)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class LocalKafka:
    """A single-node Kafka broker+controller on this machine.

    Args:
        state_dir: the c360 state folder; the broker keeps its files in ``<state_dir>/kafka``.
        host: the address it listens and advertises on (localhost unless configured otherwise).
        port: the client port; controller_port: the KRaft controller port.
        heap: the broker JVM's maximum heap.
        home: where the broker keeps its files (default ``<state_dir>/kafka``); the jars always come from
            ``<state_dir>/jars/kafka``.
        sasl_port, sasl_users: also listen on ``sasl_port`` for SASL_PLAINTEXT clients (mechanism PLAIN) with
            these users (name -> password): a broker to try c360's SASL settings against (the tests do).
        ssl_port, ssl_keystore: also listen on ``ssl_port`` for SASL_SSL clients (TLS, then the same users), with
            the private key and certificate chain in the PEM file ``ssl_keystore``.
    """

    def __init__(self, state_dir: str | Path, host: str, port: int, controller_port: int, heap: str = "1g",
                 home: str | Path | None = None, sasl_port: int | None = None,
                 sasl_users: dict[str, str] | None = None, ssl_port: int | None = None,
                 ssl_keystore: str | Path | None = None):
        if ssl_port and not (ssl_keystore and sasl_users):
            raise ValueError("a SASL_SSL listener needs ssl_keystore and sasl_users")
        self.sasl_port, self.sasl_users = sasl_port, dict(sasl_users or {})
        self.ssl_port, self.ssl_keystore = ssl_port, ssl_keystore
        self.state_dir = Path(state_dir).resolve()
        self.home = Path(home).resolve() if home else self.state_dir / "kafka"
        self.host, self.port, self.controller_port, self.heap = host, port, controller_port, heap
        self.props_file = self.home / "server.properties"
        self.data_dir = self.home / "data"
        self.log_file = self.home / "broker.log"
        self.pid_file = self.home / "broker.pid"

    @classmethod
    def from_config(cls, cfg: Config) -> LocalKafka:
        k = cfg.kafka
        return cls(cfg.lake.state_dir, k.local_host, k.local_port, k.local_controller_port)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def sasl_bootstrap(self) -> str | None:
        return f"{self.host}:{self.sasl_port}" if self.sasl_port else None

    @property
    def ssl_bootstrap(self) -> str | None:
        return f"{self.host}:{self.ssl_port}" if self.ssl_port else None

    def _pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def status(self) -> BrokerStatus:
        pid = self._pid()
        return BrokerStatus(pid is not None and port_open(self.host, self.port), pid, self.bootstrap, self.log_file)

    def server_properties(self) -> str:
        c = f"{self.host}:{self.controller_port}"
        clients = [f"PLAINTEXT://{self.host}:{self.port}"]
        if self.sasl_port:
            clients.append(f"SASL_PLAINTEXT://{self.host}:{self.sasl_port}")
        if self.ssl_port:
            clients.append(f"SASL_SSL://{self.host}:{self.ssl_port}")
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{c}",
            "listeners": ",".join([*clients, f"CONTROLLER://{c}"]),
            "advertised.listeners": ",".join(clients),
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "3",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "log.retention.hours": "168",
        }
        users = " ".join(f"user_{name}={jaas_quote(pw)}" for name, pw in self.sasl_users.items())
        jaas = f"org.apache.kafka.common.security.plain.PlainLoginModule required {users};"
        protocols = ["CONTROLLER:PLAINTEXT", "PLAINTEXT:PLAINTEXT"]
        if self.sasl_port:
            protocols.append("SASL_PLAINTEXT:SASL_PLAINTEXT")
            props["listener.name.sasl_plaintext.plain.sasl.jaas.config"] = jaas
        if self.ssl_port:
            protocols.append("SASL_SSL:SASL_SSL")
            props |= {"listener.name.sasl_ssl.plain.sasl.jaas.config": jaas,
                      "listener.name.sasl_ssl.ssl.keystore.type": "PEM",
                      "listener.name.sasl_ssl.ssl.keystore.location": str(Path(self.ssl_keystore).resolve())}
        if self.sasl_port or self.ssl_port:
            props |= {"listener.security.protocol.map": ",".join(protocols), "sasl.enabled.mechanisms": "PLAIN"}
        return "".join(f"{k}={v}\n" for k, v in props.items())

    def _java_cmd(self, main: str, *args: str) -> list[str]:
        java = require_tool("java", "to run the local Kafka broker")
        classpath = str(jar_dir(self.state_dir, "kafka") / "*")
        return [
            java, f"-Xmx{self.heap}", "-Xms256m", "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={JVM_DIR / 'log4j2-kafka.properties'}",
            "-cp", classpath, main, *args,
        ]

    def _format_once(self) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        cmd = self._java_cmd("kafka.tools.StorageTool", "format", "-t", new_cluster_id(), "-c", str(self.props_file))
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise C360Error(f"could not format the Kafka storage in {self.data_dir}: {tail[0]}")

    def start(self, timeout: float = 90.0) -> BrokerStatus:
        """Start the broker and wait until it serves clients; a running broker is left as it is."""
        current = self.status()
        if current.running:
            log.info("local Kafka broker already running at %s", self.bootstrap)
            return current
        if current.pid is not None:
            raise C360Error(
                f"a local Kafka broker process (pid {current.pid}) exists but does not answer at "
                f"{self.bootstrap}; run `c360 kafka stop` and start again (log: {self.log_file})"
            )
        for port, key in ((self.port, "local_port"), (self.controller_port, "local_controller_port")):
            if port_open(self.host, port):
                raise C360Error(
                    f"port {port} on {self.host} is already in use by another program; stop it or choose "
                    f"another port (C360_KAFKA_{key.upper()} or kafka.{key} in the config file)"
                )
        ensure_jars(self.state_dir, "kafka")
        self.home.mkdir(parents=True, exist_ok=True)
        self.props_file.touch(mode=0o600)  # it may hold the SASL listener's users
        self.props_file.write_text(self.server_properties())
        self._format_once()
        with self.log_file.open("ab") as out:
            proc = subprocess.Popen(
                self._java_cmd("kafka.Kafka", str(self.props_file)),
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.home, start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise C360Error(f"the local Kafka broker exited at start-up (code {proc.returncode}): "
                                f"{self._last_error()} (log: {self.log_file})")
            if port_open(self.host, self.port) and _serves_metadata(self.bootstrap):
                log.info("local Kafka broker ready at %s (pid %s)", self.bootstrap, proc.pid)
                return self.status()
            time.sleep(0.5)
        self.stop()
        raise C360Error(f"the local Kafka broker did not become ready within {timeout:.0f}s (log: {self.log_file})")

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the broker (SIGTERM, then SIGKILL after ``timeout``); returns False if none was running."""
        pid = self._pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _pid_alive(pid):
            _reap(pid)
            time.sleep(0.2)
        if _pid_alive(pid):
            log.warning("broker pid %s ignored SIGTERM for %.0fs; killing it", pid, timeout)
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
            _reap(pid)
        self.pid_file.unlink(missing_ok=True)
        return True

    def _last_error(self) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return "no log"
        for line in reversed(lines):
            if "ERROR" in line or "Exception" in line:
                return line.strip()[:300]
        return (lines[-1].strip()[:300]) if lines else "empty log"


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _serves_metadata(bootstrap: str) -> bool:
    """True once the broker answers a metadata request (it may accept TCP a little earlier)."""
    from lakehouse.kafka_admin import broker_answers

    return broker_answers(bootstrap, timeout_s=3.0)
