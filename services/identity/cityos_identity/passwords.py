"""Secrets and passwords stored only as salted scrypt hashes (stdlib, no native extension)."""

import base64
import hashlib
import hmac
import secrets

# RFC 7914 interactive parameters: ~16 MiB and a few tens of ms per check.
N, R, P = 2**14, 8, 1


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def hash_secret(secret: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=N, r=R, p=P, dklen=32)
    return f"scrypt${N}${R}${P}${_b64(salt)}${_b64(digest)}"


def verify_secret(secret: str, stored: str | None) -> bool:
    if not stored:
        return False
    try:
        _, n, r, p, salt, digest = stored.split("$")
        actual = hashlib.scrypt(secret.encode(), salt=base64.b64decode(salt), n=int(n),
                                r=int(r), p=int(p), dklen=32)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, base64.b64decode(digest))


def new_secret() -> str:
    return secrets.token_urlsafe(32)
