"""The informers' store (newest state wins, relists drop what vanished, owners are reported) and
the child cache that wraps the transport with it."""

from __future__ import annotations

from typing import Any

from algoedge_operator.informer import ChildCache, ChildStore, owner_of
from algoedge_operator.kube import ObjectRef

from tests.unit.operator.fake_api import FakeApiServer


def obj(name: str, version: int, *, tenant: str = "acme", kind: str = "ConfigMap") -> Any:
    return {
        "apiVersion": "v1",
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": "trading",
            "resourceVersion": str(version),
            "labels": {"app.kubernetes.io/instance": tenant},
        },
    }


class TestChildStore:
    def test_should_not_answer_for_a_kind_before_it_is_listed(self) -> None:
        store = ChildStore()
        assert not store.synced("v1", "ConfigMap")
        store.replace("v1", "ConfigMap", [])
        assert store.synced("v1", "ConfigMap")
        assert not store.synced("v1", "Secret")

    def test_should_keep_the_newest_state(self) -> None:
        store = ChildStore()
        assert store.put(obj("acme-config", 10))
        assert not store.put(obj("acme-config", 9))  # a watch event older than our apply
        assert not store.put(obj("acme-config", 10))  # the same state again
        assert store.put(obj("acme-config", 11))
        found = store.get("v1", "ConfigMap", "trading", "acme-config")
        assert found is not None
        assert found["metadata"]["resourceVersion"] == "11"

    def test_should_not_keep_managed_fields(self) -> None:
        store = ChildStore()
        with_fields = obj("acme-config", 1)
        with_fields["metadata"]["managedFields"] = [{"manager": "algoedge-operator"}]
        store.put(with_fields)
        store.replace("v1", "Secret", [{**obj("acme-internal", 2, kind="Secret")}])
        found = store.get("v1", "ConfigMap", "trading", "acme-config")
        assert found is not None
        assert "managedFields" not in found["metadata"]
        assert with_fields["metadata"]["managedFields"]  # the caller's object is untouched

    def test_should_forget_a_deleted_object_unless_it_was_recreated_since(self) -> None:
        store = ChildStore()
        store.put(obj("acme-config", 20))
        assert not store.remove(obj("acme-config", 15))  # deletion of an older incarnation
        assert store.get("v1", "ConfigMap", "trading", "acme-config") is not None
        assert store.remove(obj("acme-config", 21))
        assert store.get("v1", "ConfigMap", "trading", "acme-config") is None
        assert not store.remove(obj("acme-config", 22))

    def test_should_drop_on_relist_what_vanished_while_unwatched(self) -> None:
        store = ChildStore()
        store.replace(
            "v1", "ConfigMap", [obj("acme-config", 1), obj("other-config", 2, tenant="other")]
        )
        store.put(obj("acme-secret", 3, kind="Secret"))
        changed = store.replace(
            "v1", "ConfigMap", [obj("acme-config", 1), obj("new-config", 4, tenant="new")]
        )
        assert changed == {("trading", "other"), ("trading", "new")}
        assert store.get("v1", "ConfigMap", "trading", "other-config") is None
        assert store.get("v1", "Secret", "trading", "acme-secret") is not None  # other kinds stay
        assert len(store) == 3

    def test_should_report_the_owner_of_a_changed_object_on_relist(self) -> None:
        store = ChildStore()
        store.replace("v1", "ConfigMap", [obj("acme-config", 1)])
        assert store.replace("v1", "ConfigMap", [obj("acme-config", 5)]) == {("trading", "acme")}
        assert store.replace("v1", "ConfigMap", [obj("acme-config", 5)]) == set()

    def test_should_apply_watch_events_by_type(self) -> None:
        store = ChildStore()
        assert store.apply_event("ADDED", obj("acme-config", 1))
        assert store.apply_event("MODIFIED", obj("acme-config", 2))
        assert not store.apply_event("BOOKMARK", obj("acme-config", 3))
        assert store.apply_event("DELETED", obj("acme-config", 4))
        assert len(store) == 0


def test_should_find_the_owner_from_the_instance_label() -> None:
    assert owner_of(obj("acme-config", 1)) == ("trading", "acme")
    assert owner_of({"metadata": {"name": "x", "namespace": "trading"}}) is None


CONFIG = ObjectRef("v1", "ConfigMap", "trading", "acme-config")


class TestChildCache:
    def cached(self) -> tuple[FakeApiServer, ChildStore, ChildCache]:
        server, store = FakeApiServer(), ChildStore()
        return server, store, ChildCache(server, store)

    def test_should_read_through_the_api_until_the_kind_is_listed(self) -> None:
        server, store, cache = self.cached()
        server.put(obj("acme-config", 1))
        assert cache.get(CONFIG) is not None
        store.replace("v1", "ConfigMap", [])
        assert cache.get(CONFIG) is None, "from memory"

    def test_should_confirm_a_miss_with_the_api_when_asked(self) -> None:
        server, store, cache = self.cached()
        store.replace("v1", "Secret", [])
        server.put(obj("acme-internal", 1, kind="Secret"))  # made without the label
        found = cache.get(
            ObjectRef("v1", "Secret", "trading", "acme-internal"), verify_absence=True
        )
        assert found is not None

    def test_should_keep_its_own_writes(self) -> None:
        _, store, cache = self.cached()
        store.replace("v1", "ConfigMap", [])
        cache.apply(obj("acme-config", 1))
        assert cache.get(CONFIG) is not None
        cache.delete(CONFIG)
        assert cache.get(CONFIG) is None

    def test_should_keep_an_object_whose_deletion_waits(self) -> None:
        server, store, cache = self.cached()
        store.replace("apps/v1", "StatefulSet", [])
        sts = {**obj("acme-redis", 1, kind="StatefulSet"), "apiVersion": "apps/v1", "spec": {}}
        cache.apply(sts)
        redis = ObjectRef("apps/v1", "StatefulSet", "trading", "acme-redis")
        cache.delete(redis, propagation="Orphan")
        held = cache.get(redis)
        assert held is not None
        assert held["metadata"]["deletionTimestamp"]
        assert server.writes[-1] == ("delete/Orphan", "StatefulSet", "acme-redis")

    def test_should_work_without_a_store(self) -> None:
        server = FakeApiServer()
        cache = ChildCache(server)
        cache.apply(obj("acme-config", 1))
        assert cache.get(CONFIG) is not None


class TestNamespacedStore:
    """With watched namespaces each informer lists one kind in one namespace."""

    def test_should_answer_only_for_a_listed_namespace(self) -> None:
        store = ChildStore()
        store.replace("v1", "ConfigMap", [], namespace="trading")
        assert store.synced("v1", "ConfigMap", "trading")
        assert not store.synced("v1", "ConfigMap", "other")
        assert not store.synced("v1", "ConfigMap")

    def test_should_replace_one_namespace_without_dropping_another(self) -> None:
        store = ChildStore()
        elsewhere = obj("acme-config", 3)
        elsewhere["metadata"]["namespace"] = "other"
        store.replace("v1", "ConfigMap", [elsewhere], namespace="other")
        store.replace("v1", "ConfigMap", [obj("acme-config", 4)], namespace="trading")
        store.replace("v1", "ConfigMap", [], namespace="trading")  # deleted while unwatched
        assert store.get("v1", "ConfigMap", "trading", "acme-config") is None
        assert store.get("v1", "ConfigMap", "other", "acme-config") is not None
