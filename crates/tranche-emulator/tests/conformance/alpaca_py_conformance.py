"""Drives the emulator with Alpaca's official Python SDK (alpaca-py), as a user would: only the
URLs changed. Every call of TradingClient, TradingStream, StockHistoricalDataClient and
StockDataStream that a trading application makes, and a raw JSON market-data session beside the
SDK's MessagePack one. Any exception or mismatched field is a failure.

Usage: python alpaca_py_conformance.py URL KEY SECRET
Prints one line per check; exits 1 when any check failed.
"""

import asyncio
import datetime as dt
import json
import sys
import threading
import time
import traceback

from alpaca.common.exceptions import APIError
from alpaca.data.enums import DataFeed
from alpaca.data.historical import StockHistoricalDataClient
from alpaca.data.live import StockDataStream
from alpaca.data.requests import (
    StockLatestBarRequest,
    StockLatestQuoteRequest,
    StockLatestTradeRequest,
    StockSnapshotRequest,
)
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import (
    AssetClass,
    AssetStatus,
    OrderSide,
    OrderStatus,
    QueryOrderStatus,
    TimeInForce,
)
from alpaca.trading.requests import (
    ClosePositionRequest,
    GetAssetsRequest,
    GetCalendarRequest,
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    ReplaceOrderRequest,
    StopLimitOrderRequest,
    StopOrderRequest,
)
from alpaca.trading.stream import TradingStream

URL, KEY, SECRET = sys.argv[1], sys.argv[2], sys.argv[3]
WS = URL.replace("http://", "ws://")
FAILED = []


def check(name):
    def run(body):
        try:
            body()
            print(f"ok      {name}", flush=True)
        except Exception:  # noqa: BLE001 - every failure is reported, none stops the others
            FAILED.append(name)
            print(f"FAILED  {name}\n{traceback.format_exc()}", flush=True)
        return body

    return run


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


