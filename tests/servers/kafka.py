"""Apache Kafka for the integration tests: a single-node KRaft broker, and topics.

The broker is the real one, run from the jars on Maven Central. `ensure_jars`
resolves them once with Maven (`kafka-dist/pom.xml`) into a cache shared by later
runs, `${ORDERMESH_CACHE:-~/.cache/ordermesh}/kafka-<version>/libs`; a marker file
records a complete download and a lock file keeps concurrent sessions from racing.
`KafkaBroker` formats a fresh log directory and runs one JVM that is both broker and
controller, listening on free ports of 127.0.0.1 only.

Topics are never created implicitly (`auto.create.topics.enable=false`): tests call
`create_topic` / `delete_topics`, usually through the `kafka_topic_factory` fixture.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import for_code

from tests.servers.common import cache_root, env_override, file_lock, free_port, run_async, tail

KAFKA_VERSION = "3.9.1"
BOOTSTRAP_ENV_VARS = ("ORDERMESH_TEST_KAFKA", "KAFKA_BOOTSTRAP_SERVERS")
INSTALL_HINT = "install a JRE 17+ and Maven, e.g. `apt-get install openjdk-17-jre-headless maven`"

DIST_DIR = Path(__file__).with_name("kafka-dist")
_JVM_OPTS = (
    *("-Xms256m", "-Xmx512m", "-XX:+ExitOnOutOfMemoryError", "-XX:-UsePerfData"),
    "-Djava.awt.headless=true",
)
_START_TIMEOUT = 90.0
_STOP_TIMEOUT = 20.0
_BIND_ATTEMPTS = 3
_MVN_TIMEOUT = 900.0
_TOPIC_TIMEOUT = 30.0

# One node: internal topics need replication factor 1, and the transaction log an ISR of
# 1, or transactions never become available. 4 partitions (not 50) for the offsets and
# transaction logs make the first consumer group and the first transaction quick.
_SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={log_dir}
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
"""


class KafkaUnavailableError(RuntimeError):
    """Kafka cannot run on this machine (no Java, no Maven, or the jars cannot be fetched)."""


class BrokerStartError(RuntimeError):
    """The broker was launched but did not become ready; the message holds its log."""


def configured_bootstrap() -> str | None:
    """Return the bootstrap servers of a Kafka chosen by the user, if any."""
    return env_override(*BOOTSTRAP_ENV_VARS)


def cache_dir() -> Path:
    """Return the directory holding this Kafka version's jars between runs."""
    return cache_root() / f"kafka-{KAFKA_VERSION}"


def find_tool(name: str) -> str:
    """Return the absolute path of executable `name`.

    Raises:
        KafkaUnavailableError: It is not on PATH.
    """
    path = shutil.which(name)
    if path is None:
        raise KafkaUnavailableError(f"Kafka tests need `{name}`: {INSTALL_HINT}")
    return path


def ensure_jars(cache: Path) -> Path:
    """Return the directory of the broker's jars, downloading them first when needed.

    Args:
        cache: This version's cache directory (see `cache_dir`).

    Raises:
        KafkaUnavailableError: Maven is missing or could not fetch the jars.
    """
    libs, marker = cache / "libs", cache / ".complete"
    wanted = hashlib.sha256((DIST_DIR / "pom.xml").read_bytes()).hexdigest()
    cache.mkdir(parents=True, exist_ok=True)
    with file_lock(cache / ".lock"):
        if not marker.is_file() or marker.read_text().strip() != wanted:
            marker.unlink(missing_ok=True)
            shutil.rmtree(libs, ignore_errors=True)
            _download(libs)
            marker.write_text(wanted + "\n")
    return libs


def _download(libs: Path) -> None:
    """Copy Kafka and its runtime dependencies from Maven Central into `libs`."""
    command = [
        find_tool("mvn"),
        *("-q", "-B", "-Dstyle.color=never", "-f", str(DIST_DIR / "pom.xml")),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={libs}",
    ]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=_MVN_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise KafkaUnavailableError(f"mvn took over {_MVN_TIMEOUT:.0f} s to fetch Kafka") from exc
    if done.returncode != 0:
        output = "\n".join((done.stdout + done.stderr).splitlines()[-40:])
        raise KafkaUnavailableError(f"mvn could not fetch Kafka {KAFKA_VERSION}:\n{output}")


