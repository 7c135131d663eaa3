"""Operator settings: defaults, and a clear error naming the variable when one is malformed."""

from __future__ import annotations

import pytest
from algoedge_operator.settings import (
    DEFAULT_CAPACITY_URL,
    SettingsError,
    image_allowed,
    kopf_scope_args,
    load_operator_settings,
)


class TestOperatorSettings:
    def test_should_default_to_the_in_cluster_capacity_url_and_30_seconds(self) -> None:
        settings = load_operator_settings({})
        assert settings.capacity_url == DEFAULT_CAPACITY_URL
        assert settings.scale_interval == 30
        assert (
            settings.capacity_url_for(name="acme", namespace="trading")
            == "http://acme-api.trading.svc:9090/internal/v1/capacity"
        )

    def test_should_watch_children_unless_told_not_to(self) -> None:
        assert load_operator_settings({}).watch_children
        off = load_operator_settings({"ALGOEDGE_OPERATOR_WATCH_CHILDREN": "false"})
        assert not off.watch_children

    def test_should_fill_a_capacity_url_template(self) -> None:
        settings = load_operator_settings(
            {"ALGOEDGE_OPERATOR_CAPACITY_URL": "http://127.0.0.1:9000/{namespace}/{name}"}
        )
        assert settings.capacity_url_for(name="a", namespace="b") == "http://127.0.0.1:9000/b/a"

    @pytest.mark.parametrize(
        ("variable", "value"),
        [
            ("ALGOEDGE_OPERATOR_SCALE_INTERVAL", "soon"),
            ("ALGOEDGE_OPERATOR_SCALE_INTERVAL", "0"),
            ("ALGOEDGE_OPERATOR_RESYNC_INTERVAL", "-5"),
            ("ALGOEDGE_OPERATOR_CAPACITY_TIMEOUT", "nan"),
            ("ALGOEDGE_OPERATOR_HTTP_PORT", "70000"),
            ("ALGOEDGE_OPERATOR_CONCURRENCY", "many"),
            ("ALGOEDGE_OPERATOR_CAPACITY_URL", "http://{tenant}.svc/"),
            ("ALGOEDGE_OPERATOR_CAPACITY_URL", "ftp://{name}/"),
            ("ALGOEDGE_OPERATOR_CAPACITY_URL", "http://{name/"),
            ("ALGOEDGE_OPERATOR_WATCH_CHILDREN", "yes"),
            ("ALGOEDGE_OPERATOR_WATCH_CHILDREN", "True"),
            ("ALGOEDGE_OPERATOR_IMAGE_ALLOWLIST", "registry.example.com/a b"),
            ("ALGOEDGE_OPERATOR_IMAGE_ALLOWLIST", "registry.example.com/a@sha256"),
        ],
    )
    def test_should_name_the_malformed_variable(self, variable: str, value: str) -> None:
        with pytest.raises(SettingsError, match=f"^{variable} must be"):
            load_operator_settings({variable: value})

    def test_should_never_echo_the_value(self) -> None:
        with pytest.raises(SettingsError) as raised:
            load_operator_settings({"ALGOEDGE_OPERATOR_SCALE_INTERVAL": "secret-ish"})
        assert "secret-ish" not in str(raised.value)


class TestImageAllowlist:
    def test_should_allow_every_image_when_empty(self) -> None:
        assert (
            load_operator_settings({"ALGOEDGE_OPERATOR_IMAGE_ALLOWLIST": ""}).image_allowlist == ()
        )
        assert image_allowed("anything.example.org/x:1", ())

    def test_should_read_comma_separated_prefixes(self) -> None:
        settings = load_operator_settings(
            {"ALGOEDGE_OPERATOR_IMAGE_ALLOWLIST": " registry.example.com/team , ghcr.io/acme/ "}
        )
        assert settings.image_allowlist == ("registry.example.com/team", "ghcr.io/acme/")

    @pytest.mark.parametrize(
        ("image", "allowed"),
        [
            ("registry.example.com/team", True),
            ("registry.example.com/team:1", True),
            ("registry.example.com/team/api:1", True),
            ("registry.example.com/team@sha256:" + "0" * 64, True),
            ("ghcr.io/acme/anything/below:2", True),
            ("registry.example.com/team-b/api:1", False),
            ("registry.example.com/teamb:1", False),
            ("evil.example.com/registry.example.com/team:1", False),
            ("ghcr.io/acmecorp/x:1", False),
        ],
    )
    def test_should_match_a_prefix_only_at_a_path_boundary(self, image: str, allowed: bool) -> None:
        prefixes = ("registry.example.com/team", "ghcr.io/acme/")
        assert image_allowed(image, prefixes) is allowed


class TestWatchedNamespaces:
    def test_should_serve_every_namespace_when_unset(self) -> None:
        settings = load_operator_settings({})
        assert settings.namespaces == ()
        assert settings.serves("anything")
        assert kopf_scope_args(settings.namespaces) == ["--all-namespaces"]

    def test_should_serve_only_the_listed_namespaces(self) -> None:
        settings = load_operator_settings({"ALGOEDGE_OPERATOR_NAMESPACES": "team-a, team-b"})
        assert settings.namespaces == ("team-a", "team-b")
        assert settings.serves("team-b")
        assert not settings.serves("team-c")
        assert kopf_scope_args(settings.namespaces) == [
            "--namespace=team-a",
            "--namespace=team-b",
        ]

    @pytest.mark.parametrize(
        "value",
        [
            "Team-A",  # namespaces are lowercase
            "team_a",
            "-team",
            "team-",
            "a" * 64,  # longer than a label
            "team-a,team-a",  # twice
            "team-a,,team-b",  # an empty entry is refused, never read as "every namespace"
            ",",
            "team-*",  # kopf would take it as a glob; the Roles cannot follow one
            "!team-a",
        ],
    )
    def test_should_refuse_what_is_not_a_list_of_namespace_names(self, value: str) -> None:
        with pytest.raises(SettingsError) as error:
            load_operator_settings({"ALGOEDGE_OPERATOR_NAMESPACES": value})
        assert str(error.value) == (
            "ALGOEDGE_OPERATOR_NAMESPACES must be comma-separated namespace names "
            "(lowercase RFC 1123 labels), each named once"
        )
