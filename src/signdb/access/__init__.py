"""Who may use ``signdb serve``: tokens with a role (viewer or editor), stored hashed."""

from signdb.access.tokens import (
    ANONYMOUS,
    ROLES,
    Identity,
    authenticate,
    count_tokens,
    create_token,
    hash_token,
    list_tokens,
    revoke_token,
)

__all__ = [
    "ANONYMOUS",
    "ROLES",
    "Identity",
    "authenticate",
    "count_tokens",
    "create_token",
    "hash_token",
    "list_tokens",
    "revoke_token",
]
