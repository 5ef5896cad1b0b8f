"""Headless Chromium driven over the DevTools protocol (one WebSocket; aiohttp comes with MLflow), for the
tests that look at a page as a person would: open a URL in a fresh profile, read or click with JavaScript."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp


class Chromium:
    """`with Chromium(binary, profile) as browser: browser.open(url); browser.evaluate(js)`. The profile folder
    must be new: the MLflow UI, for one, remembers views in it."""

    def __init__(self, binary: str, profile: Path, width: int = 1600, height: int = 1200):
        self.command = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            "about:blank",
        ]
        self.profile = profile
        self._loop = asyncio.new_event_loop()
        self._ids = itertools.count(1)

    def __enter__(self) -> Chromium:
        self._process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self._process.poll() is not None:
                raise RuntimeError("Chromium did not open its DevTools port")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        self._loop.run_until_complete(self._connect(f"http://127.0.0.1:{port}/json"))
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._loop.run_until_complete(self._session.close())
        self._loop.close()
        self._process.kill()
        self._process.wait(timeout=30)

    async def _connect(self, listing: str) -> None:
        self._session = aiohttp.ClientSession()
        async with self._session.get(listing) as response:
            pages = [target for target in await response.json() if target["type"] == "page"]
        self._socket = await self._session.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)

    def _call(self, method: str, **params: Any) -> dict:
        async def call() -> dict:
            call_id = next(self._ids)
            await self._socket.send_json({"id": call_id, "method": method, "params": params})
            while True:  # events arrive between the answers; skip them
                message = json.loads((await self._socket.receive()).data)
                if message.get("id") == call_id:
                    return message

        return self._loop.run_until_complete(asyncio.wait_for(call(), 60))

    def open(self, url: str) -> None:
        self._call("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-like values only)."""
        answer = self._call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        result = answer["result"]
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def wait_for(self, expression: str, condition, timeout: float, what: str) -> Any:
        """The value of `expression` once `condition(value)` holds, polled; a timeout names `what`."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if condition(value):
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} never showed; last seen: {value!r}"[:3000])
            time.sleep(0.5)
