"""Sealed jobs (``sealed/v1``): the scheduler's side.

The broker and its PostgreSQL carry a job's payload and its answer; with a
:class:`Sealer` they can neither read nor forge them. The payload is sealed
with HPKE (RFC 9180, base mode: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
ChaCha20-Poly1305) to castellum's X25519 key and signed with the scheduler's
Ed25519 key; castellum's agent checks and opens it, and seals its handler's
answer under a key exported from the request's HPKE context, which only the
sender can open: with the :class:`AnswerHandle` it kept from sealing.

The wire format is ``sealed/v1`` (SEALED.md); this module follows it byte for
byte (tested against its vector). The threat model and castellum's side are in
the repository's ``docs/sealed.md``::

    sealer = Sealer(signing_key="/etc/scheduler/seal.key",
                    recipients=["/etc/scheduler/castellum.pub"])
    with Client(url, token, sealer=sealer) as client:
        found = client.call("contact.lookup", {"participant": "P-0042"}, wait=10)

The primitives come from ``cryptography`` (Ed25519, ChaCha20-Poly1305, HKDF,
PEM keys) and ``pyhpke`` (the HPKE key schedule and its exporter); nothing
here is a hand-written primitive.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import os
import re
import secrets
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Union

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pyhpke import AEADId, CipherSuite, KDFId, KEMId, KEMKey

from ._channels import DEFAULT_CHANNEL, check_channel
from ._deprecated import renamed
from .errors import (
    ForeignAnswer,
    JobCancelled,
    JobExpired,
    JobFailed,
    JobStillOpen,
    refusal_for,
)
from .models import Job, JobState, Json

__all__ = [
    "AnswerHandle",
    "KeyFileError",
    "SealedJob",
    "SealedRequest",
    "Sealer",
    "key_id",
]

#: What a path may be.
PathLike = Union[str, "os.PathLike[str]"]

#: The envelope's tag, in requests and answers.
TAG = "bc1"
VERSION = 1
SUITE = "X25519-SHA256-ChaCha20Poly1305"
#: The job timeout a sealed submit sends when it is given none (the broker's
#: default): ``exp`` is bound to it, so it is always sent.
DEFAULT_JOB_TIMEOUT = 30.0
#: The largest header SEALED.md allows, in bytes.
MAX_HEADER = 1024

REQUEST_INFO = b"backchannel/v1 request\x00"
SIGNATURE_CONTEXT = b"backchannel/v1 request signature\x00"
RESPONSE_LABEL = b"backchannel/v1 response"
RESPONSE_AAD = RESPONSE_LABEL + b"\x00"

_SUITE = CipherSuite.new(
    KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.CHACHA20_POLY1305
)
_B64U = re.compile(r"[A-Za-z0-9_-]*")
_ANSWER_FIELDS = frozenset({"sealed", "h", "rn", "ct"})


# Encodings --------------------------------------------------------------------------


def b64u(data: bytes) -> str:
    """base64url without padding (RFC 4648 §5)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64u(text: object) -> bytes:
    """The bytes of strict base64url without padding: only the alphabet, and
    only the canonical form (so one value has one spelling). ``ValueError``
    otherwise."""
    if not isinstance(text, str) or not _B64U.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not base64url without padding")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url without padding") from None
    if b64u(data) != text:
        raise ValueError("not canonical base64url")
    return data


def _json_bytes(value: Json) -> bytes:
    """Compact JSON text, non-ASCII characters escaped (``\\u00fc``): pure
    ASCII, so valid UTF-8 whatever the value holds. This is the spelling of
    SEALED.md's vector (its sealed payload escapes "Grüße"), so a payload
    value seals to the vector's exact bytes; a receiver parses either spelling
    to the same value."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def key_id(public_key: X25519PublicKey | Ed25519PublicKey) -> str:
    """A key's id: base64url of the first 12 bytes of SHA-256 of the raw
    32-byte public key (16 characters)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return b64u(hashlib.sha256(raw).digest()[:12])


# Key files ----------------------------------------------------------------------------


class KeyFileError(ValueError):
    """A key file cannot be used: missing, unreadable, not PEM, or a key of
    another type. The message names the file and what is wrong, never its
    content."""


_KINDS: tuple[tuple[type, str], ...] = (
    (Ed25519PrivateKey, "an Ed25519 private key"),
    (Ed25519PublicKey, "an Ed25519 public key"),
    (X25519PrivateKey, "an X25519 private key"),
    (X25519PublicKey, "an X25519 public key"),
)


