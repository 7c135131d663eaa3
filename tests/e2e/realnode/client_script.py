"""Run inside a test pod (the app image): sign up and log in through the tenant's API Service, open
a socket.io connection with the token, link an account and wait for its ``account.linked`` event.
Prints ``EVENT <json>`` on success; any failure exits non-zero with a traceback.

Usage: python client_script.py http://<tenant>-api:8080
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys

import aiohttp
import socketio


async def main(base: str) -> None:
    email = f"{secrets.token_hex(4)}@example.com"
    credentials = {"email": email, "password": "correct horse battery"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        async with http.post(
            f"{base}/api/v1/auth/register", json={**credentials, "name": "Trader"}
        ) as response:
            assert response.status == 202, (response.status, await response.text())
        async with http.post(f"{base}/api/v1/auth/login", json=credentials) as response:
            assert response.status == 200, (response.status, await response.text())
            token = (await response.json())["access_token"]
        linked: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        sio = socketio.AsyncClient(reconnection=False)

        async def on_linked(data: object) -> None:
            if not linked.done():
                linked.set_result(data)

        sio.on("account.linked", on_linked)
        await sio.connect(base, auth={"token": token}, transports=["websocket"], wait_timeout=10)
        try:
            account = {"login": "5001", "server": "Demo-Server", "password": "pw"}
            headers = {"Authorization": f"Bearer {token}"}
            async with http.post(
                f"{base}/api/v1/accounts", json=account, headers=headers
            ) as response:
                assert response.status == 201, (response.status, await response.text())
                account_id = (await response.json())["id"]
            data = await asyncio.wait_for(linked, 30)
            assert isinstance(data, dict), data
            assert data["id"] == account_id, data
            print("EVENT", json.dumps(data), flush=True)
        finally:
            await sio.disconnect()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