def wait_for(predicate, what, seconds=30.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


trading = TradingClient(KEY, SECRET, paper=True, url_override=URL)
data = StockHistoricalDataClient(KEY, SECRET, url_override=URL)


@check("TradingClient.get_account")
def _():
    account = trading.get_account()
    expect(float(account.equity) > 0 and float(account.buying_power) > 0, account)
    expect(str(account.status).endswith("ACTIVE"), account.status)


@check("TradingClient.get_account_configurations")
def _():
    config = trading.get_account_configurations()
    expect(config.fractional_trading is True and config.no_shorting is True, config)


@check("TradingClient.get_clock")
def _():
    clock = trading.get_clock()
    expect(clock.is_open and clock.next_close > clock.timestamp, clock)


@check("TradingClient.get_calendar")
def _():
    today = trading.get_clock().timestamp.date()
    days = trading.get_calendar(GetCalendarRequest(start=today, end=today + dt.timedelta(days=6)))
    expect(len(days) >= 5, days)
    expect(all(day.open < day.close for day in days), days)
    expect(days[0].date == today, days[0])


@check("TradingClient.get_all_assets and get_asset (symbol, id)")
def _():
    assets = trading.get_all_assets(GetAssetsRequest(status=AssetStatus.ACTIVE, asset_class=AssetClass.US_EQUITY))
    symbols = {a.symbol for a in assets}
    expect({"AAPL", "MSFT", "SPY"} <= symbols, symbols)
    aapl = trading.get_asset("AAPL")
    expect(aapl.tradable and aapl.fractionable and aapl.asset_class == AssetClass.US_EQUITY, aapl)
    expect(trading.get_asset(str(aapl.id)).symbol == "AAPL", "by id")
    inactive = trading.get_all_assets(GetAssetsRequest(status=AssetStatus.INACTIVE))
    expect(inactive == [], inactive)
    try:
        trading.get_asset("NOSUCH")
        raise AssertionError("an unknown asset was found")
    except APIError as e:
        expect(e.status_code == 404, e)


@check("StockHistoricalDataClient latest quote, trade, bar and snapshot (one and many, feed=iex)")
def _():
    symbols = ["AAPL", "MSFT"]
    quotes = data.get_stock_latest_quote(StockLatestQuoteRequest(symbol_or_symbols=symbols, feed=DataFeed.IEX))
    expect(set(quotes) == set(symbols), quotes)
    expect(all(q.ask_price >= q.bid_price > 0 for q in quotes.values()), quotes)
    # The first reads started the markets: prints follow within moments.
    trades = wait_for(
        lambda: (t := data.get_stock_latest_trade(StockLatestTradeRequest(symbol_or_symbols=symbols, feed=DataFeed.IEX)))
        and set(t) == set(symbols)
        and t,
        "a print of each symbol",
    )
    expect(all(t.price > 0 and t.size > 0 for t in trades.values()), trades)
    one = data.get_stock_latest_trade(StockLatestTradeRequest(symbol_or_symbols="AAPL", feed=DataFeed.IEX))
    expect(one["AAPL"].symbol == "AAPL", one)
    bars = data.get_stock_latest_bar(StockLatestBarRequest(symbol_or_symbols=symbols, feed=DataFeed.IEX))
    expect(all(b.low <= b.open <= b.high and b.low <= b.close <= b.high and b.volume > 0 for b in bars.values()), bars)
    snapshots = data.get_stock_snapshot(StockSnapshotRequest(symbol_or_symbols=symbols, feed=DataFeed.IEX))
    for symbol, snap in snapshots.items():
        expect(snap.latest_trade.price > 0 and snap.latest_quote.ask_price > 0, snap)
        expect(snap.minute_bar.volume > 0 and snap.daily_bar.volume >= snap.minute_bar.volume, snap)
    single = data.get_stock_snapshot(StockSnapshotRequest(symbol_or_symbols="AAPL", feed=DataFeed.IEX))
    expect(single["AAPL"].latest_trade.symbol == "AAPL", single)


def place(request):
    order = trading.submit_order(request)
    expect(order.client_order_id and order.id and order.symbol == request.symbol, order)
    return order


def settled(order_id, statuses):
    return wait_for(lambda: (o := trading.get_order_by_id(order_id)) and o.status in statuses and o, f"order {statuses}")


@check("TradingClient.submit_order: market, notional, fractional; get_order_by_id / by_client_id")
def _():
    bought = place(MarketOrderRequest(symbol="AAPL", qty=3, side=OrderSide.BUY, time_in_force=TimeInForce.DAY))
    filled = settled(bought.id, {OrderStatus.FILLED})
    expect(float(filled.filled_qty) == 3 and float(filled.filled_avg_price) > 0, filled)
    expect(trading.get_order_by_client_id(bought.client_order_id).id == bought.id, "by client id")
    notional = place(MarketOrderRequest(symbol="MSFT", notional=500, side=OrderSide.BUY, time_in_force=TimeInForce.DAY))
    filled = settled(notional.id, {OrderStatus.FILLED})
    expect(abs(float(filled.filled_qty) * float(filled.filled_avg_price) - 500) < 1, filled)
    fractional = place(MarketOrderRequest(symbol="AAPL", qty=0.5, side=OrderSide.BUY, time_in_force=TimeInForce.DAY))
    expect(float(settled(fractional.id, {OrderStatus.FILLED}).filled_qty) == 0.5, "fractional")


@check("TradingClient limit, stop, stop-limit, extended hours; replace; cancel one; list with filters")
def _():
    ask = data.get_stock_latest_quote(StockLatestQuoteRequest(symbol_or_symbols="SPY"))["SPY"].ask_price
    low = round(ask * 0.5, 2)
    resting = place(
        LimitOrderRequest(symbol="SPY", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY, limit_price=low)
    )
    extended = place(
        LimitOrderRequest(
            symbol="SPY", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY, limit_price=low, extended_hours=True
        )
    )
    expect(extended.extended_hours is True, extended)
    stop = place(StopOrderRequest(symbol="AAPL", qty=1, side=OrderSide.SELL, time_in_force=TimeInForce.DAY, stop_price=1))
    expect(stop.stop_price is not None and float(stop.stop_price) == 1, stop)
    stop_limit = place(
        StopLimitOrderRequest(
            symbol="AAPL", qty=1, side=OrderSide.SELL, time_in_force=TimeInForce.DAY, stop_price=1, limit_price=0.9
        )
    )
    expect(float(stop_limit.limit_price) == 0.9, stop_limit)
    try:
        place(
            MarketOrderRequest(symbol="SPY", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY, extended_hours=True)
        )
        raise AssertionError("an extended-hours market order was accepted")
    except APIError as e:
        expect(e.status_code == 422, e)
    settled(resting.id, {OrderStatus.NEW})
    replaced = trading.replace_order_by_id(resting.id, ReplaceOrderRequest(limit_price=round(low * 1.01, 2)))
    expect(replaced.replaces == resting.id or str(replaced.replaces) == str(resting.id), replaced)
    trading.cancel_order_by_id(replaced.id)
    expect(settled(replaced.id, {OrderStatus.CANCELED}).status == OrderStatus.CANCELED, "canceled")
    everything = trading.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, limit=500))
    expect(len(everything) >= 7, len(everything))
    spy_buys = trading.get_orders(
        GetOrdersRequest(status=QueryOrderStatus.ALL, symbols=["SPY"], side=OrderSide.BUY, direction="asc", nested=True)
    )
    expect(spy_buys and all(o.symbol == "SPY" and o.side == OrderSide.BUY for o in spy_buys), spy_buys)
    expect([o.created_at for o in spy_buys] == sorted(o.created_at for o in spy_buys), "ascending")
    # Times go out to the microsecond and orders are stamped to the nanosecond: one microsecond
    # after the first order's time is after the first order.
    first = spy_buys[0].created_at
    after = first + dt.timedelta(microseconds=1)
    later = trading.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, after=after, symbols=["SPY"]))
    expect(all(o.created_at > first for o in later) and len(later) == len(spy_buys) - 1, later)
    two = trading.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, limit=2))
    expect(len(two) == 2, two)