def _describe(key: object) -> str:
    for cls, name in _KINDS:
        if isinstance(key, cls):
            return name
    return f"a key of another type ({type(key).__name__})"


def _read_pem(path: PathLike, role: str) -> object:
    """The key in a PEM file (private or public)."""
    where = f"the {role} {os.fspath(path)}"
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise KeyFileError(f"cannot read {where}: {reason}") from None
    if b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in data:
        raise KeyFileError(
            f"{where} is encrypted: keep it unencrypted, readable by its owner only (chmod 600)"
        )
    try:
        if b"-----BEGIN PUBLIC KEY-----" in data:
            return serialization.load_pem_public_key(data)
        if b"PRIVATE KEY-----" in data:
            return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        pass
    raise KeyFileError(
        f"{where} is not a PEM key (PKCS#8 or SubjectPublicKeyInfo, as openssl genpkey "
        "and openssl pkey -pubout write them)"
    )


def load_signing_key(path: PathLike) -> Ed25519PrivateKey:
    """The scheduler's Ed25519 private key from a PEM file
    (``openssl genpkey -algorithm ed25519 -out FILE``)."""
    key = _read_pem(path, "signing key")
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(
            f"the signing key {os.fspath(path)} holds {_describe(key)}, not an Ed25519 "
            "private key (openssl genpkey -algorithm ed25519)"
        )
    return key


def load_recipient_key(path: PathLike) -> X25519PublicKey:
    """Castellum's X25519 public key from a PEM file
    (``openssl pkey -in castellum.key -pubout``)."""
    key = _read_pem(path, "recipient key")
    if isinstance(key, X25519PrivateKey):
        raise KeyFileError(
            f"the recipient key {os.fspath(path)} holds an X25519 private key: give the "
            "scheduler castellum's public key (openssl pkey -pubout); the private key "
            "stays with castellum's agent"
        )
    if not isinstance(key, X25519PublicKey):
        raise KeyFileError(
            f"the recipient key {os.fspath(path)} holds {_describe(key)}, not an X25519 "
            "public key (openssl pkey -pubout of castellum's X25519 key)"
        )
    return key


# The answer's handle ------------------------------------------------------------------


