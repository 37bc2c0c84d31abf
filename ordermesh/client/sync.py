"""Client: the blocking face of AsyncClient, which it runs on a private event-loop thread.

There is one implementation: each blocking method hands the AsyncClient coroutine of the
same name to the client's own loop and waits for its result, so arguments, results, errors,
retries and deadlines are exactly those of AsyncClient. Streams are plain iterators.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, Self, TypeVar

from ordermesh.client.aio import AsyncClient
from ordermesh.client.entry import OrderEntrySession
from ordermesh.client.types import MarketEvent, Order, OrderUpdate

P = ParamSpec("P")
T = TypeVar("T")


def _blocking(
    method: Callable[Concatenate[AsyncClient, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[Client, P], T]:
    """A Client method that runs `method` on the client's loop and waits for it."""

    @functools.wraps(method)
    def call(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._run(method(self._client, *args, **kwargs))

    call.__doc__ = f"Blocking `AsyncClient.{method.__name__}`.\n\n{method.__doc__ or ''}"
    return call


class Client:
    """A blocking connection to an ordermesh gateway: `with Client(...) as client:`.

    Takes the arguments of `AsyncClient` and offers the same methods, which block until
    their answer; streams are iterators and `order_entry` a `with` session. It may be used
    from several threads at once.
    """

    def __init__(
        self,
        target: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        retry_backoff: float = 0.1,
        retry_max_backoff: float = 2.0,
        secure: bool = False,
        root_certificates: bytes | None = None,
        channel_options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self._client = AsyncClient(
            target,
            api_key,
            timeout=timeout,
            retries=retries,
            retry_backoff=retry_backoff,
            retry_max_backoff=retry_max_backoff,
            secure=secure,
            root_certificates=root_certificates,
            channel_options=channel_options,
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="ordermesh client", daemon=True
        )
        self._thread.start()

    @property
    def target(self) -> str:
        """The gateway's address."""
        return self._client.target

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel and stop the client's thread; the client is unusable after."""
        if self._loop.is_closed():
            return
        try:
            self._run(self._client.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def _submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        if self._loop.is_closed():
            coroutine.close()
            raise RuntimeError("the client is closed")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        future = self._submit(coroutine)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # e.g. KeyboardInterrupt: do not leave the call running
            raise

    def _iterate(self, iterator: AsyncIterator[T]) -> Iterator[T]:
        async def next_item() -> tuple[bool, T | None]:
            try:
                return True, await anext(iterator)
            except StopAsyncIteration:
                return False, None

        try:
            while True:
                more, item = self._run(next_item())
                if not more:
                    return
                yield item  # type: ignore[misc]  # set whenever `more` is True
        finally:
            close = getattr(iterator, "aclose", None)
            if close is not None and not self._loop.is_closed():
                self._run(close())

    place_order = _blocking(AsyncClient.place_order)
    cancel_order = _blocking(AsyncClient.cancel_order)
    get_order = _blocking(AsyncClient.get_order)
    list_open_orders = _blocking(AsyncClient.list_open_orders)
    list_orders = _blocking(AsyncClient.list_orders)
    list_my_trades = _blocking(AsyncClient.list_my_trades)
    get_balances = _blocking(AsyncClient.get_balances)
    list_symbols = _blocking(AsyncClient.list_symbols)
    get_order_book = _blocking(AsyncClient.get_order_book)
    get_ticker = _blocking(AsyncClient.get_ticker)
    list_trades = _blocking(AsyncClient.list_trades)
    get_candles = _blocking(AsyncClient.get_candles)
    deposit = _blocking(AsyncClient.deposit)
    withdraw = _blocking(AsyncClient.withdraw)

    def iter_orders(self, symbol: str | None = None, *, page_size: int = 100) -> Iterator[Order]:
        """All your orders, newest first, fetched a page at a time."""
        return self._iterate(self._client.iter_orders(symbol, page_size=page_size))

    def order_updates(self, symbol: str | None = None) -> Iterator[OrderUpdate]:
        """Blocking `AsyncClient.order_updates`: an iterator; `close()` it to unsubscribe."""
        return self._iterate(self._client.order_updates(symbol))

    def market_data(self, symbol: str, depth: int = 20) -> Iterator[MarketEvent]:
        """Blocking `AsyncClient.market_data`: an iterator; `close()` it to unsubscribe."""
        return self._iterate(self._client.market_data(symbol, depth))

    def order_entry(self, *, window: int = 1000) -> SyncOrderEntrySession:
        """A blocking OrderEntry session (`with`); see `AsyncClient.order_entry`."""
        return SyncOrderEntrySession(self, self._client.order_entry(window=window))


def _session_blocking(
    method: Callable[Concatenate[OrderEntrySession, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[SyncOrderEntrySession, P], T]:
    """A SyncOrderEntrySession method that waits for the answer of `method`."""

    @functools.wraps(method)
    def call(self: SyncOrderEntrySession, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._client._run(method(self._session, *args, **kwargs))

    call.__doc__ = f"Blocking `OrderEntrySession.{method.__name__}`."
    return call


def _session_submitting(
    method: Callable[Concatenate[OrderEntrySession, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[SyncOrderEntrySession, P], concurrent.futures.Future[T]]:
    """A SyncOrderEntrySession method that sends at once and returns a Future of the answer."""

    @functools.wraps(method)
    def call(
        self: SyncOrderEntrySession, /, *args: P.args, **kwargs: P.kwargs
    ) -> concurrent.futures.Future[T]:
        return self._client._submit(method(self._session, *args, **kwargs))

    call.__doc__ = f"`OrderEntrySession.{method.__name__}` without waiting: a Future of its answer."
    return call


class SyncOrderEntrySession:
    """`OrderEntrySession` for blocking code, made by `Client.order_entry`.

    `place`/`cancel` block until their answer; `submit_place`/`submit_cancel` return a
    concurrent.futures.Future at once, so many requests can be in flight (pipelined).
    """

    def __init__(self, client: Client, session: OrderEntrySession) -> None:
        self._client = client
        self._session = session

    def __enter__(self) -> Self:
        self._client._run(self._session.__aenter__())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._client._run(self._session.close())

    place = _session_blocking(OrderEntrySession.place)
    cancel = _session_blocking(OrderEntrySession.cancel)
    submit_place = _session_submitting(OrderEntrySession.place)
    submit_cancel = _session_submitting(OrderEntrySession.cancel)
