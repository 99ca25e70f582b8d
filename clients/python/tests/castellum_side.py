"""Castellum's side of sealed/v1, for the tests only: what ``backchannel agent
--open-with ... --trust-signer ...`` does to a sealed request (the checks of
SEALED.md in their order, each with its refusal code) and to the handler's
answer.

Written from SEALED.md on ``cryptography`` and ``pyhpke`` directly, without
``backchannel.sealed``, so that the tests pit two implementations against each
other rather than the client against itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pyhpke import AEADId, CipherSuite, KDFId, KEMId, KEMKey

SUITE = CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.CHACHA20_POLY1305)
SKEW = 60


class Refused(Exception):
    """A refusal with its SEALED.md code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def error(self) -> dict[str, str]:
        """The job's plain ``failed`` error, as the agent posts it."""
        return {"code": self.code, "message": self.message}


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(text: Any) -> bytes:
    if not isinstance(text, str) or not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("not base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:
        raise ValueError("not base64url") from exc
    if b64u(data) != text:
        raise ValueError("not canonical")
    return data


def kid(public: Any) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return b64u(hashlib.sha256(raw).digest()[:12])


@dataclass(frozen=True)
class Opened:
    """An opened request: what the handler gets, and what seals its answer."""

    header: dict[str, Any]
    payload: bytes
    enc: bytes
    secret: bytes = field(repr=False)

    @property
    def ref(self) -> str:
        ref: str = self.header["ref"]
        return ref


@dataclass
class Castellum:
    """The agent's keys and state: recipient private keys, pinned signers,
    the channel, and the replay cache (enc -> job id)."""

    keys: list[X25519PrivateKey]
    signers: list[Ed25519PublicKey]
    channel: str = "default"
    seen: dict[bytes, int] = field(default_factory=dict)

    def open(self, envelope: Any, *, kind: str, job_id: int, now: int) -> Opened:
        """The checks of SEALED.md, in order; :class:`Refused` at the first that fails."""
        try:
            if not isinstance(envelope, dict) or set(envelope) != {
                "sealed",
                "h",
                "enc",
                "ct",
                "sig",
            }:
                raise ValueError("envelope fields")
            if envelope["sealed"] != "bc1":
                raise ValueError("tag")
            h, enc, ct, sig = (unb64u(envelope[k]) for k in ("h", "enc", "ct", "sig"))
            if len(h) > 1024 or len(enc) != 32 or len(sig) != 64:
                raise ValueError("sizes")
            header = json.loads(h)
            if not isinstance(header, dict):
                raise ValueError("header")
            if header.get("v") != 1 or header.get("suite") != "X25519-SHA256-ChaCha20Poly1305":
                raise ValueError("version or suite")
            for name in ("rkid", "skid", "ch", "kind", "ref"):
                if not isinstance(header.get(name), str):
                    raise ValueError(name)
            for name in ("iat", "exp"):
                if not isinstance(header.get(name), int) or isinstance(header.get(name), bool):
                    raise ValueError(name)
        except ValueError as exc:
            raise Refused(
                "seal_malformed", f"the sealed request is not well formed ({exc})"
            ) from None
        signers = {kid(key): key for key in self.signers}
        signer = signers.get(header["skid"])
        signed = b"backchannel/v1 request signature\x00" + len(h).to_bytes(4, "big") + h + enc + ct
        try:
            if signer is None:
                raise InvalidSignature
            signer.verify(sig, signed)
        except InvalidSignature:
            raise Refused("seal_bad_signature", "the signer is not trusted") from None
        if header["ch"] != self.channel or header["kind"] != kind:
            raise Refused("seal_mismatch", "the header names another channel or kind")
        if now > header["exp"] + SKEW:
            raise Refused("seal_expired", "the request is past its exp")
        keys = {kid(key.public_key()): key for key in self.keys}
        key = keys.get(header["rkid"])
        if key is None:
            raise Refused("seal_unknown_key", "no recipient key with this id")
        if self.seen.get(enc, job_id) != job_id:
            raise Refused("seal_replay", "this request was seen under another job")
        try:
            context = SUITE.create_recipient_context(
                enc, KEMKey.from_pyca_cryptography_key(key), info=b"backchannel/v1 request\x00" + h
            )
            payload = context.open(ct, b"")
        except Exception:
            raise Refused("seal_malformed", "the request does not open") from None
        self.seen[enc] = job_id
        secret = context.export(b"backchannel/v1 response", 32)
        return Opened(header=header, payload=payload, enc=enc, secret=secret)


def seal_answer(
    opened: Opened,
    answer: bytes,
    *,
    job_id: int,
    outcome: str,
    rn: bytes | None = None,
    ref: str | None = None,
) -> dict[str, str]:
    """The sealed answer to ``opened`` (``ref`` may be overridden, to forge)."""
    rn = secrets.token_bytes(32) if rn is None else rn
    rh = json.dumps(
        {"v": 1, "ref": opened.ref if ref is None else ref, "job": job_id, "outcome": outcome},
        separators=(",", ":"),
    ).encode()
    salt = opened.enc + rn
    key = HKDF(hashes.SHA256(), 32, salt=salt, info=b"key").derive(opened.secret)
    nonce = HKDF(hashes.SHA256(), 12, salt=salt, info=b"nonce").derive(opened.secret)
    ct = ChaCha20Poly1305(key).encrypt(nonce, answer, b"backchannel/v1 response\x00" + rh)
    return {"sealed": "bc1", "h": b64u(rh), "rn": b64u(rn), "ct": b64u(ct)}