@dataclass(frozen=True)
class AnswerHandle:
    """What opens the answer to one sealed request: its ``ref``, the HPKE
    ``enc``, the secret exported from the request's HPKE context, and (once
    submitted) the broker's job id.

    **Secret material.** Whoever holds a handle and can read the job at the
    broker can read castellum's answer, and could forge one for that job.
    Keep a stored handle (:meth:`dumps`) where the plain answer may be kept,
    for no longer than the job lives, and never in the broker's database or
    a log. ``repr`` leaves the secret out.
    """

    ref: str
    kind: str
    enc: bytes = field(repr=False)
    secret: bytes = field(repr=False)
    #: The request's ``exp`` (Unix seconds).
    exp: int
    #: The broker's job id; ``None`` until the request is submitted.
    job: int | None = None

    def for_job(self, job_id: int) -> AnswerHandle:
        """This handle bound to the broker's job id."""
        if isinstance(job_id, bool) or not isinstance(job_id, int) or job_id < 1:
            raise ValueError("a job id is a positive integer")
        return replace(self, job=job_id)

    def open(self, job: Job) -> Json:
        """The plain result of a ``done`` job sealed for this handle.

        Raises, as :meth:`Client.call` does: :class:`JobFailed` with the opened
        error (in ``job.error``) for a sealed ``failed`` answer; a
        :class:`SealRefused` subclass for castellum's refusal;
        :class:`ForeignAnswer` for an answer that is not castellum's (unsealed,
        not opening, or naming another job, ``ref`` or outcome);
        :class:`JobExpired`, :class:`JobCancelled` or :class:`JobStillOpen`
        for a job that has no answer.
        """
        expected = self.job if self.job is not None else job.id
        if job.id != expected:
            raise ForeignAnswer(f"the broker gave job {job.id} for job {expected}", job=job)
        if job.state is JobState.DONE:
            return self.open_answer(job.result, job_id=job.id, outcome="done", job=job)
        if job.state is JobState.FAILED:
            if not _looks_sealed(job.error):
                refusal = refusal_for(job)
                if refusal is not None:
                    raise refusal
                raise ForeignAnswer("the job failed with an unsealed error", job=job)
            error = self.open_answer(job.error, job_id=job.id, outcome="failed", job=job)
            raise JobFailed(replace(job, error=error))
        if job.state is JobState.EXPIRED:
            raise JobExpired(job)
        if job.state is JobState.CANCELLED:
            raise JobCancelled(job)
        raise JobStillOpen(job)

    def open_answer(
        self, answer: Json, *, job_id: int, outcome: str, job: Job | None = None
    ) -> Json:
        """Open a sealed answer (the job's ``result`` or ``error`` as stored)
        for ``job_id`` and ``outcome`` (``"done"`` or ``"failed"``): the plain
        JSON value castellum's handler answered. :class:`ForeignAnswer` when it
        is not castellum's answer to this request for that job and outcome."""
        if outcome not in ("done", "failed"):
            raise ValueError("outcome is 'done' or 'failed'")
        if not isinstance(answer, Mapping) or answer.get("sealed") != TAG:
            raise ForeignAnswer(f"the {_field(outcome)} is not sealed", job=job)
        try:
            if set(answer) != _ANSWER_FIELDS:
                raise ValueError("unexpected fields")
            header, rn, ct = unb64u(answer["h"]), unb64u(answer["rn"]), unb64u(answer["ct"])
            if len(rn) != 32:
                raise ValueError("rn is not 32 bytes")
        except ValueError:
            raise ForeignAnswer(
                f"the sealed {_field(outcome)} is not well formed", job=job
            ) from None
        key, nonce = _response_key(self.secret, self.enc, rn)
        try:
            plain = ChaCha20Poly1305(key).decrypt(nonce, ct, RESPONSE_AAD + header)
        except InvalidTag:
            raise ForeignAnswer(
                f"the sealed {_field(outcome)} does not open with this request's handle", job=job
            ) from None
        try:
            named = json.loads(header)
        except ValueError:
            named = None
        if not isinstance(named, dict):
            raise ForeignAnswer("the sealed answer's header is not a JSON object", job=job)
        if named.get("v") != VERSION or isinstance(named.get("v"), bool):
            raise ForeignAnswer("the sealed answer's version is unknown", job=job)
        if not isinstance(named.get("ref"), str) or not hmac.compare_digest(
            named["ref"].encode(), self.ref.encode()
        ):
            raise ForeignAnswer("the sealed answer names another request (ref)", job=job)
        if named.get("job") != job_id or isinstance(named.get("job"), bool):
            raise ForeignAnswer(
                f"the sealed answer names job {named.get('job')!r}, not {job_id}", job=job
            )
        if named.get("outcome") != outcome:
            raise ForeignAnswer(
                f"the sealed answer says {named.get('outcome')!r}, the job is {outcome}", job=job
            )
        try:
            return json.loads(plain)
        except ValueError:
            raise ForeignAnswer("the opened answer is not JSON", job=job) from None

    # Keeping it -------------------------------------------------------------------------

    def dumps(self) -> str:
        """The handle as one line of JSON text, for :meth:`loads` later
        (submit now, fetch later). Secret material: see the class."""
        return json.dumps(
            {
                "backchannel_answer_handle": VERSION,
                "ref": self.ref,
                "kind": self.kind,
                "job": self.job,
                "exp": self.exp,
                "enc": b64u(self.enc),
                "secret": b64u(self.secret),
            },
            separators=(",", ":"),
        )

    @classmethod
    def loads(cls, text: str | bytes) -> AnswerHandle:
        """A handle from :meth:`dumps`; ``ValueError`` if it is not one."""
        try:
            data: Any = json.loads(text)
            if not isinstance(data, dict) or data.get("backchannel_answer_handle") != VERSION:
                raise ValueError("not an answer handle")
            job, exp = data["job"], data["exp"]
            if job is not None and (isinstance(job, bool) or not isinstance(job, int) or job < 1):
                raise ValueError("job")
            if isinstance(exp, bool) or not isinstance(exp, int):
                raise ValueError("exp")
            if not isinstance(data["ref"], str) or not isinstance(data["kind"], str):
                raise ValueError("ref or kind")
            enc, secret = unb64u(data["enc"]), unb64u(data["secret"])
            if len(enc) != 32 or len(secret) != 32:
                raise ValueError("enc or secret")
        except (ValueError, KeyError, TypeError):
            # Never quote the text: it holds the secret.
            raise ValueError("not a backchannel answer handle (AnswerHandle.dumps)") from None
        return cls(ref=data["ref"], kind=data["kind"], enc=enc, secret=secret, exp=exp, job=job)


def _field(outcome: str) -> str:
    return "error" if outcome == "failed" else "result"


def _looks_sealed(value: Json) -> bool:
    return isinstance(value, Mapping) and value.get("sealed") == TAG


