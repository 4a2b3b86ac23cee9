"""Encryption of the OAuth tokens the service stores (Shopify's and Bling's), at rest.

Fernet (AES-128-CBC + HMAC-SHA256) under a key derived from SECRET_KEY with HKDF: a derived key,
not SECRET_KEY itself, so the secret that signs OAuth states and the encryption key are never the
same bytes. Changing SECRET_KEY makes stored tokens unreadable (TokenUnreadable): reconnect.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .config import DEVELOPMENT_SECRET_KEY, Settings

#: Part of the key derivation: changing it would make every stored token unreadable.
_HKDF_INFO = b"bazico/shopify-token-encryption/v1"


class TokenUnreadable(Exception):
    """A stored token cannot be decrypted: SECRET_KEY changed since it was stored."""


class TokenCipher:
    """Encrypts and decrypts one token at a time under the key derived from ``secret_key``."""

    def __init__(self, secret_key: str) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
            secret_key.encode("utf-8")
        )
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    @classmethod
    def for_settings(cls, settings: Settings) -> TokenCipher:
        return cls(settings.secret_key or DEVELOPMENT_SECRET_KEY)

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode("ascii")).decode("utf-8")
        except InvalidToken:
            raise TokenUnreadable("stored token unreadable (SECRET_KEY changed?)") from None
