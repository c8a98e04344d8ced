"""The typed surface: every error kind's exception class is exported and declared in the stubs
(`__init__.pyi`), and the stubs' defaults are the ones the native module applies."""

import ast
import inspect
from pathlib import Path

import regmirror
from regmirror import _native

STUB = Path(regmirror.__file__).with_name("__init__.pyi")


def stub_classes() -> dict[str, ast.ClassDef]:
    tree = ast.parse(STUB.read_text())
    return {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}


def native_error_classes() -> dict[str, type]:
    return {
        name: value
        for name, value in vars(_native).items()
        if isinstance(value, type) and issubclass(value, _native.MirrorError) and value is not _native.MirrorError
    }


def test_every_error_kind_has_an_exported_and_declared_class():
    classes = native_error_classes()
    # The native module has one class per error kind (checked against the core's list when it
    # is compiled); InvalidPattern and Internal are the first and the last.
    assert {"InvalidPatternError", "InternalError"} <= set(classes)
    kinds = [cls.kind for cls in classes.values()]
    assert len(set(kinds)) == len(kinds)
    declared = stub_classes()
    for name, cls in classes.items():
        assert cls.kind + "Error" == name
        assert getattr(regmirror, name) is cls, f"regmirror does not re-export {name}"
        # TimeoutError would shadow the builtin on `from regmirror import *`.
        assert (name in regmirror.__all__) == (name != "TimeoutError"), name
        assert name in declared, f"{STUB.name} does not declare {name}"
        bases = [ast.unparse(b) for b in declared[name].bases]
        assert bases == ["MirrorError"] + [f"builtins.{b.__name__}" for b in cls.__bases__[1:]], name
    declared_errors = {n for n, c in declared.items() if [ast.unparse(b) for b in c.bases][:1] == ["MirrorError"]}
    assert declared_errors == set(classes), "the stubs declare error classes the module lacks"


def stub_defaults(cls: str) -> dict[str, object]:
    init = next(
        node for node in stub_classes()[cls].body if isinstance(node, ast.FunctionDef) and node.name == "__init__"
    )
    return {
        arg.arg: ast.literal_eval(default)
        for arg, default in zip(init.args.kwonlyargs, init.args.kw_defaults)
        if default is not None
    }


def test_the_stubs_defaults_are_the_native_ones():
    # Python shows the native signature; a default that is not a literal there (the engine's
    # DEFAULT_CONCURRENCY, an empty list) shows as `...`.
    native = {
        name: p.default
        for name, p in inspect.signature(_native.Mirror).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    assert native.pop("concurrency") is Ellipsis
    assert native.pop("architectures") is Ellipsis
    assert native.pop("ssrf_allow") is Ellipsis
    assert native.pop("max_tags") is Ellipsis
    native["concurrency"] = regmirror.DEFAULT_CONCURRENCY
    native["max_tags"] = regmirror.DEFAULT_MAX_TAGS
    native["architectures"] = ()
    native["ssrf_allow"] = ()
    for cls in ("Mirror", "AsyncMirror"):
        assert stub_defaults(cls) == native, cls


def test_the_stored_mirrors_stubs_match_the_native_classes():
    for cls in ("Mirrors", "AsyncMirrors"):
        native_cls = getattr(_native, cls)
        native = {
            name: p.default
            for name, p in inspect.signature(native_cls).parameters.items()
            if p.default is not inspect.Parameter.empty
        }
        assert native.pop("concurrency") is Ellipsis and native.pop("max_tags") is Ellipsis
        assert native.pop("notifiers") is Ellipsis and native.pop("ssrf_allow") is Ellipsis
        native.update(concurrency=regmirror.DEFAULT_CONCURRENCY, max_tags=regmirror.DEFAULT_MAX_TAGS)
        native.update(notifiers=(), ssrf_allow=())
        assert stub_defaults(cls) == native, cls
        declared = {n.name for n in stub_classes()[cls].body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        methods = {n for n in dir(native_cls) if not n.startswith("_")}
        assert methods <= declared, f"{cls}: the stubs lack {methods - declared}"
    assert inspect.signature(_native.Mirrors) == inspect.signature(_native.AsyncMirrors)
