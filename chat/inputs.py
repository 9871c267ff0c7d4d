"""Input at the edge: JSON bodies, frames, query strings and form fields, read once, bounded and clean.

Every JSON body (the API, `/v1`, the token endpoints) and every socket frame goes through `loads`,
so what reaches the services is never nested without bound, never holds a NUL (PostgreSQL refuses
it in text) or a lone surrogate (no database or encoder takes it), and never overflows the size
Django allows. The fields themselves are then checked by the typed schemas of each edge, built from
`chat.fields` (the API's and /v1's ninja schemas, the socket's frames); the helpers here cover the
form fields of the pages.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest
from django.utils import formats
from django.utils.translation import gettext

MAX_DEPTH = 32  # arrays and objects inside each other; real bodies need 4 or 5
MAX_FIELD_NAME = 100  # characters of a field name quoted in an error

# NUL (PostgreSQL text refuses it) and UTF-16 surrogates, which only ever occur unpaired in a str.
_FORBIDDEN = re.compile("[\x00\ud800-\udfff]")
# In JSON text, a NUL or a surrogate can only come from one itself or from a `\u` escape of one.
_SUSPECT = re.compile("[\x00\ud800-\udfff]|\\\\u(?:0000|[dD][89a-fA-F])")
# In json.dumps(…, ensure_ascii=False): a surrogate is kept as is, a NUL is written as an unescaped `\u0000`.
_FORBIDDEN_DUMPED = re.compile(r"[\ud800-\udfff]|(?:^|[^\\])(?:\\\\)*\\u0000")
_CONTAINERS = frozenset({dict, list})
_ID = re.compile(r"[0-9]{1,18}")


class InvalidInput(ValueError):
    """Input refused at the edge: a code for programs, a sentence for people, the field, the status."""

    def __init__(self, detail: str, *, code: str = "bad_request", field: str | None = None, status: int = 400) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code
        self.field = field
        self.status = status


def max_body_bytes() -> int:
    """The largest body or frame read, Django's own limit, so every transport agrees."""
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 2_621_440


def too_large() -> InvalidInput:
    """The refusal of a body over the limit: 413, in words."""
    limit = max_body_bytes()
    return InvalidInput(
        gettext("That is too large: at most %(limit)s bytes are read.")
        % {"limit": formats.number_format(limit, force_grouping=True)},
        code="too_large",
        status=413,
    )


def _no_constant(name: str) -> Any:
    """NaN and Infinity are not JSON, though Python's parser takes them."""
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    """A number that fits a float: 1e999 is refused rather than read as infinity."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def _too_deep(max_depth: int, field: str | None = None) -> InvalidInput:
    return InvalidInput(
        gettext("The JSON is nested too deeply (at most %(levels)d levels).") % {"levels": max_depth},
        code="too_deep",
        field=field,
    )


def _check_depth(value: Any, *, levels: int, max_depth: int, field: str | None) -> None:
    """Refuse containers nested more than `levels` deep; scalar-only arrays are skipped at C speed."""
    level = [value] if type(value) in _CONTAINERS else []
    while level:
        if levels <= 0:
            raise _too_deep(max_depth, field)
        levels -= 1
        inner: list[Any] = []
        for container in level:
            children = container.values() if type(container) is dict else container
            if not _CONTAINERS.isdisjoint(map(type, children)):
                inner += [child for child in children if type(child) in _CONTAINERS]
        level = inner


def _check_texts(value: Any, *, field: str | None) -> None:
    """Refuse a NUL or a lone surrogate in any key or string, found in the value's JSON at C speed."""
    if _FORBIDDEN_DUMPED.search(json.dumps(value, ensure_ascii=False)):
        raise InvalidInput(
            gettext("A text holds a NUL character or an unpaired surrogate, which cannot be stored."),
            code="invalid_text",
            field=field,
        )


def _check_tree(data: Any, *, max_depth: int, texts: bool) -> None:
    """Check depth and (if `texts`) text, naming the top-level field at fault."""
    if type(data) is not dict:
        _check_depth(data, levels=max_depth, max_depth=max_depth, field=None)
        if texts:
            _check_texts(data, field=None)
        return
    for name, value in data.items():
        field = _FORBIDDEN.sub("?", name)[:MAX_FIELD_NAME]
        _check_depth(value, levels=max_depth - 1, max_depth=max_depth, field=field)
        if texts:
            _check_texts({name: value}, field=field)


def loads(raw: bytes | str, *, syntax_code: str = "bad_json", max_depth: int = MAX_DEPTH) -> Any:
    """Parse UTF-8 JSON bounded in size and depth, finite in its numbers, free of NUL and lone surrogates."""
    if len(raw) > max_body_bytes():
        raise too_large()
    try:
        # Strict UTF-8 (RFC 8259): json.loads would take UTF-16 and encoded surrogates from bytes.
        text = raw.decode() if isinstance(raw, bytes) else raw
        data = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError as exc:
        raise _too_deep(max_depth) from exc
    except ValueError as exc:  # UnicodeDecodeError and over-long integers are ValueErrors too
        raise InvalidInput(gettext("That is not valid JSON in UTF-8."), code=syntax_code) from exc
    _check_tree(data, max_depth=max_depth, texts=bool(_SUSPECT.search(text)))
    return data


def read_body(request: HttpRequest) -> bytes:
    """The raw body; over Django's limit it is a 413 in our own words, not Django's HTML page."""
    try:
        body = request.body
    except RequestDataTooBig as exc:
        raise too_large() from exc
    if len(body) > max_body_bytes():  # a body without Content-Length
        raise too_large()
    return body


def json_object(request: HttpRequest) -> dict[str, Any]:
    """The request's JSON object body (an empty body is an empty object), checked by `loads`."""
    body = read_body(request)
    if not body.strip():
        return {}
    data = loads(body, syntax_code="bad_request")
    if not isinstance(data, dict):
        raise InvalidInput(gettext("The request body must be a JSON object."))
    return data


def clean_text(value: str, *, field: str) -> str:
    """A text from a query string or a form, refused if it holds what cannot be stored."""
    if _FORBIDDEN.search(value):
        raise InvalidInput(
            gettext("The %(field)s holds a NUL character or an unpaired surrogate, which cannot be stored.")
            % {"field": field},
            code="invalid_text",
            field=field,
        )
    return value


def text_param(params: Mapping[str, str], name: str, *, default: str = "") -> str:
    """A query-string or form value as clean text; absent is the default."""
    return clean_text(params.get(name, default), field=name)


def id_param(value: Any) -> int | None:
    """A row id from a form or query string (ASCII digits only), or None: `int` would take '٣' or raise on 'x'."""
    return int(value) if isinstance(value, str) and _ID.fullmatch(value) else None
