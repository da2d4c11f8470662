"""Credentials out of URIs before they are logged or printed: a `user:password@` becomes
`***@` and the value of a credential query parameter (a presigned URL's X-Amz-Signature,
an access_token, ...) becomes `***`; scheme, host, port, path and other parameters stay."""

from __future__ import annotations

import re

_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
# Words that make a query parameter a credential, matched against its name split at - _ .
# (X-Amz-Security-Token, access_token, api_key, X-Goog-Signature, sig, ...).
_SECRET_WORDS = {
    "signature",
    "sig",
    "credential",
    "credentials",
    "token",
    "password",
    "passwd",
    "pwd",
    "secret",
    "key",
    "apikey",
    "awsaccesskeyid",
}
MASK = "***"


def _secret_parameter(name: str) -> bool:
    """Whether a parameter name holds a credential word, in any spelling: access_token,
    X-Amz-Signature, accessToken, clientSecret, APIKey."""
    words = re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z0-9]+", name)
    return any(w.lower() in _SECRET_WORDS for w in words) or name.lower() in _SECRET_WORDS


def _redact_query(query: str) -> str:
    pairs = []
    for pair in query.split("&"):
        name, eq, _ = pair.partition("=")
        pairs.append(f"{name}={MASK}" if eq and _secret_parameter(name) else pair)
    return "&".join(pairs)


def _redact_one(uri: str) -> str:
    scheme, rest = uri.split("://", 1)
    # user:password@ ends at the last '@' before the host; a password may hold '/', '#' or
    # '?' unescaped (an AWS secret key does), so anything before an '@' that follows a ':'
    # counts. A path with '@' and ':' in it is masked too: safe, if not pretty.
    userinfo = re.match(r"([^@\s]*:[^@\s]*|[^@/?#\s]*)@", rest)
    if userinfo:
        rest = f"{MASK}@{rest[userinfo.end() :]}"
    authority, tail = re.match(r"([^/?#]*)(.*)", rest, re.S).groups()
    before_fragment, hash_, fragment = tail.partition("#")
    path, question, query = before_fragment.partition("?")
    if question:
        before_fragment = f"{path}?{_redact_query(query)}"
    if hash_ and "=" in fragment:  # an OAuth-style fragment: #access_token=...
        fragment = _redact_query(fragment)
    return f"{scheme}://{authority}{before_fragment}{hash_}{fragment}"


def redact_uri(text: str) -> str:
    """`text` with the credentials of every URI in it masked; text without any is unchanged."""
    return _URI.sub(lambda m: _redact_one(m.group(0)), text)
