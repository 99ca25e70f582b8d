"""Every error the broker gives maps to its own exception, with the job where
the contract gives one. Provoked against a real broker, except the few the
client cannot send by construction (see test_unit.py for the whole table)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import httpx
import pytest

import backchannel
from backchannel import (
    AlreadyAnswered,
    AlreadyTerminal,
    BackchannelError,
    Client,
    DatabaseUnavailable,
    Forbidden,
    Gone,
    InvalidField,
    JobState,
    NotFound,
    PayloadTooLarge,
    TransportError,
    Unauthorized,
)
from support import (
    LISTENER_TOKEN,
    SUBMITTER_TOKEN,
    Broker,
    Database,
    Recorder,
    TcpProxy,
    free_port,
    postgres_address,
    wait_until,
)


@pytest.fixture(scope="module")
def shared_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One broker for the tests below that only need an ordinary one."""
    database = Database()
    broker = Broker(tmp_path_factory.mktemp("errors"), database)
    yield broker
    broker.stop()
    database.drop()


@pytest.fixture
def client(shared_broker: Broker) -> Iterator[Client]:
    with Client(shared_broker.url, SUBMITTER_TOKEN) as client:
        yield client


@pytest.fixture
def listener(shared_broker: Broker) -> Iterator[Client]:
    with Client(shared_broker.url, LISTENER_TOKEN) as client:
        yield client


def test_400_invalid_field(client: Client) -> None:
    with pytest.raises(InvalidField) as raised:
        client.submit("not a kind!")
    error = raised.value
    assert (error.status, error.code) == (400, "invalid_field")
    assert "kind" in error.message and error.job is None
    with pytest.raises(InvalidField, match="timeout"):
        client.submit("too.long", job_timeout=10**6)


def test_401_unauthorized(shared_broker: Broker) -> None:
    wrong = "not-a-known-token-" + "x" * 16
    with Client(shared_broker.url, wrong) as client, pytest.raises(Unauthorized) as raised:
        client.stats()
    assert (raised.value.status, raised.value.code) == (401, "unauthorized")
    for text in (str(raised.value), repr(raised.value), repr(client)):
        assert wrong not in text


def test_403_forbidden_with_the_listener_token(listener: Client) -> None:
    with pytest.raises(Forbidden) as raised:
        listener.submit("wrong.role")
    assert (raised.value.status, raised.value.code) == (403, "forbidden")
    assert LISTENER_TOKEN not in str(raised.value) + repr(raised.value)


def test_404_not_found(client: Client) -> None:
    with pytest.raises(NotFound) as raised:
        client.get(10**15)
    assert (raised.value.status, raised.value.code) == (404, "not_found")
    with pytest.raises(NotFound):
        client.cancel(10**15)


def test_409_already_terminal_carries_the_job(client: Client, listener: Client) -> None:
    job = client.submit("answered.then.cancelled")
    listener.answer(job, result={"ok": True})
    with pytest.raises(AlreadyTerminal) as raised:
        client.cancel(job)
    assert (raised.value.status, raised.value.code) == (409, "already_terminal")
    assert raised.value.job is not None
    assert raised.value.job.id == job.id and raised.value.job.state is JobState.DONE
    assert raised.value.job.result == {"ok": True}


def test_cancel_returns_the_cancelled_job_also_when_it_already_was(client: Client) -> None:
    job = client.submit("cancelled.twice")
    first = client.cancel(job)
    assert first.state is JobState.CANCELLED and first.is_terminal
    assert client.cancel(job) == first


def test_409_already_answered_carries_the_job(client: Client, listener: Client) -> None:
    job = client.submit("answered.twice")
    done = listener.answer(job, result="first")
    assert listener.answer(job, result="first") == done, "the same answer again is a replay"
    with pytest.raises(AlreadyAnswered) as raised:
        listener.answer(job, error={"different": True})
    assert (raised.value.status, raised.value.code) == (409, "already_answered")
    assert raised.value.job == done


def test_410_gone_carries_the_job(client: Client, listener: Client) -> None:
    job = client.submit("cancelled.then.answered")
    client.cancel(job)
    with pytest.raises(Gone) as raised:
        listener.answer(job, result="too late")
    assert (raised.value.status, raised.value.code) == (410, "gone")
    assert raised.value.job is not None
    assert raised.value.job.id == job.id and raised.value.job.state is JobState.CANCELLED


def test_413_payload_too_large(start_broker) -> None:
    broker = start_broker(BACKCHANNEL_MAX_BODY="2048")
    with Client(broker.url, SUBMITTER_TOKEN) as client:
        with pytest.raises(PayloadTooLarge) as raised:
            client.submit("big.payload", "x" * 4096)
        assert (raised.value.status, raised.value.code) == (413, "payload_too_large")
        assert broker.database.count_jobs() == 0


