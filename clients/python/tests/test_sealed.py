"""Sealed jobs (sealed/v1): the vectors of SEALED.md and RFC 9180, the answers
the client must refuse, castellum's refusals, the handle, the key files; then
sealed calls through a real broker, with a Python listener playing castellum
(``castellum_side``, an implementation of its own)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from pyhpke import AEADId, CipherSuite, KDFId, KEMId

from backchannel import (
    AnswerHandle,
    Client,
    ForeignAnswer,
    Job,
    JobExpired,
    JobFailed,
    JobState,
    JobStillOpen,
    SealBadSignature,
    SealedJob,
    Sealer,
    SealError,
    SealExpired,
    SealMalformed,
    SealMismatch,
    SealRefused,
    SealReplay,
    SealRequired,
    SealUnknownKey,
)
from backchannel.errors import REFUSALS
from backchannel.sealed import KeyFileError, _json_bytes, key_id, unb64u
from castellum_side import Castellum, Opened, Refused, seal_answer
from support import (
    LISTENER_TOKEN,
    SUBMITTER_TOKEN,
    Exchange,
    Recorder,
    TcpProxy,
    openssl_keys,
    write,
)

HERE = Path(__file__).parent
VECTORS = json.loads((HERE / "sealed-vectors.json").read_text())
RFC9180 = json.loads((HERE / "rfc9180-x25519-sha256-chacha20poly1305.json").read_text())
SUITE = CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.CHACHA20_POLY1305)


@dataclass
class Keys:
    """Key files as openssl writes them, and castellum's side holding the other halves."""

    signing_key: Path
    recipient: Path
    castellum_key: Path
    castellum: Castellum

    def sealer(self, **options: Any) -> Sealer:
        return Sealer(signing_key=self.signing_key, recipients=[self.recipient], **options)


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    signing, public, private = openssl_keys(tmp_path, "main")
    signing_key = serialization.load_pem_private_key(signing.read_bytes(), None)
    castellum_key = serialization.load_pem_private_key(private.read_bytes(), None)
    assert isinstance(signing_key, Ed25519PrivateKey)
    assert isinstance(castellum_key, X25519PrivateKey)
    return Keys(signing, public, private, Castellum([castellum_key], [signing_key.public_key()]))


def vector_sealer(tmp_path: Path) -> Sealer:
    return Sealer(
        signing_key=write(tmp_path / "scheduler.key", VECTORS["scheduler_ed25519_private_pem"]),
        recipients=[write(tmp_path / "castellum.pub", VECTORS["castellum_x25519_public_pem"])],
    )


def vector_castellum() -> Castellum:
    private = serialization.load_pem_private_key(
        VECTORS["castellum_x25519_private_pem"].encode(), None
    )
    signer = serialization.load_pem_public_key(VECTORS["scheduler_ed25519_public_pem"].encode())
    assert isinstance(private, X25519PrivateKey)
    return Castellum([private], [signer])  # type: ignore[list-item]


def a_job(state: str, *, id: int = VECTORS["job_id"], result: Any = None, error: Any = None) -> Job:
    return Job.from_json(
        {
            "id": id,
            "kind": VECTORS["kind"],
            "state": state,
            "payload": VECTORS["request"],
            "result": result,
            "error": error,
            "attempts": 1,
            "created_at": "2026-11-30T09:33:20Z",
            "deadline": "2026-11-30T09:38:20Z",
            "completed_at": None if state in ("pending", "delivered") else "2026-11-30T09:33:21Z",
        }
    )


# The vectors ---------------------------------------------------------------------------------