def _cluster_id() -> str:
    """Return a random cluster id in Kafka's format (URL-safe base64 of a UUID)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # would parse as a command-line option
            return text


class KafkaBroker:
    """One Kafka JVM, broker and KRaft controller in one, in a temporary directory.

    Attributes:
        bootstrap: "127.0.0.1:<port>" once started.
        startup_seconds: From `start` until the broker answered a metadata request.
    """

    def __init__(self, libs: Path) -> None:
        self.bootstrap = ""
        self.startup_seconds = 0.0
        self._java = find_tool("java")
        self._classpath = f"{libs}/*"
        self._root = Path(tempfile.mkdtemp(prefix="ordermesh-kafka-"))
        self._proc: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None

    def start(self) -> str:
        """Format storage, launch the JVM and wait until it serves; return `bootstrap`.

        Raises:
            BrokerStartError: It exited or did not answer in time; the message has the
                tail of its log.
        """
        started = time.monotonic()
        for attempt in range(1, _BIND_ATTEMPTS + 1):
            try:
                self._start_once()
                break
            except BrokerStartError as exc:
                self._halt()
                if attempt == _BIND_ATTEMPTS or "BindException" not in str(exc):
                    raise
        self.startup_seconds = time.monotonic() - started
        return self.bootstrap

    def stop(self) -> None:
        """Stop the JVM (SIGTERM, then SIGKILL) and delete its directory."""
        self._halt()
        shutil.rmtree(self._root, ignore_errors=True)

    def _start_once(self) -> None:
        port, controller_port = _two_ports()
        self.bootstrap = f"127.0.0.1:{port}"
        shutil.rmtree(self._root / "data", ignore_errors=True)
        properties = self._root / "server.properties"
        properties.write_text(
            _SERVER_PROPERTIES.format(
                port=port, controller_port=controller_port, log_dir=self._root / "data"
            )
        )
        self._format(properties)
        self._launch(properties)
        self._await_ready(time.monotonic() + _START_TIMEOUT)

    def _java_command(self, main_class: str, *args: str) -> list[str]:
        logging = (
            f"-Dlog4j.configuration=file:{DIST_DIR / 'log4j.properties'}",
            f"-Dkafka.logs.dir={self._root}",
        )
        return [self._java, *_JVM_OPTS, *logging, "-cp", self._classpath, main_class, *args]

    def _format(self, properties: Path) -> None:
        command = self._java_command(
            "kafka.tools.StorageTool", "format", "-t", _cluster_id(), "-c", str(properties)
        )
        done = subprocess.run(
            [*command, "--ignore-formatted"], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise BrokerStartError(f"kafka StorageTool format failed:\n{done.stdout}{done.stderr}")

    def _launch(self, properties: Path) -> None:
        self._output = (self._root / "jvm.out").open("wb")
        self._proc = subprocess.Popen(
            self._java_command("kafka.Kafka", str(properties)),
            cwd=self._root,
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT,
        )

    def _await_ready(self, deadline: float) -> None:
        """Poll the broker until it answers, it exits, or the deadline passes."""
        assert self._proc is not None
        while time.monotonic() < deadline:
            try:
                code = self._proc.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                if _serves_metadata(self.bootstrap):
                    return
            else:
                raise self._failure(f"exited with code {code}")
        raise self._failure(f"did not answer within {_START_TIMEOUT:.0f} s")

    def _failure(self, why: str) -> BrokerStartError:
        return BrokerStartError(
            f"Kafka {KAFKA_VERSION} broker on {self.bootstrap} {why}.\n"
            f"--- server.log (tail) ---\n{tail(self._root / 'server.log')}\n"
            f"--- JVM output (tail) ---\n{tail(self._root / 'jvm.out')}"
        )

    def _halt(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        output, self._output = self._output, None
        if output is not None:
            output.close()


def _two_ports() -> tuple[int, int]:
    """Return two distinct free ports on 127.0.0.1: client and controller."""
    first = free_port()
    second = free_port()
    while second == first:
        second = free_port()
    return first, second


def _serves_metadata(bootstrap: str) -> bool:
    """Tell whether the broker at `bootstrap` accepts connections and answers metadata."""
    host, _, port = bootstrap.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=1.0).close()
    except OSError:
        return False
    try:
        return run_async(lambda: _cluster_has_broker(bootstrap))
    except Exception:  # any failure means "not ready yet"
        return False


async def _cluster_has_broker(bootstrap: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await admin.start()
    try:
        cluster: dict[str, Any] = await admin.describe_cluster()
    finally:
        await admin.close()
    return bool(cluster["brokers"]) and cluster.get("controller_id", -1) >= 0


async def create_topic(
    bootstrap: str,
    name: str,
    partitions: int,
    config: Mapping[str, str] | None = None,
) -> None:
    """Create topic `name` (replication factor 1) and wait until every partition has a leader.

    Raises:
        aiokafka.errors.KafkaError: The broker refused the topic.
        TimeoutError: The partitions had no leader in time.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topic = NewTopic(name, partitions, 1, topic_configs=dict(config or {}))
        response = await admin.create_topics([topic])
        for entry in response.topic_errors:
            if entry[1] != 0:
                raise for_code(entry[1])(f"create topic {entry[0]}: {entry[2:]}")
        async with asyncio.timeout(_TOPIC_TIMEOUT):
            await _await_leaders(admin, name, partitions)
    finally:
        await admin.close()


async def _await_leaders(admin: Any, name: str, partitions: int) -> None:
    """Poll metadata until all `partitions` of topic `name` have a leader (caller bounds it)."""
    while True:
        (described,) = await admin.describe_topics([name])
        leaders = [p["leader"] for p in described["partitions"] if p["error_code"] == 0]
        if described["error_code"] == 0 and len(leaders) == partitions and min(leaders) >= 0:
            return
        await asyncio.sleep(0.05)  # poll interval of a deadline-bounded wait


async def delete_topics(bootstrap: str, names: list[str]) -> None:
    """Delete topics `names`; topics that no longer exist are ignored."""
    if not names:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(names)
    finally:
        await admin.close()
