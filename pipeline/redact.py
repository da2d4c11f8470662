"""Credentials out of URIs before they are logged or printed: a `user:password@` becomes
`***@` and the value of a credential query parameter (a presigned URL's X-Amz-Signature,
an access_token, ...) becomes `***`; scheme, host, port, path and other parameters stay."""

from __future__ import annotations

import re

_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
# Words that make a query parameter a credential, matched against its name split at - _ .
# (X-Amz-Security-Token, access_token, api_key, X-Goog-Signature, sig, ...).
_SECRET_WORDS = {"signature", "sig", "credential", "credentials", "token", "password", "passwd", "pwd", "secret", "key", "apikey", "awsaccesskeyid"}
MASK = "***"


def _secret_parameter(name: str) -> bool:
    return any(word in _SECRET_WORDS for word in re.split(r"[-_.]", name.lower()))


def _redact_query(query: str) -> str:
    pairs = []
    for pair in query.split("&"):
        name, eq, _ = pair.partition("=")
        pairs.append(f"{name}={MASK}" if eq and _secret_parameter(name) else pair)
    return "&".join(pairs)


def _redact_one(uri: str) -> str:
    scheme, rest = uri.split("://", 1)
    authority, tail = re.match(r"([^/?#]*)(.*)", rest, re.S).groups()
    if "@" in authority:
        authority = f"{MASK}@{authority.rsplit('@', 1)[1]}"
    before_fragment, hash_, fragment = tail.partition("#")
    path, question, query = before_fragment.partition("?")
    if question:
        before_fragment = f"{path}?{_redact_query(query)}"
    return f"{scheme}://{authority}{before_fragment}{hash_}{fragment}"


def redact_uri(text: str) -> str:
    """`text` with the credentials of every URI in it masked; text without any is unchanged."""
    return _URI.sub(lambda m: _redact_one(m.group(0)), text)