def test_the_sealed_vector_in_full(tmp_path: Path) -> None:
    sealer = vector_sealer(tmp_path)
    assert sealer.signer_kid == VECTORS["scheduler_kid"]
    assert sealer.recipient_kids == [VECTORS["castellum_kid"]]
    # The vector's sealed plaintext is payload_json's value in compact JSON with
    # non-ASCII escaped ("Gr\u00fc\u00dfe"): the spelling the client writes
    # any payload value in. So the request comes out exact from the value.
    payload = _json_bytes(json.loads(VECTORS["payload_json"]))
    assert payload.isascii() and b"Gr\\u00fc\\u00dfe" in payload

    sealed = sealer._seal(
        VECTORS["kind"],
        payload,
        job_timeout=300,
        recipient=None,
        now=VECTORS["now"],
        ref=bytes(range(16)),
        ephemeral_ikm=bytes.fromhex(VECTORS["ephemeral_ikm_hex"]),
    )
    assert sealed.envelope == VECTORS["request"], "the request, byte for byte"
    assert unb64u(sealed.envelope["h"]) == VECTORS["header_json"].encode()
    assert sealed.ref == json.loads(VECTORS["header_json"])["ref"]
    handle = sealed.handle
    assert handle.secret.hex() == VECTORS["exporter_secret_hex"]
    assert handle.exp == VECTORS["now"] + 300

    # Castellum's side opens the vector's request to the same payload and secret.
    opened = vector_castellum().open(
        VECTORS["request"], kind=VECTORS["kind"], job_id=VECTORS["job_id"], now=VECTORS["now"]
    )
    assert opened.payload == payload and opened.secret.hex() == VECTORS["exporter_secret_hex"]
    assert json.loads(opened.payload) == json.loads(VECTORS["payload_json"])

    # The answer: produced exactly from its plaintext and nonce, and opened back.
    answer = seal_answer(
        opened,
        VECTORS["answer_plaintext_json"].encode(),
        job_id=VECTORS["job_id"],
        outcome=VECTORS["answer_outcome"],
        rn=bytes.fromhex(VECTORS["response_nonce_hex"]),
    )
    assert answer == VECTORS["answer"]
    bound = handle.for_job(VECTORS["job_id"])
    expected = json.loads(VECTORS["answer_plaintext_json"])
    assert (
        bound.open_answer(VECTORS["answer"], job_id=VECTORS["job_id"], outcome="done") == expected
    )
    assert bound.open(a_job("done", result=VECTORS["answer"])) == expected


def test_a_random_seal_opens_at_castellum(keys: Keys) -> None:
    sealer = keys.sealer()
    first = sealer.seal("contact.lookup", {"n": "Grüße"}, job_timeout=29.75)
    second = sealer.seal("contact.lookup", {"n": "Grüße"}, job_timeout=29.75)
    assert first.envelope["enc"] != second.envelope["enc"] and first.ref != second.ref
    assert len(unb64u(first.ref)) == 16
    header = json.loads(unb64u(first.envelope["h"]))
    assert list(header) == ["v", "suite", "rkid", "skid", "ch", "kind", "ref", "iat", "exp"]
    assert header["exp"] - header["iat"] == 30, "exp = iat + the job's timeout, rounded up"
    assert (header["ch"], header["rkid"], header["skid"]) == (
        "default",
        sealer.recipient_kids[0],
        sealer.signer_kid,
    )
    opened = keys.castellum.open(first.envelope, kind="contact.lookup", job_id=1, now=header["iat"])
    assert json.loads(opened.payload) == {"n": "Grüße"}
    assert opened.secret == first.handle.secret


def test_the_rfc9180_vectors_of_the_suite() -> None:
    vector = RFC9180
    assert (vector["mode"], vector["kem_id"], vector["kdf_id"], vector["aead_id"]) == (0, 32, 1, 3)
    raw = serialization.Encoding.Raw
    for role in ("E", "R"):
        pair = SUITE.kem.derive_key_pair(bytes.fromhex(vector[f"ikm{role}"]))
        assert pair.private_key.raw.private_bytes_raw().hex() == vector[f"sk{role}m"]
        assert (
            pair.public_key.raw.public_bytes(raw, serialization.PublicFormat.Raw).hex()
            == (vector[f"pk{role}m"])
        )
    recipient = SUITE.kem.derive_key_pair(bytes.fromhex(vector["ikmR"]))
    info = bytes.fromhex(vector["info"])
    enc, sender = SUITE.create_sender_context(
        recipient.public_key,
        info=info,
        eks=SUITE.kem.derive_key_pair(bytes.fromhex(vector["ikmE"])),
    )
    assert enc.hex() == vector["enc"]
    receiver = SUITE.create_recipient_context(enc, recipient.private_key, info=info)
    wanted = {case["sequence_number"]: case for case in vector["encryptions"]}
    for sequence in range(max(wanted) + 1):
        case = wanted.get(sequence)
        aad = bytes.fromhex(case["aad"]) if case else b"filler"
        pt = bytes.fromhex(case["pt"]) if case else b"filler"
        ct = sender.seal(pt, aad)
        assert receiver.open(ct, aad) == pt
        if case:
            assert ct.hex() == case["ct"], f"sequence {sequence}"
    for case in vector["exports"]:
        context = bytes.fromhex(case["exporter_context"])
        assert sender.export(context, case["L"]).hex() == case["exported_value"]
        assert receiver.export(context, case["L"]).hex() == case["exported_value"]
    # The exporter secret itself, through the one export sealed/v1 makes, is
    # checked by the SEALED.md vector above.


