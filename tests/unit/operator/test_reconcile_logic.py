"""Pure pieces of the reconcile: drift detection, status and capacity parsing."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from algoedge_operator.builders.api import api_deployment
from algoedge_operator.capacity import CapacityError, parse_capacity
from algoedge_operator.diff import contains, needs_apply, quantity, stamp
from algoedge_operator.status import (
    ComponentState,
    Problem,
    ScalingState,
    build_status,
    status_patch,
    workload_state,
)

from tests.unit.operator.support import tenant, tenant_secrets

READY = ComponentState(replicas=2, ready_replicas=2, up_to_date=True)


def live_copy(manifest: dict[str, Any]) -> dict[str, Any]:
    """What the API server returns: our fields plus defaults and bookkeeping."""
    live = copy.deepcopy(manifest)
    live["metadata"]["uid"] = "x"
    live["metadata"]["managedFields"] = [{"manager": "algoedge-operator"}]
    live["spec"]["replicas"] = 2
    live["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"] = (
        "/dev/termination-log"
    )
    live["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = "2000m"
    live["status"] = {"readyReplicas": 2}
    return live


class TestNeedsApply:
    def test_should_skip_an_object_that_already_matches(self) -> None:
        desired = stamp(api_deployment(tenant(), tenant_secrets()))
        assert needs_apply(desired, live_copy(desired)) is False

    def test_should_apply_a_missing_object(self) -> None:
        assert needs_apply(stamp(api_deployment(tenant(), tenant_secrets())), None) is True

    def test_should_apply_when_someone_edited_an_owned_field(self) -> None:
        desired = stamp(api_deployment(tenant(), tenant_secrets()))
        live = live_copy(desired)
        live["spec"]["template"]["spec"]["containers"][0]["image"] = "evil:latest"
        assert needs_apply(desired, live) is True

    def test_should_apply_when_the_wanted_object_changed(self) -> None:
        before = stamp(api_deployment(tenant(), tenant_secrets()))
        after = stamp(api_deployment(tenant(logLevel="DEBUG"), tenant_secrets()))
        assert needs_apply(after, live_copy(before)) is True

    def test_should_tolerate_entries_others_added_to_named_lists(self) -> None:
        desired = {"env": [{"name": "A", "value": "1"}]}
        assert contains(
            {"env": [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]}, desired
        )

    def test_should_compare_quantities_by_value(self) -> None:
        assert quantity("0.5") == quantity("500m")
        assert quantity("1Gi") == quantity("1024Mi")
        assert contains({"cpu": "500m"}, {"cpu": "0.5"})
        assert not contains({"cpu": "500m"}, {"cpu": "1"})


class TestStatus:
    def build(self, previous: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "generation": 4,
            "profile": "large",
            "components": {"api": READY, "worker": READY},
            "problem": None,
            "paused": False,
            "scaling": ScalingState(linked_accounts=250, bridge_replicas=3),
            "previous": previous or {},
            "now": "2026-01-01T00:00:00Z",
        }
        arguments.update(changes)
        return build_status(**arguments)

    def conditions(self, status: dict[str, Any]) -> dict[str, tuple[str, str]]:
        return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}

    def test_should_be_ready_when_every_component_is(self) -> None:
        status = self.build()
        assert self.conditions(status) == {
            "Ready": ("True", "AllComponentsReady"),
            "Progressing": ("False", "Stable"),
            "Degraded": ("False", "AsExpected"),
        }
        assert status["observedGeneration"] == 4
        assert status["linkedAccounts"] == 250
        assert status["bridgeReplicas"] == 3

    def test_should_name_a_missing_secret(self) -> None:
        status = self.build(
            components={}, problem=Problem("SecretMissing", "Secret ns/db does not exist")
        )
        assert self.conditions(status)["Ready"] == ("False", "SecretMissing")
        assert "ns/db" in status["conditions"][0]["message"]

    def test_should_say_when_paused(self) -> None:
        assert self.conditions(self.build(paused=True))["Progressing"] == ("False", "Paused")

    def test_should_report_an_unreadable_capacity_endpoint(self) -> None:
        status = self.build(scaling=ScalingState(capacity_error="HTTP 503"))
        assert self.conditions(status)["Degraded"] == ("True", "CapacityUnavailable")

    def test_should_keep_transition_times_and_need_no_write_when_unchanged(self) -> None:
        first = self.build()
        second = self.build(previous=first, now="2026-01-02T00:00:00Z")
        assert second == first
        assert status_patch(first, second) is None

    def test_should_remove_components_that_went_away(self) -> None:
        first = self.build()
        second = self.build(previous=first, components={"api": READY})
        patch = status_patch(first, second)
        assert patch is not None
        assert patch["components"]["worker"] is None

    def test_should_read_replicas_from_a_workload(self) -> None:
        live = {
            "metadata": {"generation": 2},
            "spec": {"replicas": 3},
            "status": {
                "observedGeneration": 2,
                "replicas": 3,
                "updatedReplicas": 3,
                "readyReplicas": 3,
            },
        }
        assert workload_state(live) == ComponentState(3, 3, up_to_date=True)
        live["status"]["observedGeneration"] = 1
        state = workload_state(live)
        assert state is not None
        assert state.ready is False


class TestParseCapacity:
    def test_should_read_the_contract(self) -> None:
        report = parse_capacity(
            {
                "linked_accounts": 250,
                "connected_accounts": 240,
                "queue_backlog": {"default": 120, "reports": 30},
            }
        )
        assert (report.linked_accounts, report.total_backlog) == (250, 150)

    @pytest.mark.parametrize(
        "payload",
        [
            [],
            {"connected_accounts": 1},
            {"linked_accounts": -1, "connected_accounts": 0},
            {"linked_accounts": 1, "connected_accounts": 1, "queue_backlog": {"q": "x"}},
        ],
    )
    def test_should_refuse_answers_that_break_it(self, payload: Any) -> None:
        with pytest.raises(CapacityError):
            parse_capacity(payload)
