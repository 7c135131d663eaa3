"""Provisioned MetaTrader accounts: the request model MetaAPI validates, and the record it returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from algoedge.metaapi_sim.broker import BrokerAccount

REGIONS = ("vint-hill", "new-york", "london", "singapore")
State = Literal[
    "CREATED", "DEPLOYING", "DEPLOYED", "DEPLOY_FAILED", "UNDEPLOYING", "UNDEPLOYED", "DELETING"
]
ConnectionStatus = Literal["CONNECTED", "DISCONNECTED", "DISCONNECTED_FROM_BROKER"]


class NewAccount(BaseModel):
    """The body of POST /users/current/accounts (the fields the simulator uses; others are kept)."""

    model_config = ConfigDict(extra="allow", strict=True)

    name: str = Field(min_length=1, max_length=255)
    login: str = Field(pattern=r"^[0-9]{1,20}$")
    password: str = Field(min_length=1, max_length=255)
    server: str = Field(min_length=1, max_length=255)
    platform: Literal["mt4", "mt5"] = "mt5"
    type: Literal["cloud-g1", "cloud-g2"] = "cloud-g2"
    magic: int = Field(default=0, ge=0)
    region: Literal["vint-hill", "new-york", "london", "singapore"] = "vint-hill"
    reliability: Literal["regular", "high"] = "regular"
    application: str = "MetaApi"
    baseCurrency: str = "USD"  # MetaAPI's field names
    quoteStreamingIntervalInSeconds: float = Field(default=2.5, ge=0)
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    """Pydantic's errors as MetaAPI's ValidationError details (parameter, value, message)."""
    details = []
    for e in exc.errors():
        parameter = ".".join(str(part) for part in e["loc"]) or "body"
        # Never echo a password back, nor whole objects.
        shown = (
            e.get("input")
            if parameter != "password" and not isinstance(e.get("input"), dict)
            else None
        )
        details.append({"parameter": parameter, "value": shown, "message": e["msg"]})
    return details


@dataclass(slots=True)
class ProvisionedAccount:
    """An account as the provisioning API knows it, with its broker state."""

    id: str
    spec: NewAccount
    broker: BrokerAccount
    state: State = "CREATED"
    connection_status: ConnectionStatus = "DISCONNECTED"

    def to_json(self) -> dict[str, Any]:
        extra = {k: v for k, v in (self.spec.model_extra or {}).items() if k != "password"}
        return {
            **extra,
            "_id": self.id,
            "name": self.spec.name,
            "login": self.spec.login,
            "server": self.spec.server,
            "platform": self.spec.platform,
            "type": self.spec.type,
            "magic": self.spec.magic,
            "region": self.spec.region,
            "reliability": self.spec.reliability,
            "application": self.spec.application,
            "baseCurrency": self.spec.baseCurrency,
            "quoteStreamingIntervalInSeconds": self.spec.quoteStreamingIntervalInSeconds,
            "tags": self.spec.tags,
            "metadata": self.spec.metadata,
            "resourceSlots": 1,
            "copyFactoryResourceSlots": 1,
            "state": self.state,
            "connectionStatus": self.connection_status,
            "accountReplicas": [],
            "userId": "simulated-user",
        }

    @property
    def replicas(self) -> int:
        """Server instances hosting the account: two for reliability "high", else one (instance 0)."""
        return 2 if self.spec.reliability == "high" else 1

    @property
    def streamable(self) -> bool:
        """Whether a subscription can authenticate: deployed and connected to the broker."""
        return self.state == "DEPLOYED" and self.connection_status == "CONNECTED"