@check("TradingClient.cancel_orders (207, one response per order)")
def _():
    open_before = trading.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN))
    expect(len(open_before) >= 3, open_before)
    responses = trading.cancel_orders()
    expect(len(responses) == len(open_before), responses)
    expect({str(r.id) for r in responses} == {str(o.id) for o in open_before}, responses)
    expect(all(r.status == 200 for r in responses), responses)
    wait_for(lambda: not trading.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN)), "no open order")


@check("TradingClient positions: list, get one (404), close by qty and percentage, close all")
def _():
    positions = wait_for(lambda: trading.get_all_positions(), "positions")
    by_symbol = {p.symbol: p for p in positions}
    expect({"AAPL", "MSFT"} <= set(by_symbol), by_symbol)
    expect(float(trading.get_open_position("AAPL").qty) == float(by_symbol["AAPL"].qty), "get one")
    try:
        trading.get_open_position("TSLA")
        raise AssertionError("a position that does not exist was found")
    except APIError as e:
        expect(e.status_code == 404 and "position does not exist" in str(e), e)
    by_qty = trading.close_position("AAPL", ClosePositionRequest(qty="1"))
    expect(by_qty.side == OrderSide.SELL and float(by_qty.qty) == 1, by_qty)
    settled(by_qty.id, {OrderStatus.FILLED})
    by_percentage = trading.close_position("MSFT", ClosePositionRequest(percentage="50"))
    expect(by_percentage.side == OrderSide.SELL, by_percentage)
    settled(by_percentage.id, {OrderStatus.FILLED})
    # A resting sell holds the shares left: cancel_orders frees them before the liquidation.
    held = trading.get_open_position("AAPL")
    price = data.get_stock_latest_quote(StockLatestQuoteRequest(symbol_or_symbols="AAPL"))["AAPL"].ask_price
    resting = place(
        LimitOrderRequest(
            symbol="AAPL", qty=held.qty, side=OrderSide.SELL, time_in_force=TimeInForce.DAY, limit_price=round(price * 10, 2)
        )
    )
    closing = trading.close_all_positions(cancel_orders=True)
    expect(closing and all(r.status == 200 for r in closing), closing)
    expect(trading.get_order_by_id(resting.id).status == OrderStatus.CANCELED, "the resting sell was cancelled")
    wait_for(lambda: not trading.get_all_positions(), "every position closed")