def test_503_database_unavailable_when_postgres_cannot_be_reached(start_broker) -> None:
    # The broker reaches PostgreSQL through a proxy; closing the proxy is the
    # database server going away (connections cut, new ones refused).
    proxy = TcpProxy(postgres_address())
    broker = start_broker(postgres_port=proxy.port)
    with Client(broker.url, SUBMITTER_TOKEN) as client:
        job = client.submit("before.the.outage")
        proxy.close()
        wait_until(lambda: httpx.get(f"{broker.url}/readyz").status_code == 503, what="readyz 503")

        recorder = Recorder()
        short = Client(broker.url, SUBMITTER_TOKEN, transport=recorder.transport(), timeout=2.0)
        started = time.monotonic()
        with short, pytest.raises(DatabaseUnavailable) as raised:
            short.get(job.id)
        assert time.monotonic() - started < 2.0 + 0.5, "given up by the deadline"
        assert (raised.value.status, raised.value.code) == (503, "database_unavailable")
        assert raised.value.retry_after == 1
        statuses = recorder.statuses()
        assert len(statuses) >= 2 and set(statuses) == {503}, "retried after Retry-After"


def test_no_broker_at_all_is_a_transport_error() -> None:
    unreachable = Client(f"http://127.0.0.1:{free_port()}", SUBMITTER_TOKEN, timeout=0.5)
    with unreachable as client, pytest.raises(TransportError) as raised:
        client.stats()
    assert raised.value.status is None and raised.value.retryable
    assert isinstance(raised.value.__cause__, httpx.ConnectError)


def test_every_exception_is_a_backchannel_error() -> None:
    for name in backchannel.__all__:
        value = getattr(backchannel, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, BackchannelError), name


def test_what_no_retry_mends_is_logged_without_the_token(
    shared_broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="backchannel")
    wrong = "not-a-known-token-" + "y" * 16

    seen: list[logging.LogRecord] = []

    def records() -> list[logging.LogRecord]:
        found = [r for r in caplog.records if r.name == "backchannel"]
        caplog.clear()
        seen.extend(found)
        return found

    with Client(shared_broker.url, wrong) as client, pytest.raises(Unauthorized):
        client.submit("wrong.token")
    [unauthorized] = records()
    assert unauthorized.levelno == logging.ERROR
    assert unauthorized.getMessage().startswith(
        f"POST {shared_broker.url}/v1/jobs: refused with 401"
    )
    assert "the broker does not know this token" in unauthorized.getMessage()

    with Client(shared_broker.url, LISTENER_TOKEN) as client, pytest.raises(Forbidden):
        client.submit("wrong.role")
    [forbidden] = records()
    assert forbidden.levelno == logging.ERROR and "403 forbidden" in forbidden.getMessage()
    assert "of the other role" in forbidden.getMessage()

    prefixed = shared_broker.url.replace("http://", "http://someone:password@") + "/no/prefix"
    with Client(prefixed, SUBMITTER_TOKEN) as client, pytest.raises(NotFound):
        client.submit("wrong.url")
    [lost] = records()
    assert lost.levelno == logging.ERROR and "check the broker's URL" in lost.getMessage()
    assert f"{shared_broker.url}/no/prefix/v1/jobs" in lost.getMessage()
    assert "password" not in lost.getMessage()

    with Client(shared_broker.url, SUBMITTER_TOKEN) as client:
        with pytest.raises(InvalidField):
            client.submit("not a kind!")
        assert [r.levelno for r in records()] == [logging.ERROR]
        # Answers about a job's state are the caller's to handle: INFO at most.
        with pytest.raises(NotFound):
            client.get(10**15)
        job = client.submit("cancelled.twice.quietly")
        client.cancel(job)
        client.cancel(job)
        assert [r.levelno for r in records()] == [logging.INFO, logging.INFO]

    unreachable = f"http://127.0.0.1:{free_port()}"
    with Client(unreachable, SUBMITTER_TOKEN, timeout=0.5) as client, pytest.raises(TransportError):
        client.stats()
    *retries, gave_up = records()
    assert gave_up.levelno == logging.WARNING and "giving up after" in gave_up.getMessage()
    assert all(r.levelno == logging.DEBUG for r in retries)

    assert len(seen) >= 8
    for record in seen:
        assert wrong not in record.getMessage() and SUBMITTER_TOKEN not in record.getMessage()
        assert LISTENER_TOKEN not in record.getMessage()