def test_key_ids() -> None:
    public = serialization.load_pem_public_key(VECTORS["castellum_x25519_public_pem"].encode())
    assert key_id(public) == VECTORS["castellum_kid"]  # type: ignore[arg-type]
    assert len(VECTORS["castellum_kid"]) == 16


# Answers the client refuses ----------------------------------------------------------------


@pytest.fixture
def exchange(keys: Keys) -> tuple[AnswerHandle, Opened]:
    """A sealed request for job 7 and castellum's view of it."""
    sealed = keys.sealer().seal("contact.lookup", {"participant": "P-1"}, job_timeout=30)
    opened = keys.castellum.open(
        sealed.envelope, kind="contact.lookup", job_id=7, now=sealed.handle.exp - 30
    )
    return sealed.handle.for_job(7), opened


def test_a_sealed_result_and_a_sealed_error_open(exchange: tuple[AnswerHandle, Opened]) -> None:
    handle, opened = exchange
    done = seal_answer(opened, b'{"email":"p1@example.org"}', job_id=7, outcome="done")
    assert handle.open(a_job("done", id=7, result=done)) == {"email": "p1@example.org"}
    body = {"status": 404, "body": {"error": {"code": "job_error", "message": "no such person"}}}
    failed = seal_answer(opened, json.dumps(body).encode(), job_id=7, outcome="failed")
    with pytest.raises(JobFailed) as raised:
        handle.open(a_job("failed", id=7, error=failed))
    assert type(raised.value) is JobFailed and raised.value.error == body
    assert raised.value.handler_status == 404
    assert raised.value.message == "the handler answered 404: no such person"


def test_answers_that_are_not_castellums_are_refused(
    exchange: tuple[AnswerHandle, Opened], keys: Keys
) -> None:
    handle, opened = exchange
    plain = b'{"email":"p1@example.org"}'

    def refused(job: Job, reason: str) -> None:
        with pytest.raises(ForeignAnswer, match=reason) as raised:
            handle.open(job)
        assert raised.value.code == "foreign_answer" and raised.value.job == job
        assert isinstance(raised.value, SealError)
        assert "p1@example.org" not in str(raised.value)

    for_another_job = seal_answer(opened, plain, job_id=8, outcome="done")
    refused(a_job("done", id=7, result=for_another_job), "names job 8, not 7")
    another_ref = seal_answer(opened, plain, job_id=7, outcome="done", ref="AAAAAAAAAAAAAAAAAAAAAA")
    refused(a_job("done", id=7, result=another_ref), "another request")
    sealed_done = seal_answer(opened, plain, job_id=7, outcome="done")
    refused(a_job("failed", id=7, error=sealed_done), "says 'done', the job is failed")
    sealed_failed = seal_answer(opened, plain, job_id=7, outcome="failed")
    refused(a_job("done", id=7, result=sealed_failed), "says 'failed', the job is done")
    refused(a_job("done", id=7, result={"email": "p1@example.org"}), "result is not sealed")
    refused(a_job("done", id=7, result=None), "result is not sealed")
    refused(a_job("failed", id=7, error={"message": "unreachable"}), "unsealed error")
    refused(a_job("failed", id=7, error={"status": 500, "body": None}), "unsealed error")
    # The same answer in another job (the broker moving answers around).
    refused(a_job("done", id=9, result=sealed_done), "job 9 for job 7")

    # Sealed for another request (another secret), or tampered with.
    other = keys.sealer().seal("contact.lookup", {"participant": "P-1"}, job_timeout=30)
    other_opened = keys.castellum.open(
        other.envelope, kind="contact.lookup", job_id=7, now=other.handle.exp - 30
    )
    refused(
        a_job("done", id=7, result=seal_answer(other_opened, plain, job_id=7, outcome="done")),
        "does not open",
    )
    flipped = dict(
        sealed_done, ct=sealed_done["ct"][:-2] + ("AA" if sealed_done["ct"][-2:] != "AA" else "AB")
    )
    refused(a_job("done", id=7, result=flipped), "does not open|not well formed")
    relabelled = dict(sealed_done, h=seal_answer(opened, plain, job_id=8, outcome="done")["h"])
    refused(a_job("done", id=7, result=relabelled), "does not open")
    for malformed in (
        {**sealed_done, "extra": "x"},
        {k: v for k, v in sealed_done.items() if k != "rn"},
        {**sealed_done, "rn": sealed_done["rn"] + "="},
        {**sealed_done, "rn": "AAAA"},
        {**sealed_done, "h": 5},
    ):
        refused(a_job("done", id=7, result=malformed), "not well formed")


