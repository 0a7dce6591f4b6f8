"""Masking secrets before anything is printed or logged: passwords in URLs, credentials in options."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "**********"
# Option and query names that hold a credential: `key` and `secret` (s3fs), `token`, `password`, ...
_SECRET_NAME = re.compile(
    r"(^|[_\-.])(secret|password|passwd|pwd|token|key|credentials?|auth|authorization|signature)"
    r"($|[_\-.])",
    re.IGNORECASE,
)


def is_secret_name(name: str) -> bool:
    """Whether an option or query parameter called ``name`` holds a credential."""
    return bool(_SECRET_NAME.search(name))


def mask_url(url: str) -> str:
    """``url`` with the password of its user part and credential query parameters masked.

    ``postgresql://app:hunter2@db/lineage`` becomes ``postgresql://app:**********@db/lineage``.
    Text that is not a URL comes back as it is.
    """
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    netloc = parts.netloc
    if password is not None:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_secret_name(name) for name, _ in pairs):
            query = urlencode([(n, MASK if is_secret_name(n) else v) for n, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def mask_options(value: Any) -> Any:
    """A copy of nested options (dicts, lists) with credential-named entries masked and URLs masked."""
    if isinstance(value, dict):
        return {
            key: MASK if is_secret_name(str(key)) and value[key] is not None else mask_options(value[key])
            for key in value
        }
    if isinstance(value, list | tuple):
        return [mask_options(item) for item in value]
    if isinstance(value, str):
        return mask_url(value)
    return value
