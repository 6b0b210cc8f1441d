"""Strict plain-value encoding between the sandboxed child and the grading parent.

Only values whose type is exactly bool, int, float, str, None, list, tuple or dict pass,
plus the standard library's containers that Python's `==` compares as plain data:
`Counter`, `OrderedDict` and `defaultdict` (as dicts) and named tuples (as tuples; MBPP's
reference solutions return them). Their items are read with dict's and tuple's own C
methods, never the object's. Any other subclass (an `int` whose `__eq__` lies, a `str`
subclass, a tuple subclass with its own `__eq__`) or object is replaced by a marker the
parent treats as "not a plain value", so no candidate object ever reaches the comparison. The encoding is JSON with tags for what JSON cannot say
(tuples, non-string dict keys, big ints, NaN/inf), so the parent rebuilds the exact value.

Stdlib only: the sandbox worker imports this file directly, without the package.
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict, defaultdict
from json.encoder import encode_basestring_ascii as _quote  # C: no Python frames

MAX_DEPTH = 64
MAX_ITEMS = 200_000  # containers' elements in one value, all levels together


class NotPlain(Exception):
    """The value holds something other than an exact plain type."""


# Bound at import, before any candidate runs: the classes themselves, whatever is rebound later.
_DICT_LIKE = (Counter, OrderedDict, defaultdict)
# What a tuple subclass must not define for `==` to treat it as the tuple of its items.
_TUPLE_BEHAVIOUR = ("__eq__", "__ne__", "__hash__", "__iter__", "__len__", "__getitem__", "__class__",
                    "__getattribute__", "__reduce__", "__lt__", "__le__", "__gt__", "__ge__", "__contains__")


def _is_named_tuple(t) -> bool:
    """A class made by collections.namedtuple (or one of that exact shape): tuple is its only
    base and it changes none of tuple's behaviour, so `==` compares it as the plain tuple."""
    try:
        own = type.__getattribute__(t, "__dict__")
        return (type.__getattribute__(t, "__mro__") == (t, tuple, object) and "_fields" in own
                and not any(name in own for name in _TUPLE_BEHAVIOUR))
    except BaseException:
        return False


_SMALL_INT = 1 << 53  # JSON numbers round-trip exactly below this; bigger ints go as hex


def to_json(value, *, max_depth: int = MAX_DEPTH, max_items: int = MAX_ITEMS) -> str:
    """The ASCII JSON text of a plain value (tagged where JSON cannot say it); raises
    NotPlain naming the first offending type.

    Written out here rather than built and passed to json.dumps: this runs in each forked
    child, where every page written is a copy-on-write fault, and three small json.dumps
    calls cost a child about 40 of them."""
    budget = [max_items]

    def enc(v, depth):
        if depth > max_depth:
            raise NotPlain(f"nested deeper than {max_depth}")
        t = type(v)  # exact type: subclasses are not plain
        if t is str:
            return _quote(v)
        if t is int:
            return int.__repr__(v) if -_SMALL_INT < v < _SMALL_INT else '{"$int": "%s"}' % format(v, "x")
        if t is float:
            return float.__repr__(v) if math.isfinite(v) else '{"$float": "%s"}' % float.__repr__(v)
        if v is None:
            return "null"
        if t is bool:
            return "true" if v else "false"
        if t is list or t is tuple or t is dict:
            budget[0] -= len(v)
            if budget[0] < 0:
                raise NotPlain(f"more than {max_items} elements")
            if t is dict:
                return '{"$dict": [%s]}' % ", ".join(
                    "[%s, %s]" % (enc(k, depth + 1), enc(x, depth + 1)) for k, x in v.items())
            items = "[%s]" % ", ".join([enc(x, depth + 1) for x in v])
            return items if t is list else '{"$tuple": %s}' % items
        if t in _DICT_LIKE:
            return enc(dict(dict.items(v)), depth)
        if _is_named_tuple(t):
            return enc(tuple(tuple.__iter__(v)), depth)
        raise NotPlain(f"returned a non-plain value of type {_type_name(t)}")

    return enc(value, 0)


def _type_name(t) -> str:
    try:
        name = t.__qualname__  # read from the type object, which the candidate may control
        return name if type(name) is str else "?"
    except BaseException:
        return "?"


def decode(obj, *, max_depth: int = MAX_DEPTH):
    """Rebuild the value from to_json()'s output (after json.loads), checking every node (the input is untrusted)."""

    def dec(v, depth):
        if depth > max_depth:
            raise NotPlain("nested too deep")
        t = type(v)
        if v is None or t in (bool, int, float, str):
            return v
        if t is list:
            return [dec(x, depth + 1) for x in v]
        if t is dict and len(v) == 1:
            (tag, body), = v.items()
            if tag == "$int" and type(body) is str:
                return int(body, 16)
            if tag == "$float" and body in ("nan", "inf", "-inf"):
                return float(body)
            if tag == "$tuple" and type(body) is list:
                return tuple(dec(x, depth + 1) for x in body)
            if tag == "$dict" and type(body) is list:
                out = {}
                for pair in body:
                    if type(pair) is not list or len(pair) != 2:
                        raise NotPlain("malformed dict entry")
                    key = dec(pair[0], depth + 1)
                    try:
                        out[key] = dec(pair[1], depth + 1)
                    except TypeError:  # an unhashable key (a list) cannot come from a real dict
                        raise NotPlain("unhashable dict key") from None
                return out
        raise NotPlain(f"unexpected encoded node of type {t.__name__}")

    return dec(obj, 0)
