"""The simulator's settings, loaded from ``ALGOEDGE_SIM_*`` environment variables and validated at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, Field, SecretStr, ValidationError

from algoedge.config import ENV_PREFIX, ConfigError, _Settings

SIM_PREFIX = f"{ENV_PREFIX}SIM_"
# The form of the token, not a secret.
TOKEN_FORM = "3 dot-separated parts, 16+ characters, like a JWT (the SDK checks it)"  # noqa: S105


def _api_token(value: SecretStr) -> SecretStr:
    token = value.get_secret_value()
    # The SDK only allows provisioning calls with a token of three dot-separated parts.
    if len(token) < 16 or len(token.split(".")) != 3 or not all(token.split(".")):
        raise ValueError("is not 3 dot-separated parts of 16+ characters in all")
    return value


class SimSettings(_Settings):
    """What `algoedge-metaapi-sim` needs; every field is ``ALGOEDGE_SIM_<FIELD>``."""

    host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="Address the REST API and socket.io bind; loopback unless a pod serves other pods.",
        json_schema_extra={"form": "an IP address or host name"},
    )
    port: int = Field(
        default=8090,
        ge=0,
        le=65535,
        description="Port of REST, socket.io (/ws/) and the admin endpoint; 0 picks a free port.",
        json_schema_extra={"form": "a port number from 0 to 65535"},
    )
    token: Annotated[SecretStr, AfterValidator(_api_token)] = Field(
        description="The auth-token every client must present (the SDK's MetaApi token).",
        json_schema_extra={"form": TOKEN_FORM},
    )
    admin_token: Annotated[SecretStr, Field(min_length=16)] | None = Field(
        default=None,
        description="Bearer token of /admin/*; unset: the API token is also the admin token.",
        json_schema_extra={"form": "a secret of at least 16 characters"},
    )
    admin_remote: bool = Field(
        default=False,
        description="Serve /admin/* to non-loopback peers too (off: loopback only).",
        json_schema_extra={"form": "true or false"},
    )
    seed: int = Field(
        default=1,
        ge=0,
        le=2**63 - 1,
        description="Seed of the price random walk, account ids and strategy trades: equal seeds, equal runs.",
        json_schema_extra={"form": "an integer from 0 to 2^63-1"},
    )
    latency_ms: int = Field(
        default=0,
        ge=0,
        le=60000,
        description="Delay added before every REST answer and socket reply (more can be injected at run time).",
        json_schema_extra={"form": "milliseconds from 0 to 60000"},
    )
    tick_seconds: float = Field(
        default=1.0,
        ge=0.01,
        le=3600,
        description="Seconds between price ticks of each subscribed symbol.",
        json_schema_extra={"form": "seconds from 0.01 to 3600"},
    )
    deploy_seconds: float = Field(
        default=0.5,
        ge=0,
        le=600,
        description="Seconds an account stays DEPLOYING (and UNDEPLOYING) before DEPLOYED (UNDEPLOYED).",
        json_schema_extra={"form": "seconds from 0 to 600"},
    )
    connect_seconds: float = Field(
        default=0.5,
        ge=0,
        le=600,
        description="Seconds after DEPLOYED until connectionStatus becomes CONNECTED.",
        json_schema_extra={"form": "seconds from 0 to 600"},
    )
    status_seconds: float = Field(
        default=30.0,
        ge=0.1,
        le=60,
        description="Seconds between `status` heartbeats per subscription (the SDK gives up after 60).",
        json_schema_extra={"form": "seconds above 0 and at most 60"},
    )
    strategy_seconds: float = Field(
        default=0.0,
        ge=0,
        le=86400,
        description="Mean seconds between trades the simulated strategy makes on each subscribed account; 0: off.",
        json_schema_extra={"form": "seconds from 0 (off) to 86400"},
    )
    initial_balance: float = Field(
        default=10000.0,
        gt=0,
        le=1e12,
        description="Balance of a newly created account, in its currency (USD).",
        json_schema_extra={"form": "a positive number"},
    )

    def admin_secret(self) -> str:
        """The bearer token /admin/* accepts."""
        return (self.admin_token or self.token).get_secret_value()


def _describe(error: Mapping[str, Any]) -> str:
    field = str((error.get("loc") or ("?",))[0])
    variable = f"{SIM_PREFIX}{field.upper()}"
    extra = (
        SimSettings.model_fields[field].json_schema_extra
        if field in SimSettings.model_fields
        else None
    )
    form = extra.get("form") if isinstance(extra, dict) else "a valid value"
    if error.get("type") == "missing":
        return f"{variable} is not set (expected {form})"
    reason = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
    if not reason.startswith(("must", "is")):
        reason = f"is invalid: {reason.lower()}"
    return f"{variable} {reason} (expected {form})"


def load_sim_settings(environ: Mapping[str, str]) -> SimSettings:
    """Validate the ``ALGOEDGE_SIM_*`` part of ``environ``; raise ConfigError naming every bad variable."""
    known = {f"{SIM_PREFIX}{name.upper()}": name for name in SimSettings.model_fields}
    unknown = sorted(k for k in environ if k.startswith(SIM_PREFIX) and k not in known)
    problems = [
        f"{name} is not a simulator setting (known: {', '.join(sorted(known))})" for name in unknown
    ]
    try:
        settings = SimSettings.model_validate(
            {field: environ[variable] for variable, field in known.items() if variable in environ}
        )
    except ValidationError as exc:
        problems += sorted({_describe(dict(e)) for e in exc.errors()})
    if problems:
        raise ConfigError("; ".join(problems))
    return settings