@check("RESTClient: account activities (FILL), the raw call behind TradingClient")
def _():
    fills = trading.get("/account/activities/FILL", {"page_size": 100})
    expect(isinstance(fills, list) and fills and all(f["activity_type"] == "FILL" for f in fills), fills)


@check("an endpoint the emulator does not model answers 501 naming it")
def _():
    try:
        trading.get_watchlists()
        raise AssertionError("watchlists answered")
    except APIError as e:
        expect(e.status_code == 501 and "watchlists" in str(e), e)


def run_in_thread(stream):
    thread = threading.Thread(target=stream.run, daemon=True)
    thread.start()
    return thread


@check("TradingStream: trade updates of a new order")
def _():
    stream = TradingStream(KEY, SECRET, paper=True, url_override=WS + "/stream")
    seen = []

    async def on_update(update):
        seen.append(update)

    stream.subscribe_trade_updates(on_update)
    thread = run_in_thread(stream)
    time.sleep(0.5)
    order = place(MarketOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY))
    update = wait_for(lambda: next((u for u in seen if str(u.order.id) == str(order.id) and u.event == "fill"), None), "a fill update")
    expect(float(update.qty) == 1 and float(update.price) > 0 and update.timestamp, update)
    stream.stop()
    thread.join(10)


@check("StockDataStream (MessagePack): quotes and trades")
def _():
    stream = StockDataStream(KEY, SECRET, feed=DataFeed.IEX, url_override=WS + "/v2/iex")
    quotes, trades = [], []

    async def on_quote(q):
        quotes.append(q)

    async def on_trade(t):
        trades.append(t)

    stream.subscribe_quotes(on_quote, "AAPL", "MSFT")
    stream.subscribe_trades(on_trade, "AAPL")
    thread = run_in_thread(stream)
    wait_for(lambda: {q.symbol for q in quotes} >= {"AAPL", "MSFT"} and trades, "quotes of both and a trade")
    expect(all(q.ask_price >= q.bid_price > 0 for q in quotes), quotes[:3])
    expect(all(t.symbol == "AAPL" and t.price > 0 and t.size > 0 for t in trades), trades[:3])
    stream.stop()
    thread.join(10)


@check("market-data stream in JSON: the same session as text frames")
def _():
    import websockets.sync.client as ws_client

    with ws_client.connect(WS + "/v2/iex") as socket:
        expect(json.loads(socket.recv(10)) == [{"T": "success", "msg": "connected"}], "connected")
        socket.send(json.dumps({"action": "auth", "key": KEY, "secret": SECRET}))
        expect(json.loads(socket.recv(10)) == [{"T": "success", "msg": "authenticated"}], "authenticated")
        socket.send(json.dumps({"action": "subscribe", "quotes": ["AAPL"], "trades": ["AAPL"]}))
        kinds = set()
        deadline = time.monotonic() + 30
        while kinds != {"subscription", "q", "t"} and time.monotonic() < deadline:
            for message in json.loads(socket.recv(30)):
                kinds.add(message["T"])
        expect(kinds == {"subscription", "q", "t"}, kinds)


print(f"{len(FAILED)} failed" if FAILED else "all checks passed", flush=True)
sys.exit(1 if FAILED else 0)
