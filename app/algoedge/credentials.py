"""Encryption at rest of MetaTrader passwords with ALGOEDGE_CREDENTIALS_KEY (Fernet: AES-128-CBC + HMAC).

The API encrypts when an account is linked; only the bridge decrypts, to log in to MetaAPI.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken

FORM = "a Fernet key: 32 random bytes, url-safe base64 (Fernet.generate_key())"


def parse_key(value: str) -> str:
    """Validate a key for config; ValueError with a reason otherwise."""
    try:
        Fernet(value.encode())
    except (ValueError, TypeError):
        raise ValueError("is not 32 bytes of url-safe base64") from None
    return value


class CredentialsCipher:
    def __init__(self, key: str) -> None:
        self._fernet = Fernet(key.encode())

    def encrypt(self, secret: str) -> bytes:
        return self._fernet.encrypt(secret.encode())

    def decrypt(self, token: bytes) -> str:
        try:
            return self._fernet.decrypt(token).decode()
        except InvalidToken:
            raise ValueError(
                "credentials were encrypted with another key or were altered"
            ) from None