def _response_key(secret: bytes, enc: bytes, rn: bytes) -> tuple[bytes, bytes]:
    """The answer's key and nonce: HKDF-SHA256 with salt ``enc || rn`` over the
    exported secret, expanded with ``"key"`` (32 bytes) and ``"nonce"`` (12)."""
    salt = enc + rn
    key = HKDF(hashes.SHA256(), 32, salt=salt, info=b"key").derive(secret)
    nonce = HKDF(hashes.SHA256(), 12, salt=salt, info=b"nonce").derive(secret)
    return key, nonce


# Sealing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SealedRequest:
    """A sealed request: the job's ``payload`` (:attr:`envelope`), its
    ``idempotency_key`` (:attr:`ref`) and ``timeout`` (:attr:`job_timeout`),
    and the handle that opens the answer."""

    envelope: dict[str, str]
    handle: AnswerHandle
    #: The job's timeout in seconds, which ``exp`` is bound to.
    job_timeout: float

    @property
    def ref(self) -> str:
        """The request's ``ref``, sent as the job's ``idempotency_key``."""
        return self.handle.ref

    @property
    def timeout(self) -> float:
        """The deprecated name of :attr:`job_timeout`."""
        warnings.warn(
            "SealedRequest.timeout is deprecated: use job_timeout",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.job_timeout


@dataclass(frozen=True)
class SealedJob:
    """A submitted sealed job: the job as the broker answered, and the handle
    (bound to the job id) that opens its answer. Keep :attr:`handle` to fetch
    the answer later (:meth:`Client.fetch`); it is secret material."""

    job: Job
    handle: AnswerHandle

    def open(self) -> Json:
        """:meth:`AnswerHandle.open` on :attr:`job` (which may still be open:
        then :class:`JobStillOpen`)."""
        return self.handle.open(self.job)


@dataclass(frozen=True)
class _Recipient:
    kid: str
    key: X25519PublicKey


class Sealer:
    """Seals requests to castellum and signs them; the answers open with the
    :class:`AnswerHandle` each seal returns.

    ``signing_key`` is the path of the scheduler's Ed25519 private key (PEM,
    ``openssl genpkey -algorithm ed25519``); its public key is pinned by
    castellum's agent (``--trust-signer``). ``recipients`` are paths of
    castellum's X25519 public keys (PEM, ``openssl pkey -pubout``), at least
    one. ``channel`` is the channel named in each header (``"default"``)
    when :meth:`seal` is given none; a :class:`~backchannel.Client` seals for
    its own channel (and refuses a sealer made for another one).

    **Rotation: requests are sealed to the first recipient.** The order is the
    operator's explicit choice, so every request goes to the same key and a
    key castellum does not hold fails every job at once (``seal_unknown_key``)
    rather than some of them. To rotate castellum's key: give the agent the
    new private key beside the old one, then put the new public key first
    here (the old one may stay listed until the agent drops it; it is not
    used), then retire the old key at castellum once the last job sealed to it
    is past its deadline. :meth:`seal` takes ``recipient=<key id>`` to pick
    another listed key explicitly.

    Key files are read once, when the sealer is made. Python cannot wipe
    memory reliably: the keys live as ``cryptography`` key objects (which hold
    them outside Python's heap) for the life of the sealer.
    """

    def __init__(
        self,
        signing_key: PathLike,
        recipients: Sequence[PathLike],
        *,
        channel: str = DEFAULT_CHANNEL,
    ) -> None:
        if isinstance(recipients, (str, bytes)) or not isinstance(recipients, Sequence):
            raise TypeError("recipients is a list of paths of X25519 public keys")
        self._setup(
            load_signing_key(signing_key),
            [load_recipient_key(path) for path in recipients],
            channel,
        )

    @classmethod
    def from_keys(
        cls,
        signing_key: Ed25519PrivateKey,
        recipients: Sequence[X25519PublicKey],
        *,
        channel: str = DEFAULT_CHANNEL,
    ) -> Sealer:
        """A sealer from key objects (e.g. keys kept in a secret store rather
        than in files)."""
        if not isinstance(signing_key, Ed25519PrivateKey):
            raise TypeError("signing_key must be an Ed25519PrivateKey")
        if not all(isinstance(key, X25519PublicKey) for key in recipients):
            raise TypeError("recipients must be X25519PublicKey objects")
        sealer = cls.__new__(cls)
        sealer._setup(signing_key, list(recipients), channel)
        return sealer

    def _setup(
        self, signing_key: Ed25519PrivateKey, recipients: list[X25519PublicKey], channel: str
    ) -> None:
        if not recipients:
            raise ValueError("a sealer needs at least one recipient key")
        channel = check_channel(channel)
        self._signing_key = signing_key
        self._recipients = [_Recipient(key_id(key), key) for key in recipients]
        kids = [recipient.kid for recipient in self._recipients]
        if len(set(kids)) != len(kids):
            raise ValueError("the same recipient key is listed twice")
        self.channel = channel
        #: The key id of the signing key (``skid``), as castellum pins it.
        self.signer_kid = key_id(signing_key.public_key())

    @property
    def recipient_kids(self) -> list[str]:
        """The recipient key ids, in order: requests are sealed to the first."""
        return [recipient.kid for recipient in self._recipients]

    def seal(
        self,
        kind: str,
        payload: Json,
        *,
        job_timeout: float | None = None,
        recipient: str | None = None,
        channel: str | None = None,
        timeout: float | None = None,
    ) -> SealedRequest:
        """Seal ``payload`` (any JSON value) for a job of ``kind`` whose own
        timeout is ``job_timeout`` seconds (required): ``exp`` is now +
        ``job_timeout`` (rounded up to a whole second). ``recipient`` is a key
        id of :attr:`recipient_kids` (the first when ``None``). ``channel`` is
        the header's ``ch``, the channel the job is submitted on (the sealer's
        :attr:`channel` when ``None``); castellum's agent refuses a request
        sealed for another channel than its own (``seal_mismatch``).
        ``timeout`` is the deprecated name of ``job_timeout``."""
        job_timeout = renamed("Sealer.seal", "timeout", "job_timeout", timeout, job_timeout)
        if job_timeout is None:
            raise TypeError("Sealer.seal() needs job_timeout= (the job's own timeout, in seconds)")
        return self._seal(
            kind,
            _json_bytes(payload),
            job_timeout=job_timeout,
            recipient=recipient,
            now=int(time.time()),
            ref=secrets.token_bytes(16),
            ephemeral_ikm=None,
            channel=self.channel if channel is None else check_channel(channel),
        )

    def _seal(
        self,
        kind: str,
        plaintext: bytes,
        *,
        job_timeout: float,
        recipient: str | None,
        now: int,
        ref: bytes,
        ephemeral_ikm: bytes | None,
        channel: str | None = None,
    ) -> SealedRequest:
        """:meth:`seal` with its randomness and clock given (test vectors)."""
        if (
            isinstance(job_timeout, bool)
            or not isinstance(job_timeout, (int, float))
            or not job_timeout > 0
        ):
            raise ValueError("job_timeout must be more than 0 seconds")
        if not isinstance(kind, str) or not kind:
            raise ValueError("kind must be a non-empty string")
        target = self._recipient(recipient)
        header = _json_bytes(
            {
                "v": VERSION,
                "suite": SUITE,
                "rkid": target.kid,
                "skid": self.signer_kid,
                "ch": self.channel if channel is None else channel,
                "kind": kind,
                "ref": b64u(ref),
                "iat": now,
                "exp": now + math.ceil(job_timeout),
            }
        )
        if len(header) > MAX_HEADER:
            raise ValueError(f"the sealed header would be over {MAX_HEADER} bytes (kind too long?)")
        eks = None if ephemeral_ikm is None else _SUITE.kem.derive_key_pair(ephemeral_ikm)
        enc, context = _SUITE.create_sender_context(
            KEMKey.from_pyca_cryptography_key(target.key), info=REQUEST_INFO + header, eks=eks
        )
        ct = context.seal(plaintext, b"")
        secret = context.export(RESPONSE_LABEL, 32)
        signed = SIGNATURE_CONTEXT + len(header).to_bytes(4, "big") + header + enc + ct
        envelope = {
            "sealed": TAG,
            "h": b64u(header),
            "enc": b64u(enc),
            "ct": b64u(ct),
            "sig": b64u(self._signing_key.sign(signed)),
        }
        handle = AnswerHandle(
            ref=b64u(ref), kind=kind, enc=enc, secret=secret, exp=now + math.ceil(job_timeout)
        )
        return SealedRequest(envelope=envelope, handle=handle, job_timeout=float(job_timeout))

    def _recipient(self, kid: str | None) -> _Recipient:
        if kid is None:
            return self._recipients[0]
        for recipient in self._recipients:
            if recipient.kid == kid:
                return recipient
        raise ValueError(f"no recipient key with id {kid!r}; known: {self.recipient_kids}")

    def __repr__(self) -> str:
        return (
            f"Sealer(signer={self.signer_kid!r}, recipients={self.recipient_kids!r}, "
            f"channel={self.channel!r})"
        )
