"""Named channels (issue 24) against a real broker, for Client and AsyncClient
alike (the ``connect`` fixture gives each in turn).

The broker (``channel_broker``) has token files with channels: a submitter
token for ``site-a`` only, one for ``site-a`` and ``site-b``, and a listener
token for each of the two (``support.CHANNEL_TOKEN_FILES``). The listeners are
streams read in Python (``support.Stream``), so that what each channel's
stream is sent is seen directly.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from backchannel import Client, JobState, NotFound, Sealer
from castellum_side import Castellum, seal_answer
from support import (
    SITE_A_LISTENER_TOKEN,
    SITE_A_SUBMITTER_TOKEN,
    SITE_B_LISTENER_TOKEN,
    SITES_SUBMITTER_TOKEN,
    SUBMITTER_TOKEN,
    Broker,
    Recorder,
    Stream,
    openssl_keys,
)


def echo(listener: Client, channel: str) -> Callable[[dict[str, Any]], None]:
    """A stream's ``on_job`` that answers every job (with ``listener``, a
    client with the listener token) with its payload and the name of the
    channel whose stream it came on."""

    def answer(job: dict[str, Any]) -> None:
        listener.answer(job["id"], result={"channel": channel, "payload": job["payload"]})

    return answer


def test_a_job_on_a_channel_reaches_that_channels_stream_only(
    channel_broker: Broker, open_stream: Callable[..., Stream], connect: Any
) -> None:
    broker = channel_broker
    listener_a = Client(broker.url, SITE_A_LISTENER_TOKEN)
    listener_b = Client(broker.url, SITE_B_LISTENER_TOKEN)
    recorder = Recorder()
    site_a = connect(broker.url, SITES_SUBMITTER_TOKEN, recorder=recorder, channel="site-a")
    site_b = connect(broker.url, SITES_SUBMITTER_TOKEN, channel="site-b")

    # Only site-b's stream is open: a job submitted on site-a waits for its own.
    stream_b = open_stream(
        broker,
        "/v1/channels/site-b/stream",
        SITE_B_LISTENER_TOKEN,
        on_job=echo(listener_b, "site-b"),
    )
    assert site_b.listener().held and not site_a.listener().held
    waiting = site_a.submit("channel.a", {"n": 1})
    assert waiting.state is JobState.PENDING and waiting.attempts == 0

    # A job on site-b, submitted after it, is sent on site-b's stream and
    # answered there. Had site-b's stream been sent the older site-a job, it
    # would have had it first: its stream sends the oldest open job first.
    assert site_b.call("channel.b", {"n": 2}, wait=10) == {"channel": "site-b", "payload": {"n": 2}}
    assert len(stream_b.ids()) == 1 and waiting.id not in stream_b.ids()
    assert site_a.get(waiting.id).state is JobState.PENDING, "nobody took the site-a job"

    # site-a's stream is sent the waiting job when it opens, and answers it.
    stream_a = open_stream(
        broker,
        "/v1/channels/site-a/stream",
        SITE_A_LISTENER_TOKEN,
        on_job=echo(listener_a, "site-a"),
    )
    done = site_a.wait(waiting.id, wait=10)
    assert done.state is JobState.DONE and done.result == {"channel": "site-a", "payload": {"n": 1}}
    assert site_a.listener().held
    job = site_a.submit("channel.a", {"n": 3}, wait=10)
    assert job.result == {"channel": "site-a", "payload": {"n": 3}}
    assert stream_a.ids() == [waiting.id, job.id]
    assert stream_a.jobs[0]["kind"] == "channel.a" and stream_a.jobs[0]["payload"] == {"n": 1}
    assert waiting.id not in stream_b.ids() and job.id not in stream_b.ids()
    assert stream_a.failure is None and stream_b.failure is None

    # The stats are each channel's own; the default channel has none of these jobs.
    assert site_a.stats().jobs[JobState.DONE] == 2 and site_a.stats().open == 0
    assert site_b.stats().jobs[JobState.DONE] == 1
    default = connect(broker.url, SUBMITTER_TOKEN)
    assert sum(default.stats().jobs.values()) == 0 and not default.listener().held

    paths = {(exchange.method, exchange.path) for exchange in recorder.exchanges}
    on_channel = {(method, path) for method, path in paths if path.startswith("/v1/channels/")}
    assert on_channel == {
        ("POST", "/v1/channels/site-a/jobs"),
        ("GET", "/v1/channels/site-a/listener"),
        ("GET", "/v1/channels/site-a/stats"),
    }, "submits, listener and stats on the channel's paths"
    by_id = paths - on_channel
    assert ("GET", f"/v1/jobs/{waiting.id}") in by_id
    assert all(method == "GET" and path.startswith("/v1/jobs/") for method, path in by_id), (
        "reads by id on the paths without a channel"
    )
    for listener in (listener_a, listener_b):
        listener.close()


def test_a_token_scoped_to_site_a_finds_no_site_b(
    channel_broker: Broker, connect: Any, caplog: pytest.LogCaptureFixture
) -> None:
    broker = channel_broker
    caplog.set_level(logging.INFO, logger="backchannel")
    recorder = Recorder()
    client = connect(broker.url, SITE_A_SUBMITTER_TOKEN, recorder=recorder, channel="site-b")

    for operation in (
        lambda: client.submit("channel.b", {"n": 1}),
        lambda: client.call("channel.b", {"n": 2}, wait=5),
        client.listener,
        client.stats,
    ):
        with pytest.raises(NotFound) as raised:
            operation()
        assert (raised.value.status, raised.value.code) == (404, "not_found")
        assert raised.value.message == "no such channel"
    assert [(e.method, e.path, e.status, e.code) for e in recorder.exchanges] == [
        ("POST", "/v1/channels/site-b/jobs", 404, "not_found"),
        ("POST", "/v1/channels/site-b/jobs", 404, "not_found"),
        ("GET", "/v1/channels/site-b/listener", 404, "not_found"),
        ("GET", "/v1/channels/site-b/stats", 404, "not_found"),
    ], "each refused once, never retried"
    assert broker.database.count_jobs() == 0, "nothing was stored"

    # Logged at ERROR as a set-up mistake, naming the channel route, never the token.
    refusals = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(refusals) == 4
    assert refusals[0].startswith(f"POST {broker.url}/v1/channels/site-b/jobs: refused with 404")
    assert "no such channel for this token" in refusals[0]
    assert all(SITE_A_SUBMITTER_TOKEN not in r.getMessage() for r in caplog.records)

    # A channel nobody configured, and a token of the default channel only: the same.
    for token, channel in [(SITES_SUBMITTER_TOKEN, "site-z"), (SUBMITTER_TOKEN, "site-a")]:
        with pytest.raises(NotFound, match="no such channel"):
            connect(broker.url, token, channel=channel).submit("channel.z")

    # A site-b job is not found by id with the site-a token either (as an
    # unknown id), and the same token works on its own channel.
    other = connect(broker.url, SITES_SUBMITTER_TOKEN, channel="site-b").submit("channel.b")
    scoped = connect(broker.url, SITE_A_SUBMITTER_TOKEN, channel="site-a")
    for by_id in (scoped.get, scoped.cancel):
        with pytest.raises(NotFound):
            by_id(other.id)
    assert scoped.submit("channel.a").kind == "channel.a"
    assert broker.database.count_jobs() == 2


def test_a_sealed_job_on_a_channel_names_it(
    channel_broker: Broker, open_stream: Callable[..., Stream], connect: Any, tmp_path: Path
) -> None:
    broker = channel_broker
    signing, public, private = openssl_keys(tmp_path, "channel")
    signing_key = serialization.load_pem_private_key(signing.read_bytes(), None)
    castellum_key = serialization.load_pem_private_key(private.read_bytes(), None)
    assert isinstance(signing_key, Ed25519PrivateKey)
    assert isinstance(castellum_key, X25519PrivateKey)
    # Castellum's agent on site-b: it refuses a request sealed for another channel.
    castellum = Castellum([castellum_key], [signing_key.public_key()], channel="site-b")
    listener = Client(broker.url, SITE_B_LISTENER_TOKEN)
    headers: list[dict[str, Any]] = []

    def open_and_answer(job: dict[str, Any]) -> None:
        opened = castellum.open(job["payload"], kind=job["kind"], job_id=job["id"], now=_now())
        headers.append(opened.header)
        answer = json.dumps({"found": json.loads(opened.payload)}).encode()
        listener.answer(
            job["id"], result=seal_answer(opened, answer, job_id=job["id"], outcome="done")
        )

    stream = open_stream(
        broker, "/v1/channels/site-b/stream", SITE_B_LISTENER_TOKEN, on_job=open_and_answer
    )
    sealer = Sealer(signing_key=signing, recipients=[public])
    client = connect(broker.url, SITES_SUBMITTER_TOKEN, sealer=sealer, channel="site-b")

    assert client.call("contact.lookup", {"participant": "P-0042"}, wait=10) == {
        "found": {"participant": "P-0042"}
    }
    later = client.submit_sealed("contact.lookup", {"participant": "P-0043"})
    assert client.fetch(later.handle, wait=10) == {"found": {"participant": "P-0043"}}
    assert [header["ch"] for header in headers] == ["site-b", "site-b"]
    assert len(stream.ids()) == 2
    assert stream.failure is None
    listener.close()


def _now() -> int:
    return int(time.time())
