"""Bearer tokens of the synthesis service: a file of salted hashes, never the tokens themselves.

A token is ``dc_<id>_<secret>``: ``id`` (8 hex digits) finds the user's entry, ``secret`` (32 random
bytes, URL-safe base64) is checked against ``sha256(salt + secret)`` with a constant-time compare.
The secret carries 256 bits of randomness, so a slow password hash would add nothing: nobody can
guess it, and a stolen tokens file gives only hashes. The file (JSON, mode 0600)::

    {"version": 1, "tokens": [{"id": "3f2a9c1e", "user": "radiology-ws3", "salt": "...",
                               "sha256": "...", "created": "2026-05-01T10:00:00+00:00"}]}

``digital-contrast serve --tokens FILE --add-token NAME`` adds one and prints the token once.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
from pathlib import Path
from typing import Any

from DigitalContrastLib.common.atomic import atomic_write_text
from DigitalContrastLib.common.errors import JobError

TOKEN_PATTERN = re.compile(r"^dc_([0-9a-f]{8})_([A-Za-z0-9_-]{43})$")
USER_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


def _digest(salt: str, secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode("ascii")).hexdigest()


class TokenStore:
    """The users and their token hashes, read from ``path`` (re-read when the file changes)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, Any]] = {}
        self._stamp: tuple[float, int] | None = None

    def _load(self) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._entries, self._stamp = {}, None
            return
        stamp = (stat.st_mtime, stat.st_size)
        if stamp == self._stamp:
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            entries = {str(item["id"]): dict(item) for item in data.get("tokens", [])}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise JobError(f"The tokens file {self.path} is not a DigitalContrast tokens file; add tokens with "
                           "'digital-contrast serve --tokens FILE --add-token NAME'.", code="bad_tokens_file") from None
        self._entries, self._stamp = entries, stamp

    def users(self) -> list[str]:
        with self._lock:
            self._load()
            return sorted({entry["user"] for entry in self._entries.values()})

    def user_for(self, token: str | None) -> str | None:
        """The user a token belongs to, or None for a missing, malformed or unknown token."""
        match = TOKEN_PATTERN.match(token or "")
        if not match:
            return None
        token_id, secret = match.groups()
        with self._lock:
            self._load()
            entry = self._entries.get(token_id)
        if entry is None:
            return None
        if not hmac.compare_digest(_digest(entry["salt"], secret), str(entry["sha256"])):
            return None
        return str(entry["user"])

    def add_token(self, user: str) -> str:
        """A new token for ``user`` (the hash is stored; the token is returned once and kept nowhere)."""
        if not USER_PATTERN.match(user or ""):
            raise JobError(f"The user name {user!r} is not allowed: use 1 to 64 letters, digits, '.', '_', '@' or '-'.",
                           code="bad_user_name")
        with self._lock:
            self._load()
            token_id = secrets.token_hex(4)
            while token_id in self._entries:
                token_id = secrets.token_hex(4)
            secret = secrets.token_urlsafe(32)
            salt = secrets.token_hex(16)
            entries = list(self._entries.values()) + [{
                "id": token_id, "user": user, "salt": salt, "sha256": _digest(salt, secret),
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}]
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps({"version": 1, "tokens": entries}, indent=1) + "\n")
            os.chmod(self.path, 0o600)
            self._stamp = None
        return f"dc_{token_id}_{secret}"