def test_each_refusal_of_castellum_has_its_class(exchange: tuple[AnswerHandle, Opened]) -> None:
    handle, _ = exchange
    expected = {
        "seal_malformed": SealMalformed,
        "seal_bad_signature": SealBadSignature,
        "seal_mismatch": SealMismatch,
        "seal_expired": SealExpired,
        "seal_unknown_key": SealUnknownKey,
        "seal_replay": SealReplay,
        "seal_required": SealRequired,
    }
    assert expected == REFUSALS
    for code, cls in expected.items():
        error = {"code": code, "message": "refused by the agent"}
        with pytest.raises(cls) as raised:
            handle.open(a_job("failed", id=7, error=error))
        refusal = raised.value
        assert type(refusal) is cls and refusal.code == code and refusal.error == error
        assert isinstance(refusal, SealRefused) and isinstance(refusal, JobFailed)
        assert isinstance(refusal, SealError) and refusal.job.id == 7
        assert (
            str(refusal)
            == f"{code}: castellum refused the sealed request ({code}): refused by the agent"
        )
    classes = set(expected.values())
    assert len(classes) == len(expected), "one class per code"
    with pytest.raises(SealRefused) as unknown:
        handle.open(a_job("failed", id=7, error={"code": "seal_from_the_future"}))
    assert type(unknown.value) is SealRefused and unknown.value.code == "seal_from_the_future"


def test_jobs_without_an_answer(exchange: tuple[AnswerHandle, Opened]) -> None:
    handle, _ = exchange
    with pytest.raises(JobExpired):
        handle.open(a_job("expired", id=7))
    with pytest.raises(JobStillOpen):
        handle.open(a_job("delivered", id=7))


# The handle ------------------------------------------------------------------------------


def test_the_handle_survives_serialisation(exchange: tuple[AnswerHandle, Opened]) -> None:
    handle, opened = exchange
    text = handle.dumps()
    again = AnswerHandle.loads(text)
    assert again == handle and again.job == 7
    assert AnswerHandle.loads(text.encode()) == handle
    done = seal_answer(opened, b'"fetched later"', job_id=7, outcome="done")
    assert again.open(a_job("done", id=7, result=done)) == "fetched later"
    secret = handle.secret.hex()
    assert secret not in repr(handle) and "secret" not in repr(handle)
    assert SealedJob(a_job("done", id=7, result=done), handle).open() == "fetched later"

    for broken in ("", "{}", "[1]", text.replace('"job":7', '"job":-1'), text[:-5] + "x", "nul"):
        with pytest.raises(ValueError, match="not a backchannel answer handle") as raised:
            AnswerHandle.loads(broken)
        assert secret not in str(raised.value)
    with pytest.raises(ValueError):
        handle.for_job(0)


# Keys ---------------------------------------------------------------------------------------


