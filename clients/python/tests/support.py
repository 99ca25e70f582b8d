"""Test helpers: real PostgreSQL databases, real broker and agent processes, a
TCP proxy that can cut connections, and httpx transports that record.

Nothing here stands in for the broker or the database: the proxy and the
recording transports only pass bytes on (and cut or observe them).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

REPO = Path(__file__).resolve().parents[3]
SUBMITTER_TOKEN = "py-submitter-" + secrets.token_hex(8)
LISTENER_TOKEN = "py-listener-" + secrets.token_hex(8)

# Tokens scoped to named channels (issue 24), as the token files carry them:
# `TOKEN site-a` for a listener (exactly one channel), `TOKEN site-a,site-b`
# for a submitter (one or more). The tokens above (the environment's lists)
# mean the channel `default`.
SITE_A_SUBMITTER_TOKEN = "py-site-a-submitter-" + secrets.token_hex(8)
SITES_SUBMITTER_TOKEN = "py-sites-submitter-" + secrets.token_hex(8)
SITE_A_LISTENER_TOKEN = "py-site-a-listener-" + secrets.token_hex(8)
SITE_B_LISTENER_TOKEN = "py-site-b-listener-" + secrets.token_hex(8)
CHANNEL_TOKEN_FILES = {
    "submitter": [f"{SITE_A_SUBMITTER_TOKEN} site-a", f"{SITES_SUBMITTER_TOKEN} site-a,site-b"],
    "listener": [f"{SITE_A_LISTENER_TOKEN} site-a", f"{SITE_B_LISTENER_TOKEN} site-b"],
}

#: Seconds to wait for something that should happen at once (a process ready,
#: a listener connected): generous, since the machine may be busy.
SOON = 20.0


def wait_until(check: Callable[[], bool], timeout: float = SOON, what: str = "condition") -> None:
    """Return once ``check()`` is true; fail after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any backchannel setting of the caller's, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("BACKCHANNEL_") and k != "DATABASE_URL"
    }
    env.update(NO_COLOR="1", RUST_LOG=env.get("BACKCHANNEL_TEST_LOG", "info"))
    env.update(extra)
    return env


# PostgreSQL ---------------------------------------------------------------------------------


def admin_url() -> str:
    url = os.environ.get("BACKCHANNEL_TEST_ADMIN_URL") or os.environ.get("PG_ADMIN_URL")
    if not url:
        raise RuntimeError(
            "set BACKCHANNEL_TEST_ADMIN_URL (run-tests.sh does, through scripts/pg-ensure.sh)"
        )
    return url


def database_url(name: str, *, port: int | None = None) -> str:
    """The admin URL pointed at database ``name`` (and at ``port``, if given)."""
    parts = urlsplit(admin_url())
    netloc = parts.netloc
    if port is not None:
        netloc = (
            f"{netloc.rsplit('@', 1)[0]}@127.0.0.1:{port}" if "@" in netloc else f"127.0.0.1:{port}"
        )
    return urlunsplit((parts.scheme, netloc, "/" + name, parts.query, ""))


def postgres_address() -> tuple[str, int]:
    parts = urlsplit(admin_url())
    return parts.hostname or "127.0.0.1", parts.port or 5432


def psql(url: str, sql: str) -> str:
    """Run one statement with psql; its unaligned output."""
    done = subprocess.run(
        ["psql", url, "-qAtX", "-v", "ON_ERROR_STOP=1", "-c", sql],
        capture_output=True,
        text=True,
        check=False,
        env=clean_env(PGOPTIONS="-c client_min_messages=warning"),
    )
    if done.returncode != 0:
        raise RuntimeError(f"psql failed: {done.stderr.strip()}")
    return done.stdout.strip()


_names = itertools.count(1)


