"""TenantReconciler against an in-memory API server: children written, failures isolated, drift
repaired, statuses computed, replicas carried over a restart."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from algoedge_operator import metrics
from algoedge_operator.builders import CHILDREN, ScaleTargets
from algoedge_operator.builders.common import CHECKSUM_ANNOTATION
from algoedge_operator.kube import KubeError, ObjectRef, ServedKinds
from algoedge_operator.model import Tenant
from algoedge_operator.reconcile import ReconcileResult, TenantReconciler
from algoedge_operator.settings import OperatorSettings
from algoedge_operator.status import ScalingState
from prometheus_client import REGISTRY

from tests.unit.operator.fake_api import FakeApiServer
from tests.unit.operator.support import METAAPI_TOKEN, tenant, without_metaapi_token

NAMESPACE = "trading"
DB_URL = "postgresql://acme:pw@db.example.com:5432/acme"
EXTERNAL_REDIS = {"mode": "external", "external": {"secretRef": {"name": "acme-redis-url"}}}
TARGETS = ScaleTargets(workers=2, bridge=1)
MONITORING = "monitoring.coreos.com/v1"
MONITORED: dict[str, Any] = {"monitoring": {"enabled": True, "labels": {"release": "kps"}}}


@pytest.fixture
def server() -> FakeApiServer:
    api = FakeApiServer()
    api.secret(NAMESPACE, "acme-db", url=DB_URL)
    api.secret(NAMESPACE, "acme-metaapi", token=METAAPI_TOKEN)
    return api


def reconciler(server: FakeApiServer) -> TenantReconciler:
    """A fresh reconciler, as after an operator (re)start."""
    return TenantReconciler(
        server,
        OperatorSettings(),
        new_secret_value=lambda key: f"generated-{key}-".ljust(48, "x"),
        clock=lambda: "2026-01-01T00:00:00Z",
    )


def run(
    server: FakeApiServer,
    aet: Tenant,
    *,
    previous: ReconcileResult | None = None,
    targets: ScaleTargets | None = TARGETS,
    reconciler_: TenantReconciler | None = None,
) -> ReconcileResult:
    return (reconciler_ or reconciler(server)).reconcile(
        aet,
        targets=targets,
        scaling=ScalingState(),
        previous_status=previous.status if previous is not None else {},
    )


def condition(result: ReconcileResult, kind: str) -> tuple[str, str, str]:
    (found,) = [c for c in result.status["conditions"] if c["type"] == kind]
    return found["status"], found["reason"], found["message"]


def checksum(server: FakeApiServer, name: str) -> str:
    deployment = server.find("Deployment", name)
    assert deployment is not None
    return str(deployment["spec"]["template"]["metadata"]["annotations"][CHECKSUM_ANNOTATION])


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def forbidden(kind: str, name: str) -> KubeError:
    message = f'{kind.lower()}s "{name}" is forbidden: the webhook said no'
    return KubeError(f"apply: 403 {message}", status=403, api_message=message)


class TestChildren:
    def test_should_create_every_child_of_the_table_and_report_ready(
        self, server: FakeApiServer
    ) -> None:
        server.served[MONITORING] = {"PodMonitor", "PrometheusRule"}
        result = run(server, tenant(**MONITORED))
        for child in CHILDREN:
            key = child.key(tenant())
            assert server.find(key.kind, key.name) is not None, key
        assert condition(result, "Ready")[:2] == ("True", "AllComponentsReady")
        assert set(result.status["components"]) == {
            "api",
            "worker",
            "beat",
            "pgbouncer",
            "redis",
            "bridge",
        }
        assert (result.outcome, result.retry) == ("ready", False)

    def test_should_write_nothing_at_steady_state(self, server: FakeApiServer) -> None:
        first = run(server, tenant())
        server.writes.clear()
        second = run(server, tenant(), previous=first)
        assert server.writes == []
        assert second.status == first.status

    def test_should_generate_internal_secrets_once_and_read_them_back(
        self, server: FakeApiServer
    ) -> None:
        run(server, tenant())
        internal = server.find("Secret", "acme-internal")
        assert internal is not None
        token = base64.b64decode(internal["data"]["ALGOEDGE_INTERNAL_TOKEN"]).decode()
        fresh = TenantReconciler(server, OperatorSettings(), new_secret_value=lambda key: "new")
        assert fresh.internal_token(tenant()) == token

    def test_should_delete_beat_when_disabled_but_never_another_owners_object(
        self, server: FakeApiServer
    ) -> None:
        run(server, tenant())
        redis = server.edit("v1", "ConfigMap", NAMESPACE, "acme-redis")
        redis["metadata"]["ownerReferences"] = [{"uid": "someone-else"}]
        server.put(redis)
        run(server, tenant(beat={"enabled": False}, redis=external_redis_with_secret(server)))
        assert server.find("Deployment", "acme-beat") is None
        assert server.find("StatefulSet", "acme-redis") is None
        assert server.find("ConfigMap", "acme-redis") is not None, "not this tenant's"

    def test_should_neither_read_nor_overwrite_a_secret_of_its_name_that_is_not_its_own(
        self, server: FakeApiServer
    ) -> None:
        server.secret(NAMESPACE, "acme-internal", ALGOEDGE_INTERNAL_TOKEN="another-teams-token")
        result = run(server, tenant())
        assert condition(result, "Degraded")[:2] == ("True", "NameConflict")
        assert "Secret acme-internal" in condition(result, "Degraded")[2]
        assert [w for w in server.writes if w[1] != "AlgoEdgeTenant/status"] == []
        assert reconciler(server).internal_token(tenant()) is None
        assert [e["reason"] for e in server.events] == ["NameConflict"]

    def test_should_roll_nothing_out_with_an_image_outside_the_allowlist(
        self, server: FakeApiServer
    ) -> None:
        settings = OperatorSettings(image_allowlist=("registry.example.com/algoedge-bridge",))
        result = TenantReconciler(server, settings).reconcile(
            tenant(), targets=TARGETS, scaling=ScalingState(), previous_status={}
        )
        assert condition(result, "Degraded")[:2] == ("True", "ImageNotAllowed")
        assert "spec.image " in condition(result, "Degraded")[2]
        assert [w for w in server.writes if w[1] != "AlgoEdgeTenant/status"] == []

    @pytest.mark.parametrize("label", [None, "another-tenant"])
    def test_should_not_read_a_referenced_secret_not_labelled_for_the_tenant(
        self, server: FakeApiServer, label: str | None
    ) -> None:
        server.secret(NAMESPACE, "acme-redis-url", for_tenant=label, url="redis://:pw@r:6379/0")
        result = run(server, tenant(redis=EXTERNAL_REDIS))
        status, reason, message = condition(result, "Degraded")
        assert (status, reason) == ("True", "SecretNotLabelled")
        assert "Secret trading/acme-redis-url (spec.redis.external.secretRef)" in message
        assert "kubectl -n trading label secret acme-redis-url algoedge.io/tenant=acme" in message
        assert [w for w in server.writes if w[1] != "AlgoEdgeTenant/status"] == []

    def test_should_write_nothing_while_a_referenced_secret_is_missing(
        self, server: FakeApiServer
    ) -> None:
        del server.objects[ObjectRef("v1", "Secret", NAMESPACE, "acme-db")]
        first = run(server, tenant())
        assert condition(first, "Ready")[:2] == ("False", "SecretMissing")
        assert [w for w in server.writes if w[1] != "AlgoEdgeTenant/status"] == []
        assert [e["reason"] for e in server.events] == ["SecretMissing"]
        run(server, tenant(), previous=first)
        assert len(server.events) == 1, "announced once, not at every retry"


def external_redis_with_secret(server: FakeApiServer) -> dict[str, Any]:
    """External mode, with the Secret holding its URL."""
    server.secret(NAMESPACE, "acme-redis-url", url="rediss://:pw@redis.example.com:6380/0")
    return EXTERNAL_REDIS


class TestFailureIsolation:
    def test_should_write_every_other_child_when_one_is_refused(
        self, server: FakeApiServer
    ) -> None:
        server.refuse[("Service", "acme-api")] = forbidden("Service", "acme-api")
        before = counter("algoedge_operator_child_failures_total", kind="Service")
        result = run(server, tenant())
        assert server.find("Service", "acme-api") is None
        for child in CHILDREN:
            key = child.key(tenant())
            if not child.optional_api and (key.name != "acme-api" or key.kind != "Service"):
                assert server.find(key.kind, key.name) is not None, key
        status, reason, message = condition(result, "Ready")
        assert (status, reason) == ("False", "ApplyFailed")
        assert (
            message == 'Service acme-api: 403 services "acme-api" is forbidden: the webhook said no'
        )
        assert condition(result, "Degraded")[:2] == ("True", "ApplyFailed")
        assert (result.outcome, result.retry) == ("ApplyFailed", True)
        assert [(e["type"], e["reason"], e["message"]) for e in server.events] == [
            ("Warning", "ApplyFailed", message)
        ]
        assert counter("algoedge_operator_child_failures_total", kind="Service") == before + 1

    def test_should_retry_the_refused_child_and_announce_its_failure_once(
        self, server: FakeApiServer
    ) -> None:
        server.refuse[("Service", "acme-api")] = forbidden("Service", "acme-api")
        first = run(server, tenant())
        server.writes.clear()
        second = run(server, tenant(), previous=first)
        assert server.writes == [("apply", "Service", "acme-api")]
        assert len(server.events) == 1
        del server.refuse[("Service", "acme-api")]
        third = run(server, tenant(), previous=second)
        assert server.find("Service", "acme-api") is not None
        assert condition(third, "Ready")[:2] == ("True", "AllComponentsReady")
        assert third.retry is False

    def test_should_still_roll_the_api_pods_on_a_spec_change_while_a_child_fails(
        self, server: FakeApiServer
    ) -> None:
        first = run(server, tenant())
        before = checksum(server, "acme-api")
        server.refuse[("Service", "acme-api")] = forbidden("Service", "acme-api")
        changed = tenant(rateLimits={"perUser": {"requests": 7}})
        run(server, changed, previous=first)
        assert checksum(server, "acme-api") != before
        config = server.find("ConfigMap", "acme-config")
        assert config is not None
        assert config["data"]["ALGOEDGE_RATE_LIMIT_PER_USER"] == "7/900"


class TestDriftRepair:
    def test_should_take_back_a_service_port_edited_in_place(self, server: FakeApiServer) -> None:
        first = run(server, tenant())
        service = server.edit("v1", "Service", NAMESPACE, "acme-api")
        service["spec"]["ports"][0]["port"] = 8081
        service["spec"]["clusterIP"] = "10.0.0.7"  # allocated by the server: must survive
        server.put(service)
        server.writes.clear()
        repaired = run(server, tenant(), previous=first)
        assert server.writes == [
            ("apply", "Service", "acme-api"),
            ("patch", "Service", "acme-api"),
        ]
        live = server.find("Service", "acme-api")
        assert live is not None
        assert [(p["name"], p["port"]) for p in live["spec"]["ports"]] == [
            ("http", 8080),
            ("metrics", 9090),
        ]
        assert live["spec"]["clusterIP"] == "10.0.0.7"
        assert condition(repaired, "Ready")[:2] == ("True", "AllComponentsReady")
        (event,) = server.events
        assert event["reason"] == "DriftRepaired"
        assert event["message"].startswith("Service acme-api: apply refused (422 ")
        assert event["message"].endswith("; took back /spec/ports")
        server.writes.clear()
        run(server, tenant(), previous=repaired)
        assert server.writes == [], "a repaired drift leaves nothing to write"

    def test_should_recreate_a_deployment_whose_selector_changed(
        self, server: FakeApiServer
    ) -> None:
        first = run(server, tenant())
        beat = server.edit("apps/v1", "Deployment", NAMESPACE, "acme-beat")
        del server.objects[server.key(beat)]
        beat["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] = "scheduler"
        server.put(beat)
        server.writes.clear()
        result = run(server, tenant(), previous=first)
        assert server.writes == [
            ("apply", "Deployment", "acme-beat"),
            ("delete/Background", "Deployment", "acme-beat"),
            ("apply", "Deployment", "acme-beat"),
        ]
        live = server.find("Deployment", "acme-beat")
        assert live is not None
        assert live["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "beat"
        assert result.retry is False

    def test_should_keep_the_redis_volume_when_its_stateful_set_is_recreated(
        self, server: FakeApiServer
    ) -> None:
        first = run(server, tenant())
        redis = server.edit("apps/v1", "StatefulSet", NAMESPACE, "acme-redis")
        claim = redis["spec"]["volumeClaimTemplates"][0]["spec"]
        claim["resources"]["requests"]["storage"] = "2Gi"
        del server.objects[server.key(redis)]
        server.put(redis)

        def redis_writes() -> list[str]:
            return [
                verb
                for verb, kind, name in server.writes
                if name == "acme-redis" and kind == "StatefulSet"
            ]

        # 1: the claims are released; nothing is deleted before its controller has seen that.
        server.writes.clear()
        releasing = run(server, tenant(), previous=first)
        assert redis_writes() == ["apply", "patch"]
        live = server.find("StatefulSet", "acme-redis")
        assert live is not None
        assert live["spec"]["persistentVolumeClaimRetentionPolicy"] == {
            "whenDeleted": "Retain",
            "whenScaled": "Retain",
        }
        assert releasing.retry is True
        live["status"]["observedGeneration"] -= 1  # the StatefulSet controller is behind
        server.writes.clear()
        run(server, tenant(), previous=releasing)
        assert redis_writes() == ["apply"], "waits for the controller to release the claims"
        # 2: deleted leaving its pods and claims for the new object to adopt.
        live["status"]["observedGeneration"] += 1
        server.writes.clear()
        deleting = run(server, tenant(), previous=releasing)
        assert redis_writes() == ["apply", "delete/Orphan"]
        assert deleting.retry is True
        # 3: created anew once the garbage collector has let the old one go.
        server.collect_garbage()
        server.writes.clear()
        created = run(server, tenant(), previous=deleting)
        assert redis_writes() == ["apply"]
        live = server.find("StatefulSet", "acme-redis")
        assert live is not None
        storage = live["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]
        assert storage == {"storage": "1Gi"}
        assert live["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Delete"
        assert created.retry is False

    def test_should_never_delete_a_child_whose_desired_state_is_itself_invalid(
        self, server: FakeApiServer
    ) -> None:
        first = run(server, tenant())
        server.refuse[("Deployment", "acme-api")] = KubeError(
            "422", status=422, api_message="invalid quantity", causes=({"message": "bad"},)
        )
        server.writes.clear()
        result = run(server, tenant(logLevel="DEBUG"), previous=first)
        api_writes = [w for w in server.writes if w[1:] == ("Deployment", "acme-api")]
        assert api_writes == [
            ("apply", "Deployment", "acme-api"),
            ("patch", "Deployment", "acme-api"),
        ]
        assert server.find("Deployment", "acme-api") is not None
        assert condition(result, "Ready")[1] == "ApplyFailed"


class TestScaleTargets:
    def test_should_keep_the_replicas_a_restarted_operator_finds(
        self, server: FakeApiServer
    ) -> None:
        run(server, tenant(), targets=ScaleTargets(workers=4, bridge=3))
        after_restart = run(server, tenant(), targets=None)
        assert after_restart.live_targets == ScaleTargets(workers=4, bridge=3)
        worker = server.find("Deployment", "acme-worker")
        assert worker is not None
        assert worker["spec"]["replicas"] == 4
        assert after_restart.status["workerReplicas"] == 4

    def test_should_bring_running_replicas_within_changed_bounds(
        self, server: FakeApiServer
    ) -> None:
        run(server, tenant(), targets=ScaleTargets(workers=8, bridge=3))
        result = run(server, tenant(workers={"maxReplicas": 5}), targets=None)
        assert result.live_targets == ScaleTargets(workers=5, bridge=3)

    def test_should_start_a_new_tenant_at_the_minimums(self, server: FakeApiServer) -> None:
        result = run(server, tenant(bridge={"minReplicas": 2}), targets=None)
        assert result.live_targets == ScaleTargets(workers=2, bridge=2)

    def test_should_report_what_runs_while_paused_and_write_nothing(
        self, server: FakeApiServer
    ) -> None:
        first = run(server, tenant(), targets=ScaleTargets(workers=3, bridge=2))
        server.writes.clear()
        paused = run(
            server, tenant(paused=True), previous=first, targets=ScaleTargets(workers=6, bridge=6)
        )
        assert paused.live_targets == ScaleTargets(workers=3, bridge=2)
        assert [w for w in server.writes if w[1] != "AlgoEdgeTenant/status"] == []
        assert condition(paused, "Progressing")[:2] == ("False", "Paused")
        assert paused.outcome == "paused"


class TestSecrets:
    def test_should_roll_every_app_pod_when_the_external_redis_url_rotates(
        self, server: FakeApiServer
    ) -> None:
        server.secret(NAMESPACE, "acme-redis-url", url="rediss://:old@redis.example.com:6380/0")
        aet = tenant(redis=EXTERNAL_REDIS)
        first = run(server, aet)
        before = {name: checksum(server, name) for name in ("acme-api", "acme-worker")}
        server.secret(NAMESPACE, "acme-redis-url", url="rediss://:new@redis.example.com:6380/0")
        run(server, aet, previous=first)
        after = {name: checksum(server, name) for name in ("acme-api", "acme-worker")}
        assert all(after[name] != before[name] for name in before)

    @pytest.mark.parametrize("position", [0, 15, 31])
    def test_should_roll_every_app_pod_when_a_same_length_redis_password_rotates(
        self, server: FakeApiServer, position: int
    ) -> None:
        """The whole URL is hashed: a new password of the old one's length, differing in one
        character anywhere, still rolls the pods (a hash of the URL's tail would not)."""
        old = "a" * 32
        new = old[:position] + "b" + old[position + 1 :]
        url = "rediss://:{}@redis.example.com:6380/0"
        server.secret(NAMESPACE, "acme-redis-url", url=url.format(old))
        aet = tenant(redis=EXTERNAL_REDIS)
        first = run(server, aet)
        before = {name: checksum(server, name) for name in ("acme-api", "acme-worker")}
        server.secret(NAMESPACE, "acme-redis-url", url=url.format(new))
        run(server, aet, previous=first)
        after = {name: checksum(server, name) for name in ("acme-api", "acme-worker")}
        assert all(after[name] != before[name] for name in before)

    def test_should_refuse_an_external_redis_url_the_app_would_refuse(
        self, server: FakeApiServer
    ) -> None:
        server.secret(NAMESPACE, "acme-redis-url", url="rediss://:pw@redis.example.com:6380/cache")
        result = run(server, tenant(redis=EXTERNAL_REDIS))
        status, reason, message = condition(result, "Ready")
        assert (status, reason) == ("False", "SecretInvalid")
        assert "the Redis URL has a database that is not a number" in message
        assert ":pw@" not in message


class TestCredentialsKey:
    INTERNAL = ObjectRef("v1", "Secret", NAMESPACE, "acme-internal")

    def stored_key(self, server: FakeApiServer) -> str:
        internal = server.find("Secret", "acme-internal")
        assert internal is not None
        return base64.b64decode(internal["data"]["ALGOEDGE_CREDENTIALS_KEY"]).decode()

    def test_should_record_the_keys_fingerprint(self, server: FakeApiServer) -> None:
        result = run(server, tenant())
        key = self.stored_key(server)
        assert (
            result.status["credentialsKeyFingerprint"]
            == (hashlib.sha256(key.encode()).hexdigest()[:16])
        )

    def test_should_never_generate_a_key_over_a_recorded_one(self, server: FakeApiServer) -> None:
        first = run(server, tenant())
        key = self.stored_key(server)
        fingerprint = first.status["credentialsKeyFingerprint"]
        del server.objects[self.INTERNAL]["data"]["ALGOEDGE_CREDENTIALS_KEY"]
        server.writes.clear()
        second = run(server, tenant(), previous=first)
        for kind in ("Ready", "Degraded"):
            status, reason, message = condition(second, kind)
            assert (status, reason) == (
                "False" if kind == "Ready" else "True",
                "CredentialsKeyMissing",
            )
        assert f"fingerprint {fingerprint}" in message
        assert "Put that key back into the Secret" in message
        assert key not in message
        assert [w for w in server.writes if w[1] != "AlgoEdgeTenant/status"] == []
        internal = server.find("Secret", "acme-internal")
        assert internal is not None
        assert "ALGOEDGE_CREDENTIALS_KEY" not in internal["data"]
        assert second.status["credentialsKeyFingerprint"] == fingerprint
        assert [e["reason"] for e in server.events] == ["CredentialsKeyMissing"]
        third = run(server, tenant(), previous=second)
        assert len(server.events) == 1, "announced once"
        # Restored: the operator carries on with it.
        server.objects[self.INTERNAL]["data"]["ALGOEDGE_CREDENTIALS_KEY"] = base64.b64encode(
            key.encode()
        ).decode()
        fourth = run(server, tenant(), previous=third)
        assert condition(fourth, "Ready")[:2] == ("True", "AllComponentsReady")
        assert self.stored_key(server) == key
        assert fourth.status["credentialsKeyFingerprint"] == fingerprint

    def test_should_record_a_new_key_once_the_fingerprint_is_cleared(
        self, server: FakeApiServer
    ) -> None:
        """The documented way to start over with a new key: remove the status field."""
        first = run(server, tenant())
        del server.objects[self.INTERNAL]["data"]["ALGOEDGE_CREDENTIALS_KEY"]
        cleared = {k: v for k, v in first.status.items() if k != "credentialsKeyFingerprint"}
        second = reconciler(server).reconcile(
            tenant(), targets=TARGETS, scaling=ScalingState(), previous_status=cleared
        )
        assert condition(second, "Ready")[:2] == ("True", "AllComponentsReady")
        key = self.stored_key(server)
        assert (
            second.status["credentialsKeyFingerprint"]
            == (hashlib.sha256(key.encode()).hexdigest()[:16])
        )


class TestPgBouncerValues:
    @pytest.mark.parametrize(
        ("url", "part"),
        [
            ("postgresql://acme:pw@db.example.com/acme%0Aauth_type%20%3D%20trust", "database"),
            ("postgresql://acme:pw%0A%22root%22%20%22x%22@db.example.com/acme", "password"),
        ],
    )
    def test_should_write_no_pgbouncer_config_a_database_url_could_inject_into(
        self, server: FakeApiServer, url: str, part: str
    ) -> None:
        server.secret(NAMESPACE, "acme-db", url=url)
        result = run(server, tenant())
        status, reason, message = condition(result, "Ready")
        assert (status, reason) == ("False", "SecretInvalid")
        assert message.startswith("Secret trading/acme-db key 'url': the database URL ")
        assert part in message
        assert "trust" not in message
        assert "root" not in message
        assert [w for w in server.writes if w[1] != "AlgoEdgeTenant/status"] == []


class TestMetaApiToken:
    def test_should_run_no_bridge_pods_without_a_token_and_say_why_once(
        self, server: FakeApiServer
    ) -> None:
        aet = tenant(base=without_metaapi_token())
        first = run(server, aet, targets=ScaleTargets(workers=2, bridge=3))
        bridge = server.find("StatefulSet", "acme-bridge")
        assert bridge is not None
        assert bridge["spec"]["replicas"] == 0
        assert first.live_targets == ScaleTargets(workers=2, bridge=0)
        assert condition(first, "Ready")[:2] == ("True", "AllComponentsReady")
        status, reason, message = condition(first, "Degraded")
        assert (status, reason) == ("True", "MetaApiTokenNotSet")
        assert message.startswith("spec.bridge.metaapi.tokenSecretRef is not set")
        assert first.status["components"]["bridge"] == {"replicas": 0, "readyReplicas": 0}
        assert [(e["type"], e["reason"]) for e in server.events] == [
            ("Warning", "MetaApiTokenNotSet")
        ]
        assert first.outcome == "ready"
        run(server, aet, previous=first, targets=None)
        assert len(server.events) == 1, "announced once, not at every resync"

    def test_should_start_the_bridge_once_a_token_is_referenced(
        self, server: FakeApiServer
    ) -> None:
        first = run(server, tenant(base=without_metaapi_token()), targets=None)
        second = run(server, tenant(), previous=first, targets=None)
        bridge = server.find("StatefulSet", "acme-bridge")
        assert bridge is not None
        assert bridge["spec"]["replicas"] == 1, "bridge.minReplicas"
        assert condition(second, "Degraded")[:2] == ("False", "AsExpected")

    def test_should_write_nothing_while_the_token_secret_is_missing(
        self, server: FakeApiServer
    ) -> None:
        del server.objects[ObjectRef("v1", "Secret", NAMESPACE, "acme-metaapi")]
        result = run(server, tenant())
        status, reason, message = condition(result, "Ready")
        assert (status, reason) == ("False", "SecretMissing")
        assert "trading/acme-metaapi (spec.bridge.metaapi.tokenSecretRef)" in message
        assert [w for w in server.writes if w[1] != "AlgoEdgeTenant/status"] == []

    def test_should_roll_only_the_bridge_when_the_token_rotates(
        self, server: FakeApiServer
    ) -> None:
        first = run(server, tenant())

        def template_checksums() -> dict[str, str]:
            sts = server.find("StatefulSet", "acme-bridge")
            assert sts is not None
            return {
                "bridge": sts["spec"]["template"]["metadata"]["annotations"][CHECKSUM_ANNOTATION],
                "api": checksum(server, "acme-api"),
                "worker": checksum(server, "acme-worker"),
            }

        before = template_checksums()
        server.secret(NAMESPACE, "acme-metaapi", token=METAAPI_TOKEN.replace("c2ln", "C2ln"))
        run(server, tenant(), previous=first)
        after = template_checksums()
        assert after["bridge"] != before["bridge"]
        assert (after["api"], after["worker"]) == (before["api"], before["worker"])


READ_REPLICAS = {"secretRef": {"name": "acme-db-replicas"}}


class TestReadReplicas:
    def test_should_send_the_app_to_pgbouncers_replica_alias(self, server: FakeApiServer) -> None:
        server.secret(NAMESPACE, "acme-db-replicas", url=DB_URL.replace("db.", "replicas."))
        result = run(server, tenant(database={"readReplicas": READ_REPLICAS}))
        assert condition(result, "Ready")[:2] == ("True", "AllComponentsReady")
        config = server.find("ConfigMap", "acme-pgbouncer")
        assert config is not None
        assert (
            "acme_ro = host='replicas.example.com' port=5432 dbname='acme'"
            in (config["data"]["pgbouncer.ini"])
        )
        secret = server.find("Secret", "acme-pgbouncer")
        assert secret is not None
        assert base64.b64decode(secret["data"]["database-read-url"]).decode() == (
            "postgresql://acme:pw@acme-pgbouncer.trading.svc:6432/acme_ro"
        )

    def test_should_write_nothing_while_the_replicas_secret_is_missing(
        self, server: FakeApiServer
    ) -> None:
        first = run(server, tenant(database={"readReplicas": READ_REPLICAS}))
        status, reason, message = condition(first, "Ready")
        assert (status, reason) == ("False", "SecretMissing")
        assert "trading/acme-db-replicas (spec.database.readReplicas.secretRef)" in message
        assert [w for w in server.writes if w[1] != "AlgoEdgeTenant/status"] == []
        server.secret(NAMESPACE, "acme-db-replicas", url=DB_URL.replace("db.", "replicas."))
        second = run(server, tenant(database={"readReplicas": READ_REPLICAS}), previous=first)
        assert condition(second, "Ready")[:2] == ("True", "AllComponentsReady")

    @pytest.mark.parametrize(
        ("url", "reason"),
        [
            ("mysql://acme:pw@replicas.example.com/acme", "must start with postgresql://"),
            ("postgresql://replicas.example.com:5432/acme", "needs a user and a password"),
            (
                "postgresql://acme:other@replicas.example.com:5432/acme",
                "has the primary's user with",
            ),
            (
                "postgresql://acme:pw@replicas.example.com:5432/acme?sslmode=require",
                "has sslmode require where the primary's URL has prefer",
            ),
        ],
    )
    def test_should_refuse_a_replica_url_pgbouncer_cannot_serve(
        self, server: FakeApiServer, url: str, reason: str
    ) -> None:
        server.secret(NAMESPACE, "acme-db-replicas", url=url)
        result = run(server, tenant(database={"readReplicas": READ_REPLICAS}))
        status, found, message = condition(result, "Ready")
        assert (status, found) == ("False", "SecretInvalid")
        assert f"the read replica URL {reason}" in message
        assert "trading/acme-db-replicas key 'url'" in message
        assert ":other@" not in message
        assert [w for w in server.writes if w[1] != "AlgoEdgeTenant/status"] == []

    def test_should_roll_pgbouncer_alone_when_the_replicas_move(
        self, server: FakeApiServer
    ) -> None:
        aet = tenant(database={"readReplicas": READ_REPLICAS})
        server.secret(NAMESPACE, "acme-db-replicas", url=DB_URL.replace("db.", "replicas."))
        first = run(server, aet)
        before = {n: checksum(server, n) for n in ("acme-pgbouncer", "acme-api", "acme-worker")}
        server.secret(NAMESPACE, "acme-db-replicas", url=DB_URL.replace("db.", "replicas-2."))
        run(server, aet, previous=first)
        after = {n: checksum(server, n) for n in ("acme-pgbouncer", "acme-api", "acme-worker")}
        assert after["acme-pgbouncer"] != before["acme-pgbouncer"]
        # What api and worker pods read (pgBouncer's alias) did not change.
        assert (after["acme-api"], after["acme-worker"]) == (
            before["acme-api"],
            before["acme-worker"],
        )


class TestMonitoring:
    def test_should_create_monitors_where_the_crds_are_served(self, server: FakeApiServer) -> None:
        server.served[MONITORING] = {"PodMonitor", "PrometheusRule"}
        result = run(server, tenant(**MONITORED))
        monitors = {ref.name for ref in server.objects if ref.kind == "PodMonitor"}
        assert monitors == {
            f"acme-{c}" for c in ("api", "worker", "beat", "bridge", "pgbouncer", "redis")
        }
        rule = server.find("PrometheusRule", "acme-alerts")
        assert rule is not None
        assert rule["metadata"]["labels"]["release"] == "kps"
        assert condition(result, "MonitoringReady")[:2] == ("True", "MonitorsCreated")
        assert condition(result, "Ready")[:2] == ("True", "AllComponentsReady")

    def test_should_report_missing_crds_and_still_deploy_the_rest(
        self, server: FakeApiServer
    ) -> None:
        result = run(server, tenant(**MONITORED))
        assert not [ref for ref in server.objects if ref.api_version == MONITORING]
        status, reason, message = condition(result, "MonitoringReady")
        assert (status, reason) == ("False", "MonitoringCRDsMissing")
        assert "PodMonitor, PrometheusRule" in message
        assert "install the Prometheus Operator's CRDs" in message
        assert condition(result, "Ready")[:2] == ("True", "AllComponentsReady")
        assert condition(result, "Degraded")[:2] == ("False", "AsExpected")
        assert ("apply", "PodMonitor", "acme-api") not in server.writes

    def test_should_touch_no_monitor_when_discovery_fails(self, server: FakeApiServer) -> None:
        server.discovery_error = KubeError("GET /apis/monitoring.coreos.com/v1: 503", status=503)
        result = run(server, tenant(**MONITORED))
        assert condition(result, "MonitoringReady")[:2] == ("False", "MonitoringDiscoveryFailed")
        assert condition(result, "Ready")[0] == "True"

    def test_should_prune_the_monitors_when_monitoring_is_turned_off(
        self, server: FakeApiServer
    ) -> None:
        server.served[MONITORING] = {"PodMonitor", "PrometheusRule"}
        first = run(server, tenant(**MONITORED))
        assert server.find("PrometheusRule", "acme-alerts") is not None
        second = run(server, tenant(), previous=first)
        assert not [ref for ref in server.objects if ref.api_version == MONITORING]
        assert condition(second, "MonitoringReady")[:2] == ("False", "MonitoringDisabled")

    def test_should_not_claim_monitors_a_paused_tenant_did_not_write(
        self, server: FakeApiServer
    ) -> None:
        server.served[MONITORING] = {"PodMonitor", "PrometheusRule"}
        result = run(server, tenant(paused=True, **MONITORED))
        status, reason, message = condition(result, "MonitoringReady")
        assert (status, reason) == ("False", "MonitorsNotCreated")
        assert "PrometheusRule acme-alerts" in message
        assert server.find("PrometheusRule", "acme-alerts") is None

    def test_should_remember_discovery_for_its_ttl_only(self, server: FakeApiServer) -> None:
        now = [100.0]
        served = ServedKinds(server, ttl=15, clock=lambda: now[0])
        server.served[MONITORING] = {"PodMonitor"}
        assert served(MONITORING) == {"PodMonitor"}
        server.served[MONITORING] = {"PodMonitor", "PrometheusRule"}
        now[0] += 14.9
        assert served(MONITORING) == {"PodMonitor"}  # remembered
        now[0] += 0.2
        assert served(MONITORING) == {"PodMonitor", "PrometheusRule"}  # asked again
        assert server.discoveries == 2

    def test_should_run_the_exporters_with_a_generated_stats_password_kept(
        self, server: FakeApiServer
    ) -> None:
        first = run(server, tenant(**MONITORED))
        pgbouncer = server.find("Deployment", "acme-pgbouncer")
        assert pgbouncer is not None
        names = [c["name"] for c in pgbouncer["spec"]["template"]["spec"]["containers"]]
        assert names == ["pgbouncer", "exporter"]
        secret = server.find("Secret", "acme-pgbouncer")
        assert secret is not None
        password = base64.b64decode(secret["data"]["stats-password"]).decode()
        assert password == "generated-stats-password-".ljust(48, "x")
        userlist = base64.b64decode(secret["data"]["userlist.txt"]).decode()
        assert f'"algoedge_pgbouncer_stats" "{password}"' in userlist
        server.writes.clear()
        run(server, tenant(**MONITORED), previous=first)
        assert server.writes == []  # read back, not generated again

    def test_should_leave_out_an_exporter_the_allowlist_refuses(
        self, server: FakeApiServer
    ) -> None:
        settings = OperatorSettings(
            image_allowlist=("registry.example.com/", "quay.io/prometheuscommunity/")
        )
        result = TenantReconciler(server, settings).reconcile(
            tenant(**MONITORED), targets=TARGETS, scaling=ScalingState(), previous_status={}
        )
        redis = server.find("StatefulSet", "acme-redis")
        assert redis is not None
        assert [c["name"] for c in redis["spec"]["template"]["spec"]["containers"]] == ["redis"]
        status, reason, message = condition(result, "MonitoringReady")
        # Missing CRDs come first; with them served the refused image is named.
        assert reason == "MonitoringCRDsMissing"
        server.served[MONITORING] = {"PodMonitor", "PrometheusRule"}
        result = TenantReconciler(server, settings).reconcile(
            tenant(**MONITORED), targets=TARGETS, scaling=ScalingState(), previous_status={}
        )
        status, reason, message = condition(result, "MonitoringReady")
        assert (status, reason) == ("False", "ExporterImageNotAllowed")
        assert (
            "ALGOEDGE_OPERATOR_REDIS_EXPORTER_IMAGE docker.io/oliver006/redis_exporter" in message
        )


class TestCapacityAndCost:
    def test_should_report_users_the_ready_api_pods_serve(self, server: FakeApiServer) -> None:
        result = run(server, tenant())
        # The fake API server reports every workload ready at its replicas (api: 1).
        assert result.status["capacity"] == {"usersPerApiPod": 500, "readyApiPods": 1, "users": 500}
        assert condition(result, "CapacityLow")[:2] == ("False", "SocketsUnknown")

    def test_should_warn_once_when_sockets_pass_80_percent(self, server: FakeApiServer) -> None:
        the_reconciler = reconciler(server)
        busy = ScalingState(connected_sockets=401, linked_accounts=3)
        first = the_reconciler.reconcile(
            tenant(), targets=TARGETS, scaling=busy, previous_status={}
        )
        assert first.status["capacity"]["utilizationPercent"] == 81
        status, reason, message = condition(first, "CapacityLow")
        assert (status, reason) == ("True", "AboveThreshold")
        assert "401 sockets connected against 500 users" in message
        second = the_reconciler.reconcile(
            tenant(), targets=TARGETS, scaling=busy, previous_status=first.status
        )
        assert condition(second, "CapacityLow")[0] == "True"
        assert [e["reason"] for e in server.events].count("CapacityLow") == 1
        assert [e["type"] for e in server.events if e["reason"] == "CapacityLow"] == ["Warning"]

    def test_should_price_the_requests_and_linked_accounts(self, server: FakeApiServer) -> None:
        result = the_cost(server, linked_accounts=0)
        with_accounts = the_cost(server, linked_accounts=10)
        assert with_accounts["metaapi"] == {"linkedAccounts": 10, "monthly": "150.00"}
        assert float(with_accounts["monthlyTotal"]) == pytest.approx(
            float(result["monthlyTotal"]) + 150.0
        )
        assert {row["component"] for row in result["workloads"]} == {
            "api", "worker", "beat", "pgbouncer", "redis", "bridge",
        }  # fmt: skip


def the_cost(server: FakeApiServer, *, linked_accounts: int) -> dict[str, Any]:
    result = reconciler(server).reconcile(
        tenant(),
        targets=TARGETS,
        scaling=ScalingState(linked_accounts=linked_accounts),
        previous_status={},
    )
    return dict(result.status["cost"])


class TestTenantMetrics:
    def test_should_export_capacity_and_cost_per_tenant(self, server: FakeApiServer) -> None:
        result = the_cost(server, linked_accounts=2)
        labels = {"tenant_namespace": NAMESPACE, "tenant": "acme"}
        assert counter("algoedge_operator_tenant_capacity_users", **labels) == 500.0
        assert counter(
            "algoedge_operator_tenant_monthly_cost", **labels, currency="USD"
        ) == pytest.approx(float(result["monthlyTotal"]))

    def test_should_forget_a_deleted_tenant(self, server: FakeApiServer) -> None:
        the_cost(server, linked_accounts=0)
        metrics.forget_tenant(NAMESPACE, "acme")
        labels = {"tenant_namespace": NAMESPACE, "tenant": "acme"}
        assert REGISTRY.get_sample_value("algoedge_operator_tenant_capacity_users", labels) is None
        cost = {**labels, "currency": "USD"}
        assert REGISTRY.get_sample_value("algoedge_operator_tenant_monthly_cost", cost) is None
