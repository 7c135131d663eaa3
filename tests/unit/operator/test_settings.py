"""Operator settings: defaults, and a clear error naming the variable when one is malformed."""

from __future__ import annotations

import pytest
from algoedge_operator.settings import (
    DEFAULT_CAPACITY_URL,
    SettingsError,
    load_operator_settings,
)


class TestOperatorSettings:
    def test_should_default_to_the_in_cluster_capacity_url_and_30_seconds(self) -> None:
        settings = load_operator_settings({})
        assert settings.capacity_url == DEFAULT_CAPACITY_URL
        assert settings.scale_interval == 30
        assert (
            settings.capacity_url_for(name="acme", namespace="trading")
            == "http://acme-api.trading.svc:8080/internal/v1/capacity"
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
        ],
    )
    def test_should_name_the_malformed_variable(self, variable: str, value: str) -> None:
        with pytest.raises(SettingsError, match=f"^{variable} must be"):
            load_operator_settings({variable: value})

    def test_should_never_echo_the_value(self) -> None:
        with pytest.raises(SettingsError) as raised:
            load_operator_settings({"ALGOEDGE_OPERATOR_SCALE_INTERVAL": "secret-ish"})
        assert "secret-ish" not in str(raised.value)
