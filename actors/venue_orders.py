"""The order calls the router makes, for spot or USD-M futures, over one RestClient."""

from __future__ import annotations

from decimal import Decimal

from spark.exchange.models import OrderAck, OrderResult, OrderStatus, Trade
from spark.exchange.rest import RestClient


class VenueOrders:
    def __init__(self, rest: RestClient, product: str) -> None:
        self.rest = rest
        self.product = product
        self.futures = product == "futures"

    async def place(
        self, *, symbol: str, side: str, order_type: str, client_order_id: str,
        quantity: Decimal, price: Decimal | None, time_in_force: str | None,
    ) -> OrderAck | OrderResult:
        if self.futures:
            return await self.rest.futures_place_order(
                symbol, side, order_type, new_client_order_id=client_order_id,  # type: ignore[arg-type]
                quantity=quantity, price=price, time_in_force=time_in_force, resp_type="ACK")
        return await self.rest.place_order(
            symbol, side, order_type, new_client_order_id=client_order_id,  # type: ignore[arg-type]
            quantity=quantity, price=price, time_in_force=time_in_force, resp_type="ACK")

    async def query(self, symbol: str, client_order_id: str) -> OrderStatus:
        if self.futures:
            return await self.rest.futures_query_order(symbol, orig_client_order_id=client_order_id)
        return await self.rest.query_order(symbol, orig_client_order_id=client_order_id)

    async def cancel(self, symbol: str, client_order_id: str) -> OrderStatus:
        if self.futures:
            return await self.rest.futures_cancel_order(
                symbol, orig_client_order_id=client_order_id)
        return await self.rest.cancel_order(symbol, orig_client_order_id=client_order_id)

    async def open_orders(self) -> tuple[OrderStatus, ...]:
        if self.futures:
            return await self.rest.futures_open_orders()
        return await self.rest.open_orders()

    async def trades_since(self, symbol: str, from_id: int | None) -> tuple[Trade, ...]:
        if self.futures:
            return await self.rest.futures_user_trades(symbol, from_id=from_id, limit=1000)
        return await self.rest.my_trades(symbol, from_id=from_id, limit=1000)
