"""The simulator's settings, /healthz and provisioning REST API answer as MetaAPI does, bad input included."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from algoedge.config import ConfigError
from algoedge.metaapi_sim.settings import load_sim_settings

from tests.bridge.conftest import NEW_ACCOUNT, TOKEN, RunningSim, eventually, fetch

SIM = str(Path(sys.executable).with_name("algoedge-metaapi-sim"))


def _clean_env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("ALGOEDGE_")}, **extra}


class TestSettings:
    def test_should_name_every_bad_variable_and_its_form(self) -> None:
        with pytest.raises(ConfigError) as caught:
            load_sim_settings(
                {
                    "ALGOEDGE_SIM_TOKEN": "not-a-jwt",
                    "ALGOEDGE_SIM_PORT": "80x",
                    "ALGOEDGE_SIM_TICKS": "1",
                }
            )
        message = str(caught.value)
        assert "ALGOEDGE_SIM_TOKEN is not 3 dot-separated parts" in message
        assert "ALGOEDGE_SIM_PORT is invalid" in message
        assert "a port number from 0 to 65535" in message
        assert "ALGOEDGE_SIM_TICKS is not a simulator setting" in message
        assert "not-a-jwt" not in message

    def test_should_require_the_token(self) -> None:
        with pytest.raises(ConfigError, match="ALGOEDGE_SIM_TOKEN is not set"):
            load_sim_settings({})

    def test_should_exit_2_on_a_configuration_error(self) -> None:
        shown = subprocess.run(
            [SIM],
            env=_clean_env(ALGOEDGE_SIM_TOKEN=TOKEN, ALGOEDGE_SIM_TICK_SECONDS="0"),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert shown.returncode == 2
        assert "ALGOEDGE_SIM_TICK_SECONDS" in shown.stderr
        assert "Traceback" not in shown.stderr

    async def test_should_print_its_address_and_answer_healthz(self) -> None:
        process = await asyncio.create_subprocess_exec(
            SIM,
            env=_clean_env(ALGOEDGE_SIM_TOKEN=TOKEN, ALGOEDGE_SIM_PORT="0"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert process.stdout is not None
            line = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
            assert line.startswith("algoedge-metaapi-sim: serving http://127.0.0.1:")
            url = line.rsplit(" ", 1)[1].strip()
            health = await fetch("GET", f"{url}/healthz")
            assert health.status_code == 200
            assert health.json()["status"] == "ok"
        finally:
            process.terminate()
            _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
        assert process.returncode == 0
        assert b"Traceback" not in stderr


class TestProvisioning:
    async def test_should_refuse_a_missing_or_wrong_auth_token(self, simulator: RunningSim) -> None:
        for token in ("", "wrong.token.value"):
            answer = await simulator.rest("GET", "/users/current/accounts", token=token)
            assert answer.status_code == 401
            assert answer.json()["error"] == "UnauthorizedError"

    async def test_should_move_an_account_through_deploy_undeploy_and_delete(
        self, simulator: RunningSim
    ) -> None:
        created = await simulator.rest("POST", "/users/current/accounts", NEW_ACCOUNT)
        assert created.status_code == 201
        account_id = created.json()["id"]
        assert created.json()["state"] == "CREATED"

        async def state() -> tuple[str, str]:
            body = (await simulator.rest("GET", f"/users/current/accounts/{account_id}")).json()
            assert body["_id"] == account_id
            assert "password" not in body
            return body["state"], body["connectionStatus"]

        assert (
            await simulator.rest("POST", f"/users/current/accounts/{account_id}/deploy")
        ).status_code == 204
        assert await state() == ("DEPLOYING", "DISCONNECTED")
        seen: list[tuple[str, str]] = []
        while (current := await state()) != ("DEPLOYED", "CONNECTED"):
            seen.append(current)
            await asyncio.sleep(0.05)
        assert ("DEPLOYED", "DISCONNECTED") in seen
        listed = (await simulator.rest("GET", "/users/current/accounts?state=DEPLOYED")).json()
        assert [a["_id"] for a in listed] == [account_id]

        assert (
            await simulator.rest("POST", f"/users/current/accounts/{account_id}/undeploy")
        ).status_code == 204
        assert await state() == ("UNDEPLOYING", "DISCONNECTED")
        assert (
            await simulator.rest("DELETE", f"/users/current/accounts/{account_id}")
        ).status_code == 204
        await eventually(
            lambda: account_id not in simulator.sim.provisioning.accounts,
            within=5,
            what="the delete",
        )
        gone = await simulator.rest("GET", f"/users/current/accounts/{account_id}")
        assert gone.status_code == 404
        assert gone.json()["error"] == "NotFoundError"

    async def test_should_return_the_same_account_for_a_repeated_transaction_id(
        self, simulator: RunningSim
    ) -> None:
        url = f"{simulator.url}/users/current/accounts"
        headers = {"auth-token": TOKEN, "transaction-id": "t" * 32}
        first = await fetch("POST", url, body=NEW_ACCOUNT, headers=headers)
        again = await fetch("POST", url, body=NEW_ACCOUNT, headers=headers)
        assert first.json()["id"] == again.json()["id"]
        assert len(simulator.sim.provisioning.accounts) == 1

    @pytest.mark.parametrize(
        ("body", "parameter"),
        [
            ({**NEW_ACCOUNT, "login": "not-a-number"}, "login"),
            ({k: v for k, v in NEW_ACCOUNT.items() if k != "server"}, "server"),
            ({**NEW_ACCOUNT, "platform": "mt6"}, "platform"),
            ({**NEW_ACCOUNT, "region": "mars"}, "region"),
            ({**NEW_ACCOUNT, "magic": -1}, "magic"),
            ([1, 2, 3], "body"),
        ],
    )
    async def test_should_answer_bad_input_with_a_validation_error(
        self, simulator: RunningSim, body: Any, parameter: str
    ) -> None:
        answer = await simulator.rest("POST", "/users/current/accounts", body)
        assert answer.status_code == 400
        error = answer.json()
        assert error["error"] == "ValidationError"
        assert parameter in [d["parameter"] for d in error["details"]]
        assert simulator.sim.provisioning.accounts == {}

    async def test_should_answer_a_body_that_is_not_json(self, simulator: RunningSim) -> None:
        answer = await fetch(
            "POST",
            f"{simulator.url}/users/current/accounts",
            data=b"{not json",
            headers={"auth-token": TOKEN, "content-type": "application/json"},
        )
        assert answer.status_code == 400
        assert answer.json()["error"] == "ValidationError"

    async def test_should_answer_unknown_paths_and_methods_metaapi_shaped(
        self, simulator: RunningSim
    ) -> None:
        missing = await simulator.rest("GET", "/users/current/nothing-here")
        assert (missing.status_code, missing.json()["error"]) == (404, "NotFoundError")
        wrong_method = await simulator.rest("PATCH", "/users/current/accounts")
        assert wrong_method.status_code == 405
        assert set(wrong_method.json()) >= {"error", "message"}


async def test_should_surface_validation_errors_as_the_sdks_exception(sdk_factory: Any) -> None:
    from metaapi_cloud_sdk.clients.error_handler import ValidationException

    api = sdk_factory()
    with pytest.raises(ValidationException) as caught:
        await api.metatrader_account_api.create_account({**NEW_ACCOUNT, "login": "abc"})
    assert [d["parameter"] for d in caught.value.details] == ["login"]
