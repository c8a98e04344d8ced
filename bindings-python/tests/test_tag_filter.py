"""regmirror.TagFilter from Python: SEMANTICS.md §2, the Quay reference table, and errors."""

import pytest

import regmirror
from regmirror import InvalidPatternError, MirrorError, TagFilter

QUAY_TAGS = ["v32", "v3.1", "v3.2", "v3.2-4beta", "v3.3"]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("v3*", ["v3.1", "v3.2", "v3.2-4beta", "v3.3", "v32"]),
        ("v3.*", ["v3.1", "v3.2", "v3.2-4beta", "v3.3"]),
        ("v3.?", ["v3.1", "v3.2", "v3.3"]),
        ("v3.[12]", ["v3.1", "v3.2"]),
        ("v3.[12]*", ["v3.1", "v3.2", "v3.2-4beta"]),
        ("v3.[!1]*", ["v3.2", "v3.2-4beta", "v3.3"]),
    ],
)
def test_quay_reference_table(pattern, expected):
    assert TagFilter(pattern).select(QUAY_TAGS) == expected
    assert TagFilter([pattern]).select(QUAY_TAGS) == expected


def test_caret_in_a_set_is_literal():
    assert TagFilter("v[^1]").select(["v1", "v^", "v2"]) == ["v1", "v^"]


def test_star_in_a_set_is_literal():
    assert TagFilter("v[*]").select(["v*", "vx", "v"]) == ["v*"]


def test_case_difference_does_not_match():
    assert TagFilter("V3.*").select(QUAY_TAGS) == []
    assert not TagFilter("v3.*").matches("V3.1")


def test_whole_tag_anchoring():
    f = TagFilter("v3")
    assert f.select(QUAY_TAGS) == []
    assert not f.matches("v3.1")
    assert f.matches("v3")


def test_lists_comma_strings_and_patterns():
    f = TagFilter(" v3.1 ,, latest ,")
    assert f.patterns == ["v3.1", "latest"]
    assert TagFilter(("v3.1", "latest,v3.3")).patterns == ["v3.1", "latest", "v3.3"]
    assert f.select(iter(["latest", "v3.3", "v3.1", "latest"])) == ["latest", "v3.1"]
    assert repr(f) == "TagFilter(['v3.1', 'latest'])"


def test_regex_semver_and_exclusions():
    assert TagFilter(r"regex:v\d+").select(["v1", "v12", "v1.2", "xv1"]) == ["v1", "v12"]
    assert TagFilter("semver:>=1.2, <2").select(["1.1.0", "v1.2.0", "2.0.0", "x"]) == ["v1.2.0"]
    assert TagFilter(["v*", "!*-rc*"]).select(["v1", "v2-rc1", "v2"]) == ["v1", "v2"]


@pytest.mark.parametrize("bad", ["v3.[12", "regex:(", "semver:>>1"])
def test_invalid_pattern_is_named(bad):
    with pytest.raises(InvalidPatternError) as err:
        TagFilter(bad)
    assert bad in str(err.value)
    assert err.value.kind == "InvalidPattern"
    assert isinstance(err.value, MirrorError)


def test_unclosed_set_gives_its_position():
    with pytest.raises(InvalidPatternError, match="position 3"):
        TagFilter("ok, v3.[12")


@pytest.mark.parametrize("empty", ["", " , ", []])
def test_empty_pattern_list_is_invalid(empty):
    with pytest.raises(InvalidPatternError, match="empty"):
        TagFilter(empty)


def test_wrong_argument_types_are_type_errors():
    with pytest.raises(TypeError, match="patterns must contain only str, found int"):
        TagFilter(["v1", 3])
    with pytest.raises(TypeError, match="not a single str"):
        TagFilter("v*").select("v1")
    with pytest.raises(TypeError, match="iterable of str, not int"):
        TagFilter(5)


def test_every_error_class_is_a_mirror_error():
    for name in regmirror.__all__:
        if name.endswith("Error"):
            cls = getattr(regmirror, name)
            assert issubclass(cls, MirrorError), name
            assert cls.__module__ == "regmirror", name