class Database:
    """A fresh database, dropped by :meth:`drop`."""

    def __init__(self) -> None:
        self.name = f"bc_py_{os.getpid()}_{next(_names)}_{secrets.token_hex(3)}"
        psql(admin_url(), f'CREATE DATABASE "{self.name}"')
        self.url = database_url(self.name)

    def value(self, sql: str) -> str:
        return psql(self.url, sql)

    def count_jobs(self) -> int:
        return int(self.value("SELECT count(*) FROM backchannel.jobs"))

    def drop(self) -> None:
        psql(admin_url(), f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


# Processes ----------------------------------------------------------------------------------


def broker_binary() -> Path:
    path = Path(os.environ.get("BACKCHANNEL_BIN") or REPO / "target" / "debug" / "backchannel")
    if not path.exists():
        raise RuntimeError(f"no broker binary at {path}: run `cargo build --bin backchannel`")
    return path


class Process:
    """A child process with its output in a log file; stopped with SIGTERM."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with open(log, "wb") as out:
            self.popen = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)

    def running(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.running():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


class Broker:
    """``backchannel serve`` on a free port, on a database of its own
    (reached on ``postgres_port`` instead of the server's own, if given).

    ``token_files`` maps a role (``submitter``, ``listener``, ``monitor``) to
    the lines of a token file of that role (``TOKEN`` or ``TOKEN CHANNELS``),
    written beside the log and given as ``BACKCHANNEL_<ROLE>_TOKENS_FILE``;
    the environment's lists (:data:`SUBMITTER_TOKEN`, :data:`LISTENER_TOKEN`,
    the channel ``default``) stay."""

    def __init__(
        self,
        directory: Path,
        database: Database,
        postgres_port: int | None = None,
        token_files: Mapping[str, Sequence[str]] | None = None,
        **settings: str,
    ) -> None:
        self.database = database
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        for role, lines in (token_files or {}).items():
            path = write(
                directory / f"broker-{self.port}-{role}.tokens",
                "".join(f"{line}\n" for line in lines),
            )
            settings = {f"BACKCHANNEL_{role.upper()}_TOKENS_FILE": str(path), **settings}
        env = clean_env(
            DATABASE_URL=database_url(database.name, port=postgres_port),
            BACKCHANNEL_BIND=f"127.0.0.1:{self.port}",
            BACKCHANNEL_SUBMITTER_TOKENS=SUBMITTER_TOKEN,
            BACKCHANNEL_LISTENER_TOKENS=LISTENER_TOKEN,
            BACKCHANNEL_POOL_SIZE="4",
            BACKCHANNEL_SHUTDOWN_GRACE="2",
            **settings,
        )
        self.process = Process(
            [str(broker_binary()), "serve"], env, directory / f"broker-{self.port}.log"
        )
        wait_until(self._ready, what=f"the broker to be ready (log: {self.process.log})")

    def _ready(self) -> bool:
        if not self.process.running():
            raise AssertionError(f"the broker exited:\n{self.process.output()}")
        try:
            return httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def listener_held(self, channel: str | None = None, token: str = SUBMITTER_TOKEN) -> bool:
        """Whether a listener holds the stream of ``channel`` (``default``
        when ``None``), asked with a submitter ``token`` of that channel."""
        path = "v1/listener" if channel is None else f"v1/channels/{channel}/listener"
        response = httpx.get(
            f"{self.url}/{path}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=2,
        )
        held: bool = response.json()["held"]
        return held

    def stop(self) -> None:
        self.process.stop()


_agents = itertools.count(1)


class Agent:
    """``backchannel agent`` for a broker, echoing or forwarding; returns once
    it holds the stream. Keyword arguments in capitals are more settings,
    e.g. ``BACKCHANNEL_EXPECT_KIT="true"``."""

    def __init__(
        self,
        directory: Path,
        broker: Broker,
        *,
        forward: str | None = None,
        secret: str | None = None,
        header: str | None = None,
        open_with: list[Path] | None = None,
        trust_signer: list[Path] | None = None,
        require_sealed: bool = False,
        health_port: int | None = None,
        **settings: str,
    ) -> None:
        number = next(_agents)
        token_file = directory / f"agent-{number}.token"
        token_file.write_text(LISTENER_TOKEN + "\n")
        env = clean_env(
            BACKCHANNEL_SERVER=broker.url,
            BACKCHANNEL_LISTENER_TOKEN_FILE=str(token_file),
            BACKCHANNEL_LISTENER_ID=f"python-tests-{number}",
            BACKCHANNEL_SHUTDOWN_GRACE="2",
        )
        if forward is None:
            env["BACKCHANNEL_ECHO"] = "true"
        else:
            env["BACKCHANNEL_FORWARD"] = forward
        if secret is not None:
            secret_file = directory / f"agent-{number}.secret"
            secret_file.write_text(secret + "\n")
            env["BACKCHANNEL_FORWARD_HEADER_FILE"] = str(secret_file)
        if header is not None:
            env["BACKCHANNEL_FORWARD_HEADER"] = header
        if open_with:
            env["BACKCHANNEL_OPEN_WITH"] = ",".join(str(path) for path in open_with)
        if trust_signer:
            env["BACKCHANNEL_TRUST_SIGNER"] = ",".join(str(path) for path in trust_signer)
        if require_sealed:
            env["BACKCHANNEL_REQUIRE_SEALED"] = "on"
        if health_port is not None:
            env["BACKCHANNEL_HEALTH_BIND"] = f"127.0.0.1:{health_port}"
        env.update(settings)
        self.process = Process(
            [str(broker_binary()), "agent"], env, directory / f"agent-{number}.log"
        )

        def connected() -> bool:
            if not self.process.running():
                raise AssertionError(f"the agent exited:\n{self.process.output()}")
            return broker.listener_held()

        wait_until(connected, what="the agent to hold the stream")

    def stop(self) -> None:
        self.process.stop()

    def signal(self, number: int) -> None:
        self.process.popen.send_signal(number)


# A listener's stream, read in Python -------------------------------------------------------


class Stream:
    """A listener's stream (``GET path``, Server-Sent Events) read in a thread
    of its own with a listener ``token``, as a listener written in Python
    would read it: every job it is sent is kept in :attr:`jobs` (the event's
    data) and passed to ``on_job``, which may answer it. Returns once the
    broker answered the stream's request (an :class:`AssertionError` unless
    ``200``). :meth:`stop` ends it at the next line the broker sends (start
    the broker with a short ``BACKCHANNEL_HEARTBEAT`` so that one comes soon).
    """

    def __init__(
        self,
        broker: Broker,
        path: str,
        token: str,
        *,
        on_job: Callable[[dict[str, Any]], None] | None = None,
        listener_id: str | None = None,
    ) -> None:
        self.path = "/" + path.lstrip("/")
        self.jobs: list[dict[str, Any]] = []
        self.status: int | None = None
        self.refusal: Any = None
        self.failure: BaseException | None = None
        self._url = f"{broker.url}{self.path}"
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        if listener_id is not None:
            self._headers["X-Listener-Id"] = listener_id
        self._on_job = on_job
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        wait_until(
            lambda: self.status is not None or self.failure is not None,
            what=f"the broker to answer GET {self.path}",
        )
        if self.status != 200:
            raise AssertionError(
                f"GET {self.path}: {self.status} {self.refusal} {self.failure or ''}"
            )

    def ids(self) -> list[int]:
        """The ids of the jobs the stream was sent, in order."""
        return [job["id"] for job in self.jobs]

    def _read(self) -> None:
        timeout = httpx.Timeout(5.0, read=None)
        try:
            with httpx.stream("GET", self._url, headers=self._headers, timeout=timeout) as response:
                if response.status_code != 200:
                    self.refusal = _json(response.read())
                    self.status = response.status_code
                    return
                self.status = 200
                event, data = "", []
                for line in response.iter_lines():
                    if self._stopping.is_set():
                        return
                    if line:
                        name, _, value = line.partition(":")
                        value = value[1:] if value.startswith(" ") else value
                        if name == "event":
                            event = value
                        elif name == "data":
                            data.append(value)
                        continue
                    if event == "job" and data:
                        job = json.loads("\n".join(data))
                        self.jobs.append(job)
                        if self._on_job is not None:
                            self._on_job(job)
                    event, data = "", []
        except Exception as exc:
            if not self._stopping.is_set():
                self.failure = exc

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=10)


# A TCP proxy ----------------------------------------------------------------------------


class TcpProxy:
    """Passes TCP connections on to ``target``; can drop the first responses.

    With ``cut_responses=n``, the first ``n`` times the target starts to answer
    on a connection, the proxy closes that connection instead of passing the
    answer on: the request was processed, the client never hears of it.
    :meth:`close` cuts every connection and refuses new ones.
    """

    def __init__(self, target: tuple[str, int], *, cut_responses: int = 0) -> None:
        self.target = target
        self.cut = 0
        self._cuts_left = cut_responses
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._closed = False
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._closed:
                    client.close()
                    upstream.close()
                    return
                self._sockets |= {client, upstream}
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _take_cut(self) -> bool:
        with self._lock:
            if self._cuts_left > 0:
                self._cuts_left -= 1
                self.cut += 1
                return True
            return False

    def _pump(self, source: socket.socket, sink: socket.socket, answers: bool) -> None:
        first = True
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if answers and first and self._take_cut():
                    break
                first = False
                sink.sendall(data)
        except OSError:
            pass
        finally:
            self._shut(source)
            self._shut(sink)

    def _shut(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        with self._lock:
            self._sockets.discard(sock)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sockets = list(self._sockets)
        self._server.close()
        for sock in sockets:
            self._shut(sock)


def _json(content: bytes) -> Any:
    try:
        return json.loads(content) if content else None
    except ValueError:
        return None


# Recording transports -----------------------------------------------------------------------


@dataclass
class Exchange:
    method: str
    path: str
    params: dict[str, str]
    sent: Any
    status: int | None
    body: Any
    code: str | None
    sent_at: float
    answered_at: float


@dataclass
class Recorder:
    """Records every request a client makes and what came back; calls
    ``on_response`` with each exchange before the client sees the response."""

    on_response: Callable[[Exchange], None] | None = None
    exchanges: list[Exchange] = field(default_factory=list)

    def _record(self, request: httpx.Request, sent: float, response: httpx.Response | None) -> None:
        body = _json(response.content) if response is not None else None
        code = None
        if response is not None and response.status_code >= 400:
            try:
                code = body["error"]["code"]
            except (KeyError, TypeError):
                code = None
        exchange = Exchange(
            method=request.method,
            path=request.url.path,
            params=dict(request.url.params),
            sent=_json(request.content),
            status=None if response is None else response.status_code,
            body=body,
            code=code,
            sent_at=sent,
            answered_at=time.monotonic(),
        )
        self.exchanges.append(exchange)
        if self.on_response is not None:
            self.on_response(exchange)

    def transport(self) -> httpx.BaseTransport:
        recorder = self

        class Recording(httpx.HTTPTransport):
            def handle_request(self, request: httpx.Request) -> httpx.Response:
                sent = time.monotonic()
                try:
                    response = super().handle_request(request)
                except httpx.TransportError:
                    recorder._record(request, sent, None)
                    raise
                response.read()
                recorder._record(request, sent, response)
                return response

        return Recording()

    def async_transport(self) -> httpx.AsyncBaseTransport:
        recorder = self

        class Recording(httpx.AsyncHTTPTransport):
            async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
                sent = time.monotonic()
                try:
                    response = await super().handle_async_request(request)
                except httpx.TransportError:
                    recorder._record(request, sent, None)
                    raise
                await response.aread()
                recorder._record(request, sent, response)
                return response

        return Recording()

    def statuses(self) -> list[int | None]:
        return [exchange.status for exchange in self.exchanges]


# Key files ------------------------------------------------------------------------------


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def openssl_keys(directory: Path, name: str) -> tuple[Path, Path, Path]:
    """(scheduler's Ed25519 private key, castellum's X25519 public key, its
    private key), made by openssl when it is there, else in the same PEM forms."""
    signing, private, public = (
        directory / f"{name}-signing.key",
        directory / f"{name}-castellum.key",
        directory / f"{name}-castellum.pub",
    )
    if shutil.which("openssl"):
        for args in (
            ["genpkey", "-algorithm", "ed25519", "-out", str(signing)],
            ["genpkey", "-algorithm", "X25519", "-out", str(private)],
            ["pkey", "-in", str(private), "-pubout", "-out", str(public)],
        ):
            subprocess.run(["openssl", *args], check=True, capture_output=True)
        signing.chmod(0o600)
        return signing, public, private
    pkcs8 = (serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8)
    key = X25519PrivateKey.generate()
    write(
        signing,
        Ed25519PrivateKey.generate().private_bytes(*pkcs8, serialization.NoEncryption()).decode(),
    )
    write(private, key.private_bytes(*pkcs8, serialization.NoEncryption()).decode())
    write(
        public,
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
        0o644,
    )
    return signing, public, private
