"""A real single-node Apache Kafka broker (KRaft, broker + controller), for tests and demos.

The broker's jars come from Maven Central through the machine's Maven (the
``org.apache.kafka:kafka_2.13`` artifact and its dependencies) and are cached under
``~/.cache/headwater/kafka-<version>``. Storage is formatted in a temporary folder; the broker
listens on free loopback ports with ``auto.create.topics.enable=false`` and is stopped by PID.

    with LocalBroker() as broker:
        print(broker.bootstrap_servers)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from headwater.errors import HeadwaterError
from headwater.ports import cannot_listen, free_port

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>headwater.local</groupId><artifactId>kafka-broker</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version></dependency>
  </dependencies>
</project>
"""

_LOG4J = """status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = %d %p %c{{1}} %m%n
rootLogger.level = {level}
rootLogger.appenderRef.file.ref = file
"""


def missing_tools() -> list[str]:
    """The programs a local broker needs that this machine lacks (java, mvn)."""
    return [tool for tool in ("java", "mvn") if shutil.which(tool) is None]


def cache_dir(version: str = KAFKA_VERSION) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "headwater" / f"kafka-{version}"


def fetch_jars(version: str = KAFKA_VERSION) -> Path:
    """The folder of the broker's jars, fetched once with Maven and cached."""
    libs = cache_dir(version) / "libs"
    if (libs / f"kafka_2.13-{version}.jar").exists():
        return libs
    lacking = missing_tools()
    if lacking:
        raise HeadwaterError(
            f"a local Kafka broker needs {' and '.join(lacking)} on PATH "
            "(Java 17+ and Maven); install them or set KAFKA_BOOTSTRAP_SERVERS"
        )
    work = cache_dir(version)
    work.mkdir(parents=True, exist_ok=True)
    (work / "pom.xml").write_text(_POM.format(kafka=version, log4j=LOG4J_VERSION))
    tmp = work / "libs.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    done = subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(work / "pom.xml"),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={tmp}",
            "-DincludeScope=runtime",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise HeadwaterError(
            f"Maven could not fetch Kafka {version}:\n{done.stdout[-3000:]}{done.stderr[-2000:]}"
        )
    tmp.rename(libs)
    return libs


class LocalBroker:
    """Start, wait for, and stop one local KRaft broker."""

    def __init__(
        self,
        version: str = KAFKA_VERSION,
        log_level: str = "WARN",
        start_timeout: float = 90.0,
        sasl_users: dict[str, str] | None = None,
        port: int = 0,
    ):
        """``sasl_users`` (name: password) adds a SASL_PLAINTEXT listener with PLAIN auth;
        ``port`` 0 picks a free one."""
        self.version = version
        self.log_level = log_level
        self.start_timeout = start_timeout
        self.sasl_users = sasl_users or {}
        self.port, self.sasl_port = port, 0
        self.dir: Path | None = None
        self.proc: subprocess.Popen | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.sasl_port}"

    def _java(self, libs: Path, *args: str) -> list[str]:
        log4j = self.dir / "log4j2.properties"
        return [
            "java",
            "-Xms256m",
            "-Xmx1g",
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp",
            f"{libs}/*",
            *args,
        ]

    def start(self) -> LocalBroker:
        """Format storage in a new folder (first start only) and start the broker."""
        busy = cannot_listen("127.0.0.1", self.port) if self.port and self.dir is None else ""
        if busy:  # the broker would stop with a Java stack trace in its log
            raise HeadwaterError(
                f"cannot start a Kafka broker on 127.0.0.1:{self.port} ({busy}): another "
                "broker may hold it. Stop it, or pass another port (0: any free one)."
            )
        libs = fetch_jars(self.version)
        if self.dir is None:
            self._format(libs)
        with open(self.dir / "stdout.log", "ab") as log:  # the child keeps its own handle
            self.proc = subprocess.Popen(
                self._java(libs, "kafka.Kafka", str(self.dir / "server.properties")),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait()
        return self

    def restart(self) -> LocalBroker:
        """Stop cleanly and start again on the same ports and data (a broker restart)."""
        self.stop(keep_data=True)
        return self.start()

    def _properties(self, controller: int) -> list[str]:
        listeners = [f"PLAINTEXT://127.0.0.1:{self.port}"]
        protocols = ["PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT"]
        extra = []
        if self.sasl_users:
            listeners.append(f"SASL_PLAINTEXT://127.0.0.1:{self.sasl_port}")
            protocols.append("SASL_PLAINTEXT:SASL_PLAINTEXT")
            users = " ".join(f'user_{u}="{p}"' for u, p in self.sasl_users.items())
            extra = [
                "sasl.enabled.mechanisms=PLAIN",
                "listener.name.sasl_plaintext.plain.sasl.jaas.config="
                f"org.apache.kafka.common.security.plain.PlainLoginModule required {users};",
            ]
        return [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{controller}",
            f"listeners={','.join(listeners)},CONTROLLER://127.0.0.1:{controller}",
            f"advertised.listeners={','.join(listeners)}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            f"listener.security.protocol.map={','.join(protocols)}",
            f"log.dirs={self.dir / 'data'}",
            "auto.create.topics.enable=false",
            "num.partitions=1",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=3",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "log.retention.check.interval.ms=1000",
            *extra,
        ]

    def _format(self, libs: Path) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="headwater-kafka-"))
        self.port, controller = self.port or free_port(), free_port()
        self.sasl_port = free_port() if self.sasl_users else 0
        (self.dir / "log4j2.properties").write_text(
            _LOG4J.format(log=self.dir / "broker.log", level=self.log_level)
        )
        props = self.dir / "server.properties"
        props.write_text("\n".join(self._properties(controller)) + "\n")
        fmt = subprocess.run(
            self._java(
                libs,
                "kafka.tools.StorageTool",
                "format",
                # with '=': an id may start with '-', which would read as an option
                f"--cluster-id={_cluster_id()}",
                "-c",
                str(props),
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if fmt.returncode != 0:
            raise HeadwaterError(f"formatting Kafka storage failed: {fmt.stdout}{fmt.stderr}")

    def _wait(self) -> None:
        from confluent_kafka.admin import AdminClient

        # log_level 0: no connection-refused noise while the broker is still starting
        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0})
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                tail = self.log_tail()
                self.stop()  # its storage folder too
                raise HeadwaterError(f"the Kafka broker exited with {self.proc.returncode}: {tail}")
            try:
                admin.list_topics(timeout=2)
                return
            except Exception:
                if time.monotonic() > deadline:
                    self.stop()
                    raise HeadwaterError(
                        f"the Kafka broker did not answer on {self.bootstrap_servers} within "
                        f"{self.start_timeout}s"
                    ) from None
                time.sleep(0.5)

    def log_tail(self, chars: int = 3000) -> str:
        text = ""
        for name in ("stdout.log", "broker.log"):
            path = self.dir / name if self.dir else None
            if path and path.exists():
                text += path.read_text(errors="replace")[-chars:]
        return text

    def stop(self, keep_data: bool = False) -> None:
        """SIGTERM (a clean shutdown), SIGKILL after 30 s; then remove its storage."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.dir is not None and not keep_data:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _cluster_id() -> str:
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
