"""Reader tokens: a secret per reader, issued at enrolment, shown once, stored only as a hash.

A token is 32 URL-safe characters (192 random bits). The store keeps a random salt, the scrypt
parameters and ``digest = sha256(scrypt(token, salt))``, never the token. A client that signs
in fetches the salt and parameters (not secret), derives the key once (about 0.1 s) and
presents it with every call; the store checks ``sha256(key) == digest`` on its side: in the
SQLite store in the same transaction as the write, in PostgreSQL inside the stored functions,
so a reader role never sees a digest. The digest of a digest is useless to an attacker who
reads the readers table: presenting it needs a preimage of sha256.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

TOKEN_BYTES = 24
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
KEY_BYTES = 32
_SCRYPT_MAXMEM = 64 * 2**20


@dataclass(frozen=True)
class TokenHash:
    """What the store keeps of a token: salt (hex), scrypt parameters, sha256 (hex) of the key."""

    salt_hex: str
    n: int
    r: int
    p: int
    digest_hex: str

    @property
    def params(self) -> TokenParams:
        return TokenParams(self.salt_hex, self.n, self.r, self.p)


@dataclass(frozen=True)
class TokenParams:
    """The public half of a token hash: what a client needs to derive its key."""

    salt_hex: str
    n: int
    r: int
    p: int


def new_token() -> str:
    """A fresh random token (32 URL-safe characters)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def derive_key(token: str, params: TokenParams) -> bytes:
    """scrypt(token, salt) with the stored parameters: the key a client presents."""
    return hashlib.scrypt(token.strip().encode("utf-8"), salt=bytes.fromhex(params.salt_hex), n=params.n,
                          r=params.r, p=params.p, dklen=KEY_BYTES, maxmem=_SCRYPT_MAXMEM)


def key_digest(key: bytes) -> str:
    """sha256 (hex) of a derived key: what the store compares with."""
    return hashlib.sha256(key).hexdigest()


def hash_token(token: str) -> TokenHash:
    """The stored form of a new token (a fresh salt)."""
    params = TokenParams(secrets.token_hex(16), SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return TokenHash(params.salt_hex, params.n, params.r, params.p, key_digest(derive_key(token, params)))


def key_matches(key: bytes, digest_hex: str | None) -> bool:
    """Whether a presented key matches the stored digest (constant time)."""
    return digest_hex is not None and hmac.compare_digest(key_digest(key), digest_hex)
