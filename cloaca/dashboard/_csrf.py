"""CSRF protection of the dashboard's actions: a signed double-submit cookie.

A page hands the browser a token in a cookie and in each action form; an action is accepted
only when the form's token equals the cookie's and carries this app's signature (so a cookie
planted by a sibling site cannot be paired with a form the attacker wrote).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Optional

COOKIE = "cloaca_csrf"
FIELD = "csrf_token"


class CsrfGuard:
    """Makes and checks the tokens of one app (its secret lives as long as the app)."""

    def __init__(self, secret: Optional[bytes] = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    def new_token(self) -> str:
        nonce = secrets.token_hex(16)
        return f"{nonce}.{self._sign(nonce)}"

    def valid(self, token: Optional[str]) -> bool:
        """True for a token this app signed."""
        if not token or token.count(".") != 1:
            return False
        nonce, signature = token.split(".")
        return hmac.compare_digest(signature, self._sign(nonce))

    def accepts(self, cookie: Optional[str], submitted: Optional[str]) -> bool:
        """True when the submitted token is this app's and equals the cookie's."""
        return (self.valid(submitted) and cookie is not None and submitted is not None
                and hmac.compare_digest(cookie, submitted))

    def _sign(self, nonce: str) -> str:
        return hmac.new(self._secret, nonce.encode(), hashlib.sha256).hexdigest()
