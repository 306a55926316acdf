"""go-yaml's ordering of mapping keys, used for ``overlay.options``.

Upstream decodes ``overlay.options`` into a Go map and the encoder sorts map keys with its
``keyList.Less`` ("natural" order: digit runs compare numerically, letters before punctuation
after a digit, ...). The order is part of the canonical bytes, so it is reproduced here rule for
rule, including Go's int64 wrap-around on absurdly long digit runs and Go's ``reflect.Kind``
ranking when keys of different types meet in one map.

Keys are the option key values of :mod:`image_service.flavor.model`: ``str``, ``int``, ``float``,
``bool``, ``None`` or a :class:`~image_service.flavor.model.Timestamp`.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterable
from typing import Any, TypeVar

__all__ = ["go_key_less", "sorted_keys"]

K = TypeVar("K")

# reflect.Kind values of the Go types a decoded key can have (a nil interface stays Interface).
_KIND_BOOL = 1
_KIND_INT = 2
_KIND_UINT64 = 11
_KIND_FLOAT64 = 14
_KIND_INTERFACE = 20
_KIND_STRING = 24
_KIND_STRUCT = 25

_MAX_INT64 = (1 << 63) - 1
_MASK64 = (1 << 64) - 1


def _kind(key: object) -> int:
    if key is None:
        return _KIND_INTERFACE
    if isinstance(key, bool):
        return _KIND_BOOL
    if isinstance(key, int):
        # go-yaml resolves integers to Go int, and only values above MaxInt64 to uint64.
        return _KIND_INT if key <= _MAX_INT64 else _KIND_UINT64
    if isinstance(key, float):
        return _KIND_FLOAT64
    if isinstance(key, str):
        return _KIND_STRING
    return _KIND_STRUCT  # Timestamp (time.Time)


def _key_float(key: object) -> float | None:
    """go-yaml's keyFloat: numbers and booleans compare as floats."""
    if isinstance(key, bool):
        return 1.0 if key else 0.0
    if isinstance(key, int | float):
        return float(key)
    return None


def _wrap_int64(value: int) -> int:
    value &= _MASK64
    return value - (1 << 64) if value > _MAX_INT64 else value


def _is_digit(ch: str) -> bool:
    # Go's unicode.IsDigit is the Nd category, not just ASCII.
    return unicodedata.category(ch) == "Nd"


def _is_letter(ch: str) -> bool:
    return ch.isalpha()


def _string_less(a: str, b: str) -> bool:
    digits = False
    for i in range(min(len(a), len(b))):
        ca, cb = a[i], b[i]
        if ca == cb:
            digits = _is_digit(ca)
            continue
        al, bl = _is_letter(ca), _is_letter(cb)
        if al and bl:
            return ca < cb
        if al or bl:
            return al if digits else bl
        an = bn = 0
        if ca == "0" or cb == "0":
            j = i - 1
            while j >= 0 and _is_digit(a[j]):
                if a[j] != "0":
                    an = bn = 1
                    break
                j -= 1
        ai = i
        while ai < len(a) and _is_digit(a[ai]):
            an = _wrap_int64(an * 10 + ord(a[ai]) - ord("0"))
            ai += 1
        bi = i
        while bi < len(b) and _is_digit(b[bi]):
            bn = _wrap_int64(bn * 10 + ord(b[bi]) - ord("0"))
            bi += 1
        if an != bn:
            return an < bn
        if ai != bi:
            return ai < bi
        return ca < cb
    return len(a) < len(b)


def _num_less(a: Any, b: Any) -> bool:
    if isinstance(a, bool):
        return not a and bool(b)
    return bool(a < b)


def go_key_less(a: object, b: object) -> bool:
    """Whether go-yaml's encoder puts key ``a`` before key ``b``."""
    ka, kb = _kind(a), _kind(b)
    fa, fb = _key_float(a), _key_float(b)
    if fa is not None and fb is not None:
        if fa != fb:
            return fa < fb
        if ka != kb:
            return ka < kb
        return _num_less(a, b)
    if ka != _KIND_STRING or kb != _KIND_STRING:
        return ka < kb
    assert isinstance(a, str)
    assert isinstance(b, str)
    return _string_less(a, b)


def _compare(a: object, b: object) -> int:
    if go_key_less(a, b):
        return -1
    if go_key_less(b, a):
        return 1
    # Go leaves two time.Time keys unordered (its sort is not stable, so the result depends on
    # the map's random iteration order). Order them by text so our bytes are at least stable.
    ta, tb = getattr(a, "text", None), getattr(b, "text", None)
    if isinstance(ta, str) and isinstance(tb, str) and ta != tb:
        return -1 if ta < tb else 1
    return 0


def sorted_keys(keys: Iterable[K]) -> list[K]:
    """The keys in the order go-yaml writes them."""
    return sorted(keys, key=functools.cmp_to_key(_compare))
