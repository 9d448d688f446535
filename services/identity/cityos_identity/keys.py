"""The issuer's signing keys: ES256, generated on first start, kept in the service's schema.

The newest unretired key signs; every key that may still have unexpired tokens is published
in the JWKS by its `kid`, so rotating a key never invalidates a token that is still valid.
"""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


class KeyStore:
    def __init__(self, max_token_lifetime_s: int, pool: asyncpg.Pool | None = None) -> None:
        self._pool = pool  # attached at startup
        self.keep = timedelta(seconds=2 * max_token_lifetime_s)
        self.kid = ""
        self._private: ec.EllipticCurvePrivateKey | None = None
        self._jwks: dict[str, Any] = {"keys": []}

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("key store has no database pool yet")
        return self._pool

    @pool.setter
    def pool(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def load(self) -> None:
        """Read the keys; create the first one if there is none."""
        rows = await self.pool.fetch(
            "SELECT kid, private_pem, retired_at FROM signing_keys"
            " WHERE retired_at IS NULL OR retired_at > $1 ORDER BY created_at DESC",
            datetime.now(UTC) - self.keep)
        active = [r for r in rows if r["retired_at"] is None]
        if not active:
            await self.rotate()
            return
        self.kid = active[0]["kid"]
        private = serialization.load_pem_private_key(
            active[0]["private_pem"].encode(), password=None)
        assert isinstance(private, ec.EllipticCurvePrivateKey)
        self._private = private
        self._jwks = {"keys": [self._public_jwk(r["kid"], r["private_pem"]) for r in rows]}

    @staticmethod
    def _public_jwk(kid: str, pem: str) -> dict[str, Any]:
        private = serialization.load_pem_private_key(pem.encode(), password=None)
        assert isinstance(private, ec.EllipticCurvePrivateKey)
        jwk: dict[str, Any] = jwt.algorithms.ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
        return {**jwk, "kid": kid, "use": "sig", "alg": "ES256"}

    async def rotate(self) -> str:
        """A new signing key; the previous one stays published until its tokens expire."""
        private = ec.generate_private_key(ec.SECP256R1())
        pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
        kid = uuid.uuid4().hex[:16]
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("UPDATE signing_keys SET retired_at = now()"
                               " WHERE retired_at IS NULL")
            await conn.execute("INSERT INTO signing_keys (kid, private_pem) VALUES ($1, $2)",
                               kid, pem)
        await self.load()
        return kid

    def jwks(self) -> dict[str, Any]:
        return self._jwks

    def sign(self, claims: dict[str, Any]) -> str:
        if self._private is None:
            raise RuntimeError("signing keys are not loaded")
        return jwt.encode(claims, self._private, algorithm="ES256", headers={"kid": self.kid})
