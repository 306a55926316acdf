"""Version parsing, precedence and upstream's offered-version rules (reference/api.md §11.1)."""

from __future__ import annotations

import pytest

from image_service.versions import InvalidVersion, Version, offered_versions


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.7.7", "1.7.7"),
        ("v1.11.3", "1.11.3"),
        ("v1.12.0-beta.1", "1.12.0-beta.1"),
        ("1.10.0-alpha.1+build.5", "1.10.0-alpha.1"),
    ],
)
def test_strict(text: str, expected: str) -> None:
    assert str(Version.parse(text)) == expected


@pytest.mark.parametrize("text", ["1.7", "latest", "v1.07.0", "1.7.7-", "", "1.7.7 "])
def test_strict_rejects(text: str) -> None:
    with pytest.raises(InvalidVersion):
        Version.parse(text)


def test_tolerant_pads_and_skips() -> None:
    assert Version.parse_tolerant("v1.7") == Version(1, 7, 0)
    assert Version.parse_tolerant("v2") == Version(2, 0, 0)
    assert Version.parse_tolerant("latest") is None


def test_semver_precedence() -> None:
    # The ordering example of semver.org §11.
    ordered = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.10.0",
    ]
    versions = [Version.parse(v) for v in ordered]
    assert sorted(reversed(versions)) == versions


def test_offered_versions_follow_upstream_rules() -> None:
    tags = [
        "latest",
        "v1.4.0",  # below the minimum
        "v1.5.0-alpha.0",  # prerelease below the minimum
        "v1.7.7",
        "v1.10.0-beta.1",  # prerelease of an older minor
        "v1.11.3",
        "v1.12.0-alpha.1-5-gabcdef",  # not <kind>.<number>
        "v1.12.0-beta.1",
        "v1.12.0-foo.1",  # unknown prerelease kind
        "v1.11",  # padded to 1.11.0
    ]
    offered = [v.tag for v in offered_versions(tags, Version(1, 5, 0))]
    assert offered == ["v1.7.7", "v1.11.0", "v1.11.3", "v1.12.0-beta.1"]


def test_no_tags() -> None:
    assert offered_versions(["latest"], Version(1, 5, 0)) == []