def test_key_files_are_checked(tmp_path: Path, keys: Keys) -> None:
    sealer = keys.sealer()
    assert sealer.channel == "default" and len(sealer.signer_kid) == 16
    assert "PRIVATE" not in repr(sealer)
    _, other_public, _ = openssl_keys(tmp_path, "next")
    rotated = Sealer(signing_key=keys.signing_key, recipients=[other_public, keys.recipient])
    first, second = rotated.recipient_kids
    assert json.loads(unb64u(rotated.seal("k", 1, job_timeout=5).envelope["h"]))["rkid"] == first
    picked = rotated.seal("k", 1, job_timeout=5, recipient=second)
    assert json.loads(unb64u(picked.envelope["h"]))["rkid"] == second == sealer.recipient_kids[0]

    def refused(match: str, **paths: Any) -> None:
        arguments = {"signing_key": keys.signing_key, "recipients": [keys.recipient], **paths}
        with pytest.raises(KeyFileError, match=match) as raised:
            Sealer(**arguments)
        assert "BEGIN" not in str(raised.value)

    missing = tmp_path / "missing.key"
    refused(f"cannot read the signing key {missing}", signing_key=missing)
    refused("holds an X25519 private key, not an Ed25519", signing_key=keys.castellum_key)
    refused("holds an X25519 public key, not an Ed25519", signing_key=keys.recipient)
    refused(
        "holds an X25519 private key: give the scheduler castellum's public key",
        recipients=[keys.castellum_key],
    )
    refused("holds an Ed25519 private key, not an X25519", recipients=[keys.signing_key])
    garbage = write(
        tmp_path / "garbage.pem",
        "-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n",
    )
    refused("is not a PEM key", recipients=[garbage])
    refused("is not a PEM key", signing_key=write(tmp_path / "empty", ""))
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pass"),
        )
    )
    refused("is encrypted", signing_key=encrypted)
    with pytest.raises(ValueError, match="at least one"):
        Sealer(signing_key=keys.signing_key, recipients=[])
    with pytest.raises(TypeError):
        Sealer(signing_key=keys.signing_key, recipients=str(keys.recipient))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="twice"):
        Sealer(signing_key=keys.signing_key, recipients=[keys.recipient, keys.recipient])
    with pytest.raises(ValueError, match="no recipient key"):
        sealer.seal("k", 1, job_timeout=5, recipient="nope")
    with pytest.raises(ValueError, match="1024"):
        sealer.seal("k" * 1000, 1, job_timeout=5)


def test_the_old_timeout_keyword_of_seal_still_works_with_a_warning(keys: Keys) -> None:
    sealer = keys.sealer()
    with pytest.warns(DeprecationWarning, match=r"Sealer\.seal\(timeout=\) is deprecated"):
        sealed = sealer.seal("k", 1, timeout=5)
    header = json.loads(unb64u(sealed.envelope["h"]))
    assert header["exp"] - header["iat"] == 5 and sealed.job_timeout == 5
    with pytest.warns(DeprecationWarning, match="use job_timeout"):
        assert sealed.timeout == 5
    with pytest.raises(TypeError, match="job_timeout"):
        sealer.seal("k", 1)
    with pytest.raises(TypeError, match="not both"):
        sealer.seal("k", 1, job_timeout=5, timeout=5)


def test_a_sealing_client_does_not_submit_in_clear(keys: Keys) -> None:
    with Client("http://127.0.0.1:9", "a-token-0000000000", sealer=keys.sealer()) as client:
        with pytest.raises(ValueError, match="submit_sealed"):
            client.submit("contact.lookup", {"participant": "P-1"})
        with pytest.raises(ValueError, match="idempotency key is its ref"):
            client.call("contact.lookup", None, idempotency_key="mine")
    with Client("http://127.0.0.1:9", "a-token-0000000000") as plain:
        with pytest.raises(ValueError, match="no sealer"):
            plain.submit_sealed("contact.lookup", None)
        handle = AnswerHandle(ref="r", kind="k", enc=bytes(32), secret=bytes(32), exp=0)
        with pytest.raises(ValueError, match="never submitted"):
            plain.fetch(handle)


# Through a real broker, castellum played by castellum_side ----------------------------------


MARKER = "marker-" + os.urandom(6).hex()


