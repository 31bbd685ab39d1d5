"""Local services that the examples call, on 127.0.0.1, one port, one prefix per service.

| prefix | service | module |
| --- | --- | --- |
| ``/shop`` | orders, charges, refunds, stock reservations, carrier quotes | :mod:`.shop` |
| ``/hooks`` | webhook subscriptions and inboxes that verify signatures | :mod:`.hooks` |
| ``/etl`` | a source of raw order rows and a warehouse sink | :mod:`.etl` |
| ``/ledger`` | a ledger that is down until told to recover | :mod:`.ledger` |

``dagflow dev`` serves them on port 8288; tests start them on a free port with
:func:`start`. Everything is kept in memory, so each start begins afresh.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from starter.demo import etl, hooks, ledger, shop
from starter.demo.etl import EtlState
from starter.demo.hooks import HooksState
from starter.demo.ledger import LedgerState
from starter.demo.shop import ShopState

DEFAULT_PORT = 8288
SERVICES = ("shop", "hooks", "etl", "ledger")


@dataclass
class Demo:
    """The running services, their base URLs and their state (for tests to look at)."""

    runner: web.AppRunner
    url: str
    shop: ShopState
    hooks: HooksState
    etl: EtlState
    ledger: LedgerState

    def urls(self) -> dict[str, str]:
        """Each service's base URL under the input name the examples use:
        ``{"shop_url": "http://127.0.0.1:8288/shop", "hooks_url": ..., ...}``."""
        return {f"{name}_url": f"{self.url}/{name}" for name in SERVICES}

    async def stop(self) -> None:
        """Stop serving."""
        await self.runner.cleanup()


def create_app(
    shop_state: ShopState, hooks_state: HooksState, etl_state: EtlState, ledger_state: LedgerState
) -> web.Application:
    """Every service mounted under its prefix in one application, over the given state."""
    app = web.Application()
    app.add_subapp("/shop", shop.create_app(shop_state))
    app.add_subapp("/hooks", hooks.create_app(hooks_state, "/hooks"))
    app.add_subapp("/etl", etl.create_app(etl_state))
    app.add_subapp("/ledger", ledger.create_app(ledger_state))
    return app


async def start(*, webhook_secret: str, host: str = "127.0.0.1", port: int = 0) -> Demo:
    """Serve the services on ``host:port`` (``0``: a free port) until :meth:`Demo.stop`.

    Args:
        webhook_secret: The secret the inboxes verify signatures with: the one the worker
            signs with (the secret named ``webhook``).
        host: The interface to listen on.
        port: The port.

    Raises:
        OSError: If the port cannot be bound.
    """
    states = (ShopState(), HooksState(webhook_secret), EtlState(), LedgerState())
    runner = web.AppRunner(create_app(*states), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1]
    return Demo(runner, f"http://{host}:{bound}", *states)
