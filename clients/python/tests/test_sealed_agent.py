"""Sealed jobs through the real castellum side: the Python client (sync and
async) -> a real broker -> the real ``backchannel agent --open-with ...
--trust-signer ...`` (``BACKCHANNEL_BIN``) -> a local HTTP handler, and back.
The refusals of the agent, with the handler never called; key rotation; the
key ids of ``backchannel keys`` against the client's."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from backchannel import (
    Client,
    JobFailed,
    JobState,
    SealBadSignature,
    Sealer,
    SealExpired,
    SealMismatch,
    SealReplay,
    SealUnknownKey,
)
from backchannel.sealed import _json_bytes
from support import (
    SUBMITTER_TOKEN,
    Broker,
    broker_binary,
    clean_env,
    free_port,
    openssl_keys,
    wait_until,
)

MARKER = "marker-" + os.urandom(6).hex()


@dataclass
class Call:
    payload: Any
    headers: dict[str, str]


@dataclass
class Handler:
    """Castellum's internal endpoint on a free port: answers a lookup of
    ``P-0042`` with 200 (the marker and the ref it was given), anything else
    with 404 and a job error; records every call."""

    url: str = ""
    calls: list[Call] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def start(self) -> Handler:
        handler = self

        class Endpoint(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                payload = json.loads(body)
                handler.calls.append(Call(payload, {k.lower(): v for k, v in self.headers.items()}))
                if isinstance(payload, dict) and payload.get("participant") == "P-0042":
                    status, answer = (
                        200,
                        {
                            "email": "p42@example.org",
                            "note": MARKER + "-answer",
                            "ref": self.headers.get("X-Backchannel-Ref"),
                        },
                    )
                else:
                    status = 404
                    answer = {"error": {"code": "job_error", "message": "no such participant"}}
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/backchannel/job"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def handler() -> Iterator[Handler]:
    running = Handler().start()
    yield running
    running.stop()


@dataclass
class Keys:
    signing_key: Path
    signer_pub: Path
    castellum_pub: Path
    castellum_key: Path

    def sealer(self, **options: Any) -> Sealer:
        return Sealer(signing_key=self.signing_key, recipients=[self.castellum_pub], **options)


def public_of(private: Path) -> Path:
    key = serialization.load_pem_private_key(private.read_bytes(), None)
    path = private.with_suffix(".pub")
    path.write_bytes(
        key.public_key().public_bytes(  # type: ignore[union-attr]
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


def make_keys(directory: Path, name: str) -> Keys:
    signing, castellum_pub, castellum_key = openssl_keys(directory, name)
    return Keys(signing, public_of(signing), castellum_pub, castellum_key)


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path, "main")


def stored(broker: Broker) -> str:
    return broker.database.value(
        "SELECT coalesce(string_agg(payload::text || coalesce(result::text, '') || "
        "coalesce(error::text, '') || coalesce(idempotency_key, ''), ' '), '') "
        "FROM backchannel.jobs"
    )


def test_sealed_round_trips_through_the_real_agent(
    broker: Broker, start_agent: Any, handler: Handler, keys: Keys, connect: Any
) -> None:
    start_agent(
        broker,
        forward=handler.url,
        open_with=[keys.castellum_key],
        trust_signer=[keys.signer_pub],
    )
    sealer = keys.sealer()
    client = connect(broker.url, sealer=sealer)

    payload = {"participant": "P-0042", "note": MARKER + "-payload Grüße"}
    answer = client.call("contact.lookup", payload, wait=20)
    assert answer["email"] == "p42@example.org" and answer["note"] == MARKER + "-answer"
    (call,) = handler.calls
    assert call.payload == payload, "the handler got the plain payload"
    assert call.headers["x-backchannel-kind"] == "contact.lookup"
    assert call.headers["x-backchannel-signer"] == sealer.signer_kid
    assert answer["ref"] == call.headers["x-backchannel-ref"]
    stored_key = broker.database.value("SELECT idempotency_key FROM backchannel.jobs")
    assert stored_key == answer["ref"], "the ref is the idempotency key"

    # The handler's 404 is sealed back as the job's error, and opened.
    with pytest.raises(JobFailed) as failed:
        client.call("contact.lookup", {"participant": "P-0001", "note": MARKER}, wait=20)
    assert type(failed.value) is JobFailed and failed.value.handler_status == 404
    assert failed.value.message == "the handler answered 404: no such participant"

    # The broker's table holds no byte of the plain payloads or answers.
    table = stored(broker)
    assert '"sealed": "bc1"' in table
    for secret in (MARKER, "P-0042", "P-0001", "p42@example.org", "no such participant"):
        assert secret not in table, secret


def test_each_refusal_of_the_real_agent_and_the_handler_never_called(
    broker: Broker, start_agent: Any, handler: Handler, keys: Keys, tmp_path: Path
) -> None:
    start_agent(
        broker,
        forward=handler.url,
        open_with=[keys.castellum_key],
        trust_signer=[keys.signer_pub],
        require_sealed=True,
    )
    payload = {"participant": "P-0042"}
    sealer = keys.sealer()
    plain = Client(broker.url, SUBMITTER_TOKEN)

    def submit(kind: str, envelope: Any, idempotency_key: str | None = None) -> Any:
        job = plain.submit(kind, envelope, job_timeout=30, wait=20, idempotency_key=idempotency_key)
        assert job.state is JobState.FAILED or job.state is JobState.DONE, job
        return job

    # One that passes, then the same sealed request again as a new job.
    first = sealer.seal("contact.lookup", payload, job_timeout=30)
    job = submit("contact.lookup", first.envelope, idempotency_key=first.ref)
    assert first.handle.for_job(job.id).open(job)["email"] == "p42@example.org"
    assert len(handler.calls) == 1
    replayed = submit("contact.lookup", first.envelope)
    with pytest.raises(SealReplay):
        first.handle.for_job(replayed.id).open(replayed)

    cases: list[tuple[Any, Any, type[Exception]]] = []
    stranger = make_keys(tmp_path, "stranger")
    foreign = Sealer(signing_key=stranger.signing_key, recipients=[keys.castellum_pub])
    signed_by_a_stranger = foreign.seal("contact.lookup", payload, job_timeout=30)
    cases.append(("contact.lookup", signed_by_a_stranger, SealBadSignature))
    relabelled = sealer.seal("contact.lookup", payload, job_timeout=30)
    cases.append(("contact.delete", relabelled, SealMismatch))
    expired = sealer._seal(
        "contact.lookup",
        _json_bytes(payload),
        job_timeout=30,
        recipient=None,
        now=int(time.time()) - 3600,
        ref=secrets.token_bytes(16),
        ephemeral_ikm=None,
    )
    cases.append(("contact.lookup", expired, SealExpired))
    retired = Sealer(signing_key=keys.signing_key, recipients=[stranger.castellum_pub])
    to_a_retired_key = retired.seal("contact.lookup", payload, job_timeout=30)
    cases.append(("contact.lookup", to_a_retired_key, SealUnknownKey))
    for kind, sealed, refusal in cases:
        job = submit(kind, sealed.envelope, idempotency_key=sealed.ref)
        with pytest.raises(refusal) as raised:
            sealed.handle.for_job(job.id).open(job)
        assert raised.value.job.state is JobState.FAILED

    # A plain job to an agent that requires sealing.
    with pytest.raises(JobFailed) as failed:
        plain.call("contact.lookup", payload, wait=20)
    assert failed.value.error["code"] == "seal_required"

    assert len(handler.calls) == 1, "no refused job reached the handler"
    plain.close()


def test_rotation_two_recipient_keys_open_a_retired_one_does_not(
    broker: Broker, start_agent: Any, handler: Handler, keys: Keys, tmp_path: Path
) -> None:
    old, new, retired = keys, make_keys(tmp_path, "new"), make_keys(tmp_path, "retired")
    start_agent(
        broker,
        forward=handler.url,
        open_with=[old.castellum_key, new.castellum_key],
        trust_signer=[keys.signer_pub],
    )
    rotating = Sealer(
        signing_key=keys.signing_key, recipients=[new.castellum_pub, old.castellum_pub]
    )
    with Client(broker.url, SUBMITTER_TOKEN, sealer=rotating) as client:
        assert client.call("contact.lookup", {"participant": "P-0042"}, wait=20)["email"]
    with Client(broker.url, SUBMITTER_TOKEN, sealer=old.sealer()) as client:
        assert client.call("contact.lookup", {"participant": "P-0042"}, wait=20)["email"]
    gone = Sealer(signing_key=keys.signing_key, recipients=[retired.castellum_pub])
    with Client(broker.url, SUBMITTER_TOKEN, sealer=gone) as client, pytest.raises(SealUnknownKey):
        client.call("contact.lookup", {"participant": "P-0042"}, wait=20)
    assert len(handler.calls) == 2


def test_a_sighup_reloads_the_agents_keys(
    broker: Broker, start_agent: Any, handler: Handler, keys: Keys, tmp_path: Path
) -> None:
    folder = tmp_path / "open-with"
    folder.mkdir()
    (folder / "first.key").write_bytes(keys.castellum_key.read_bytes())
    port = free_port()
    agent = start_agent(
        broker,
        forward=handler.url,
        open_with=[folder],
        trust_signer=[keys.signer_pub],
        health_port=port,
    )
    added = make_keys(tmp_path, "added")
    sealer = Sealer(signing_key=keys.signing_key, recipients=[added.castellum_pub])
    with Client(broker.url, SUBMITTER_TOKEN, sealer=sealer) as client:
        with pytest.raises(SealUnknownKey):
            client.call("contact.lookup", {"participant": "P-0042"}, wait=20)
        (folder / "added.key").write_bytes(added.castellum_key.read_bytes())
        agent.signal(signal.SIGHUP)

        def reloaded() -> bool:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            return 'backchannel_agent_sealed_key_reloads_total{result="applied"} 1' in text

        wait_until(reloaded, what="the agent to reload its keys")
        assert client.call("contact.lookup", {"participant": "P-0042"}, wait=20)["email"]
    assert agent.process.running()


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(broker_binary()), *args], capture_output=True, text=True, env=clean_env(), check=False
    )


def test_keys_made_by_backchannel_have_the_clients_key_ids(tmp_path: Path) -> None:
    for algorithm in ("x25519", "ed25519"):
        done = run("keys", "new", algorithm, "--out", str(tmp_path / algorithm))
        assert done.returncode == 0, done.stderr
        printed = done.stdout.strip()
        for suffix in (".key", ".pub"):
            assert run("keys", "id", str(tmp_path / f"{algorithm}{suffix}")).stdout.strip() == (
                printed
            )
        assert (tmp_path / f"{algorithm}.key").stat().st_mode & 0o777 == 0o600
    sealer = Sealer(signing_key=tmp_path / "ed25519.key", recipients=[tmp_path / "x25519.pub"])
    assert sealer.signer_kid == run("keys", "id", str(tmp_path / "ed25519.pub")).stdout.strip()
    assert sealer.recipient_kids == [run("keys", "id", str(tmp_path / "x25519.key")).stdout.strip()]
    # And the other way: keys openssl made have the same ids at both ends.
    signing, public, private = openssl_keys(tmp_path, "openssl")
    sealer = Sealer(signing_key=signing, recipients=[public])
    assert run("keys", "id", str(signing)).stdout.strip() == sealer.signer_kid
    assert run("keys", "id", str(private)).stdout.strip() == sealer.recipient_kids[0]