class PlayCastellum:
    """Answers each submitted job from the recorder's hook, as castellum's
    agent would: opens the payload as the broker stores it (jsonb), calls
    ``handler``, seals its answer (or posts the refusal)."""

    def __init__(self, keys: Keys, broker_url: str, handler: Any, tamper: Any = None) -> None:
        self.castellum = keys.castellum
        self.listener = Client(broker_url, LISTENER_TOKEN)
        self.handler, self.tamper = handler, tamper
        self.opened: list[Opened] = []
        self.recorder = Recorder(on_response=self.on_response)

    def on_response(self, exchange: Exchange) -> None:
        if exchange.method != "POST" or exchange.status != 202 or exchange.path != "/v1/jobs":
            return
        job = exchange.body
        try:
            opened = self.castellum.open(
                job["payload"], kind=job["kind"], job_id=job["id"], now=_now()
            )
        except Refused as refusal:
            self.listener.answer(job["id"], error=refusal.error())
            return
        self.opened.append(opened)
        outcome, value = self.handler(json.loads(opened.payload))
        answer = seal_answer(opened, json.dumps(value).encode(), job_id=job["id"], outcome=outcome)
        if self.tamper is not None:
            answer = self.tamper(answer, opened, job)
        if outcome == "done":
            self.listener.answer(job["id"], result=answer)
        else:
            self.listener.answer(job["id"], error=answer)

    def close(self) -> None:
        self.listener.close()


def _now() -> int:
    return int(time.time())


@pytest.fixture
def play(keys: Keys, broker: Any) -> Iterator[Any]:
    players: list[PlayCastellum] = []

    def start(handler: Any, tamper: Any = None) -> PlayCastellum:
        players.append(PlayCastellum(keys, broker.url, handler, tamper))
        return players[-1]

    yield start
    for player in players:
        player.close()


def lookup(payload: Any) -> tuple[str, Any]:
    if payload["participant"] == "P-0042":
        return "done", {"email": "p42@example.org", "note": MARKER + "-answer"}
    return "failed", {
        "status": 404,
        "body": {"error": {"code": "job_error", "message": "no such participant"}},
    }


def test_a_sealed_call_through_the_broker(broker: Any, keys: Keys, play: Any, connect: Any) -> None:
    castellum = play(lookup)
    client = connect(broker.url, recorder=castellum.recorder, sealer=keys.sealer(), max_wait=0.5)

    payload = {"participant": "P-0042", "note": MARKER + "-payload Grüße"}
    answer = client.call("contact.lookup", payload, wait=20)
    assert answer == {"email": "p42@example.org", "note": MARKER + "-answer"}
    assert json.loads(castellum.opened[0].payload) == payload, "castellum read the payload"

    submit = castellum.recorder.exchanges[0]
    assert submit.sent["idempotency_key"] == castellum.opened[0].ref, "ref is the idempotency key"
    assert submit.sent["payload"]["sealed"] == "bc1"
    header = castellum.opened[0].header
    assert header["exp"] - header["iat"] == 20, (
        "exp = iat + the job's timeout (19.75 s, rounded up)"
    )

    with pytest.raises(JobFailed) as failed:
        client.call("contact.lookup", {"participant": "P-0001"}, wait=20)
    assert failed.value.handler_status == 404
    assert failed.value.message == "the handler answered 404: no such participant"

    # The broker's table holds no byte of the plain payloads or answers.
    database = broker.database
    assert database.count_jobs() == 2
    stored = database.value(
        "SELECT string_agg(payload::text || coalesce(result::text, '') || "
        "coalesce(error::text, '') || idempotency_key, ' ') FROM backchannel.jobs"
    )
    assert MARKER not in stored and "P-0042" not in stored and "p42@example.org" not in stored
    assert "no such participant" not in stored and '"sealed": "bc1"' in stored


