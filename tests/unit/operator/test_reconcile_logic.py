"""Pure pieces of the reconcile: drift detection and take-back, API errors, status and capacity parsing."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pytest
from algoedge_operator.builders import TenantSecrets
from algoedge_operator.builders.api import api_deployment, api_service
from algoedge_operator.capacity import CapacityError, parse_capacity
from algoedge_operator.diff import contains, needs_apply, quantity, stamp, take_back
from algoedge_operator.kube import KubeError, plural
from algoedge_operator.reconcile import METAAPI_TOKEN_NOT_SET, TenantReconciler
from algoedge_operator.settings import OperatorSettings
from algoedge_operator.status import (
    ComponentState,
    Problem,
    ScalingState,
    build_status,
    status_patch,
    workload_state,
)

from tests.unit.operator.fake_api import FakeApiServer
from tests.unit.operator.support import (
    BASE_SPEC,
    METAAPI_TOKEN,
    tenant,
    tenant_secrets,
    without_metaapi_token,
)

READY = ComponentState(replicas=2, ready_replicas=2, up_to_date=True)
DB_URL = "postgresql://acme:pw@db.example.com:5432/acme"
SMTP_URL = "smtp://mailer:pw@mail.example.com:587?starttls=true"
MAIL = {"smtpSecretRef": {"name": "acme-smtp"}}


def read_secrets(
    secrets: Mapping[str, Mapping[str, str]], *, base: Mapping[str, Any] = BASE_SPEC, **spec: Any
) -> TenantSecrets | Problem:
    """What one reconcile reads, with the tenant's own Secrets ``secrets`` (and, unless they say
    otherwise, a valid MetaAPI token in ``acme-metaapi``) in the cluster."""
    server = FakeApiServer()
    for name, values in {"acme-metaapi": {"token": METAAPI_TOKEN}, **secrets}.items():
        server.secret("trading", name, **values)
    reconciler = TenantReconciler(server, OperatorSettings(), new_secret_value=lambda key: "x" * 48)
    return reconciler.read_secrets(tenant(base=base, **spec))


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


class TestTakeBack:
    def test_should_patch_the_re_keyed_list_and_nothing_else(self) -> None:
        desired = stamp(api_service(tenant()))
        live = copy.deepcopy(desired)
        live["metadata"]["annotations"]["someone"] = "else"
        live["spec"]["ports"] = [{"name": "http", "port": 8081, "targetPort": "http"}]
        live["spec"].update(clusterIP="10.0.0.7", sessionAffinity="None")
        assert take_back(desired, live) == [
            {"op": "add", "path": "/spec/ports", "value": desired["spec"]["ports"]}
        ]

    def test_should_take_back_labels_annotations_and_owners_by_key(self) -> None:
        desired = stamp(api_service(tenant()))
        live = copy.deepcopy(desired)
        live["metadata"]["labels"]["app.kubernetes.io/instance"] = "other"
        live["metadata"]["ownerReferences"] = []
        del live["metadata"]["annotations"]
        paths = [op["path"] for op in take_back(desired, live)]
        assert paths == [
            "/metadata/labels/app.kubernetes.io~1instance",
            "/metadata/annotations",
            "/metadata/ownerReferences",
        ]

    def test_should_leave_replicas_to_the_autoscaler_and_defaults_alone(self) -> None:
        desired = stamp(api_deployment(tenant(), tenant_secrets()))
        assert take_back(desired, live_copy(desired)) == []
        live = live_copy(desired)
        live["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] = "x"
        assert [op["path"] for op in take_back(desired, live)] == ["/spec/selector"]


class TestKubeError:
    def cause(self, message: str) -> dict[str, str]:
        return {"reason": "FieldValueInvalid", "message": message, "field": "spec"}

    def test_should_know_a_change_only_a_new_object_can_make(self) -> None:
        selector = self.cause("Invalid value: {...}: field is immutable")
        volume = self.cause("Forbidden: updates to statefulset spec for fields other than ...")
        for cause in (selector, volume):
            assert KubeError("x", status=422, causes=(cause,)).immutable

    def test_should_not_take_other_refusals_for_immutability(self) -> None:
        duplicate = self.cause('Duplicate value: "http"')
        immutable = self.cause("field is immutable")
        assert not KubeError("x", status=422, causes=(duplicate,)).immutable
        assert not KubeError("x", status=422, causes=(immutable, duplicate)).immutable
        assert not KubeError("x", status=403, causes=(immutable,)).immutable
        assert not KubeError("x", status=422).immutable

    def test_should_summarise_without_the_request_line(self) -> None:
        error = KubeError("PATCH /api/v1/x: 403 no", status=403, api_message="no")
        assert error.summary == "403 no"
        assert KubeError("GET /x: connection refused", status=0).summary == (
            "GET /x: connection refused"
        )


def test_should_name_resources_as_the_api_server_does() -> None:
    assert [plural(k) for k in ("NetworkPolicy", "Service", "HorizontalPodAutoscaler")] == [
        "networkpolicies",
        "services",
        "horizontalpodautoscalers",
    ]


class TestReadSecrets:
    def test_should_stop_before_any_write_while_the_smtp_secret_is_missing(self) -> None:
        problem = read_secrets({"acme-db": {"url": DB_URL}}, mail=MAIL)
        assert problem == Problem(
            "SecretMissing",
            "Secret trading/acme-smtp (spec.mail.smtpSecretRef) does not exist",
        )

    def test_should_name_the_missing_key_of_the_smtp_secret(self) -> None:
        problem = read_secrets(
            {"acme-db": {"url": DB_URL}, "acme-smtp": {"password": "x"}}, mail=MAIL
        )
        assert isinstance(problem, Problem)
        assert problem.reason == "SecretMissing"
        assert "has no key 'url'" in problem.message

    def test_should_refuse_an_smtp_secret_that_holds_no_smtp_url(self) -> None:
        problem = read_secrets(
            {"acme-db": {"url": DB_URL}, "acme-smtp": {"url": "mail.example.com:25"}}, mail=MAIL
        )
        assert isinstance(problem, Problem)
        assert problem.reason == "SecretInvalid"
        assert "smtp://" in problem.message
        assert "mail.example.com" not in problem.message, "never echo a secret value"

    def test_should_not_read_an_smtp_secret_nobody_references(self) -> None:
        secrets = read_secrets({"acme-db": {"url": DB_URL}})
        assert isinstance(secrets, TenantSecrets)
        assert secrets.smtp_url_digest == ""

    def test_should_notice_a_rotated_smtp_password(self) -> None:
        before = read_secrets(
            {"acme-db": {"url": DB_URL}, "acme-smtp": {"url": SMTP_URL}}, mail=MAIL
        )
        rotated = SMTP_URL.replace(":pw@", ":PW@")
        after = read_secrets({"acme-db": {"url": DB_URL}, "acme-smtp": {"url": rotated}}, mail=MAIL)
        assert isinstance(before, TenantSecrets)
        assert isinstance(after, TenantSecrets)
        assert before.smtp_url_digest != after.smtp_url_digest
        assert "pw" not in before.smtp_url_digest

    def test_should_stop_before_any_write_while_the_metaapi_token_secret_is_missing(self) -> None:
        problem = read_secrets({"acme-db": {"url": DB_URL}, "acme-metaapi": {}})
        assert problem == Problem(
            "SecretMissing",
            "Secret trading/acme-metaapi (spec.bridge.metaapi.tokenSecretRef) has no key 'token'",
        )
        other_key = {"metaapi": {"tokenSecretRef": {"name": "mt", "key": "api-token"}}}
        problem = read_secrets({"acme-db": {"url": DB_URL}}, bridge=other_key)
        assert problem == Problem(
            "SecretMissing",
            "Secret trading/mt (spec.bridge.metaapi.tokenSecretRef) does not exist",
        )

    @pytest.mark.parametrize(
        "token",
        ["not-a-jwt", "a..c", "a.b.c.d", METAAPI_TOKEN + "\n", " " + METAAPI_TOKEN],
        ids=["one part", "empty part", "four parts", "trailing newline", "leading space"],
    )
    def test_should_refuse_a_metaapi_token_the_bridge_could_not_use(self, token: str) -> None:
        problem = read_secrets({"acme-db": {"url": DB_URL}, "acme-metaapi": {"token": token}})
        assert isinstance(problem, Problem)
        assert problem.reason == "SecretInvalid"
        assert problem.message == (
            "Secret trading/acme-metaapi key 'token': the MetaAPI token must have three "
            "dot-separated parts and no whitespace (a JWT)"
        )

    def test_should_not_read_a_metaapi_token_nobody_references(self) -> None:
        secrets = read_secrets(
            {"acme-db": {"url": DB_URL}, "acme-metaapi": {}}, base=without_metaapi_token()
        )
        assert isinstance(secrets, TenantSecrets)
        assert secrets.metaapi_token_digest == ""

    def test_should_notice_a_rotated_metaapi_token(self) -> None:
        rotated = METAAPI_TOKEN.replace("c2ln", "C2ln")
        before, after = (
            read_secrets({"acme-db": {"url": DB_URL}, "acme-metaapi": {"token": token}})
            for token in (METAAPI_TOKEN, rotated)
        )
        assert isinstance(before, TenantSecrets)
        assert isinstance(after, TenantSecrets)
        assert before.metaapi_token_digest != after.metaapi_token_digest
        assert METAAPI_TOKEN not in before.metaapi_token_digest

    def test_should_notice_a_rotated_external_redis_password(self) -> None:
        redis = {"mode": "external", "external": {"secretRef": {"name": "ext"}}}
        digests = []
        for password in ("old-password", "new-password"):
            url = f"rediss://:{password}@redis.example.com:6380/0"
            secrets = read_secrets({"acme-db": {"url": DB_URL}, "ext": {"url": url}}, redis=redis)
            assert isinstance(secrets, TenantSecrets)
            digests.append(secrets.external_redis_digest)
        assert digests[0] != digests[1]


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

    def test_should_say_that_linked_accounts_stay_unconnected_without_a_token(self) -> None:
        stopped = ComponentState(replicas=0, ready_replicas=0, up_to_date=True)
        status = self.build(
            components={"api": READY, "bridge": stopped}, notice=METAAPI_TOKEN_NOT_SET
        )
        assert self.conditions(status) == {
            "Ready": ("True", "AllComponentsReady"),
            "Progressing": ("False", "Stable"),
            "Degraded": ("True", "MetaApiTokenNotSet"),
        }
        (degraded,) = [c for c in status["conditions"] if c["type"] == "Degraded"]
        assert degraded["message"] == (
            "spec.bridge.metaapi.tokenSecretRef is not set: the bridge runs no pods and linked "
            "accounts are not connected to MetaAPI"
        )
        assert status["components"]["bridge"] == {"replicas": 0, "readyReplicas": 0}

    def test_should_name_a_failure_before_the_missing_token(self) -> None:
        failing = self.build(
            components={}, problem=Problem("SecretMissing", "x"), notice=METAAPI_TOKEN_NOT_SET
        )
        assert self.conditions(failing)["Degraded"] == ("True", "SecretMissing")
        unreadable = self.build(
            scaling=ScalingState(capacity_error="HTTP 503"), notice=METAAPI_TOKEN_NOT_SET
        )
        assert self.conditions(unreadable)["Degraded"] == ("True", "CapacityUnavailable")

    def test_should_count_a_workload_scaled_to_zero_as_ready_only_once_it_is(self) -> None:
        assert ComponentState(replicas=0, ready_replicas=0, up_to_date=True).ready
        assert not ComponentState(replicas=0, ready_replicas=0, up_to_date=False).ready
        assert not ComponentState(replicas=2, ready_replicas=1, up_to_date=True).ready

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
