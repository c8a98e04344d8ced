"""regmirror's exception classes as Python code catches them."""

import builtins
import subprocess
import sys

import regmirror


def test_timeout_error_is_a_mirror_error_and_the_builtin_timeout_error():
    cls = regmirror.TimeoutError
    assert cls is not builtins.TimeoutError
    assert issubclass(cls, regmirror.MirrorError)
    assert issubclass(cls, builtins.TimeoutError)
    assert (cls.kind, cls.__module__, cls.__name__) == ("Timeout", "regmirror", "TimeoutError")
    for catch in (builtins.TimeoutError, OSError, regmirror.MirrorError, cls):
        try:
            raise cls("no answer within 60s")
        except catch as e:
            assert str(e) == "no answer within 60s"
            assert e.kind == "Timeout"


def test_a_star_import_leaves_the_builtin_timeout_error_alone():
    # In a fresh interpreter: `except TimeoutError` after the star import still catches the
    # builtin ones (asyncio.timeout raises those) and regmirror's.
    code = """
from regmirror import *
import regmirror
assert TimeoutError is __builtins__.TimeoutError, TimeoutError
assert MirrorError is regmirror.MirrorError
for error in (TimeoutError("builtin"), regmirror.TimeoutError("regmirror")):
    try:
        raise error
    except TimeoutError:
        pass
"""
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cancelled_error_is_not_asyncio_cancelled_error():
    # asyncio.CancelledError is a BaseException that asyncio itself must see: regmirror's is an
    # ordinary MirrorError.
    import asyncio

    assert not issubclass(regmirror.CancelledError, asyncio.CancelledError)
    assert issubclass(regmirror.CancelledError, regmirror.MirrorError)
