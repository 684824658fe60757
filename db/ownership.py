"""Who may answer a recommendation's survey: the holder of the token POST /test-responses
returned with it. Only the token's digest is stored (`recommendation.token_sha256`); the
route generates the token and carries the digest in `Submission.token_sha256`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Recommendation
from db.recommendations import NotFound

TOKEN_BYTES = 32  # 256 random bits; the issue asks for at least 128


def new_token() -> tuple[str, str]:
    """A fresh token and its digest."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    return token, token_digest(token)


def token_digest(token: str) -> str:
    """SHA-256, hex. The token has 256 random bits, so a plain hash (no salt, no stretching)
    can be neither reversed nor guessed; what it protects is a database dump or backup."""
    return hashlib.sha256(token.encode()).hexdigest()


def stored_digest(session: Session, recommendation_id: int) -> str | None:
    """The recommendation's token digest; None for rows stored before tokens existed."""
    row = session.execute(
        select(Recommendation.token_sha256).where(Recommendation.id == recommendation_id)
    ).first()
    if row is None:
        raise NotFound(f"recommendation {recommendation_id} does not exist")
    digest: str | None = row.token_sha256
    return digest


def holds_token(stored: str | None, supplied: str) -> bool:
    """Constant-time; a row without a digest is held by nobody."""
    return stored is not None and hmac.compare_digest(token_digest(supplied), stored)