def test_castellums_refusal_and_a_foreign_answer_through_the_broker(
    broker: Any, keys: Keys, play: Any, connect: Any
) -> None:
    # Castellum trusts another signer: the agent refuses, the handler is never called.
    castellum = play(lookup)
    castellum.castellum = replace(
        keys.castellum, signers=[Ed25519PrivateKey.generate().public_key()], seen={}
    )
    client = connect(broker.url, recorder=castellum.recorder, sealer=keys.sealer(), max_wait=0.5)
    with pytest.raises(SealBadSignature) as refused:
        client.call("contact.lookup", {"participant": "P-0042"}, wait=20)
    assert refused.value.job.state is JobState.FAILED and not castellum.opened

    # Whoever answers with a listener token but without castellum's keys.
    def forged(answer: dict[str, str], opened: Opened, job: Any) -> Any:
        return {"email": "attacker@example.org"}

    impostor = play(lookup, tamper=forged)
    client = connect(broker.url, recorder=impostor.recorder, sealer=keys.sealer(), max_wait=0.5)
    with pytest.raises(ForeignAnswer, match="result is not sealed"):
        client.call("contact.lookup", {"participant": "P-0042"}, wait=20)

    # A real answer of castellum's, but sealed for another job.
    def moved(answer: dict[str, str], opened: Opened, job: Any) -> Any:
        return seal_answer(opened, b'"moved"', job_id=job["id"] + 1000, outcome="done")

    mover = play(lookup, tamper=moved)
    client = connect(broker.url, recorder=mover.recorder, sealer=keys.sealer(), max_wait=0.5)
    with pytest.raises(ForeignAnswer, match="names job"):
        client.call("contact.lookup", {"participant": "P-0042"}, wait=20)


def test_submit_now_fetch_later_through_the_broker(broker: Any, keys: Keys, connect: Any) -> None:
    client = connect(broker.url, sealer=keys.sealer())
    submitted = client.submit_sealed("contact.lookup", {"participant": "P-0042"}, job_timeout=60)
    assert isinstance(submitted, SealedJob) and submitted.job.state is JobState.PENDING
    assert submitted.handle.job == submitted.job.id
    kept = submitted.handle.dumps()  # e.g. into the scheduler's own database
    with pytest.raises(JobStillOpen):
        submitted.open()

    # Castellum answers later, from the job as the broker stores it.
    with Client(broker.url, LISTENER_TOKEN) as listener:
        job = Client(broker.url, SUBMITTER_TOKEN).get(submitted.job.id)
        opened = keys.castellum.open(job.payload, kind=job.kind, job_id=job.id, now=_now())
        assert json.loads(opened.payload) == {"participant": "P-0042"}
        listener.answer(
            job.id, result=seal_answer(opened, b'{"late":true}', job_id=job.id, outcome="done")
        )

    # Another client, without a sealer, in another process for all it knows.
    later = connect(broker.url)
    assert later.fetch(AnswerHandle.loads(kept), wait=10) == {"late": True}
    # The stored job is sealed: a plain read shows nothing of it.
    assert Client(broker.url, SUBMITTER_TOKEN).get(submitted.job.id).result["sealed"] == "bc1"


def test_a_sealed_call_that_nobody_answers_expires(broker: Any, keys: Keys, connect: Any) -> None:
    client = connect(broker.url, sealer=keys.sealer())
    with pytest.raises(JobExpired):
        client.call("contact.lookup", {"participant": "P-0042"}, wait=1.0)


def test_a_retried_sealed_submit_reuses_its_ref(broker: Any, keys: Keys, connect: Any) -> None:
    proxy = TcpProxy(("127.0.0.1", broker.port), cut_responses=1)
    recorder = Recorder()
    client = connect(f"http://127.0.0.1:{proxy.port}", recorder=recorder, sealer=keys.sealer())
    submitted = client.submit_sealed("contact.lookup", {"participant": "P-0042"})
    assert proxy.cut == 1
    lost, retried = recorder.exchanges[:2]
    assert lost.status is None and retried.status == 202
    assert lost.sent == retried.sent, "the same sealed bytes and ref on the retry"
    assert lost.sent["idempotency_key"] == submitted.handle.ref
    assert broker.database.count_jobs() == 1
    proxy.close()


def test_the_old_timeout_keywords_of_sealed_jobs_through_the_broker(
    broker: Any, keys: Keys, connect: Any
) -> None:
    client = connect(broker.url, sealer=keys.sealer())
    with pytest.warns(DeprecationWarning, match=r"submit_sealed\(timeout=\) .* job_timeout="):
        submitted = client.submit_sealed("contact.lookup", None, timeout=60)
    assert submitted.job.deadline - submitted.job.created_at == timedelta(seconds=60)
    old = pytest.warns(DeprecationWarning, match=r"fetch\(timeout=\) is deprecated: use wait=")
    with old, pytest.raises(JobStillOpen):
        client.fetch(submitted.handle, timeout=0.3)
    with pytest.raises(JobStillOpen):
        client.fetch(submitted.handle, wait=0.3)
