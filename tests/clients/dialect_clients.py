"""Real ccxt exchanges against a wsgate node's other dialects, unmodified but for their URLs.

    dialect_clients.py hashkey <ws-base> <count>
        ccxt.pro's hashkey on /quote/ws/v1: watch_trades('BTC/USDT') until <count> trades,
        watch_ticker('BTC/USDT') once, then watch_order_book('BTC/USDT') <count> times.

    dialect_clients.py hashkey-orders <http-base> <ws-base> <api-key> <secret> <count>
        ccxt.pro's hashkey with credentials: a listen key from the signed
        POST /api/v1/userDataStream, then watch_orders('BTC/USDT') on /api/v1/ws/<listenKey>
        until <count> orders were seen (the test places them).

    dialect_clients.py binanceusdm <ws-base> <count>
        ccxt.pro's binanceusdm on /futures/ws (ccxt turns it into /futures/public/ws and
        /futures/market/ws): watch_trades('BTC/USDT:USDT') until <count> trades, then
        watch_mark_price('BTC/USDT:USDT') <count> times.

Markets are set by hand (ccxt would ask the exchange's REST API). Each line of output is one JSON
object: `{"trade": ...}`, `{"ticker": ...}`, `{"book": ...}`, `{"mark": ...}`, then `{"done": true}`.
"""

import asyncio
import json
import sys

TIMEOUT = 30


def emit(**fields):
    print(json.dumps(fields), flush=True)


def market(symbol, swap):
    """BTC/USDT (spot) or BTC/USDT:USDT (linear perpetual) as ccxt describes a market."""
    return {
        "id": "BTCUSDT", "lowercaseId": "btcusdt", "symbol": symbol,
        "base": "BTC", "quote": "USDT", "baseId": "BTC", "quoteId": "USDT",
        "settle": "USDT" if swap else None, "settleId": "USDT" if swap else None,
        "type": "swap" if swap else "spot", "spot": not swap, "margin": False, "swap": swap,
        "future": False, "option": False, "active": True, "contract": swap,
        "linear": True if swap else None, "inverse": False if swap else None,
        "contractSize": 1 if swap else None, "expiry": None, "expiryDatetime": None,
        "strike": None, "optionType": None,
        "precision": {"amount": 0.00001, "price": 0.01},
        "limits": {"amount": {"min": None, "max": None}, "price": {"min": None, "max": None},
                   "cost": {"min": None, "max": None}, "leverage": {"min": None, "max": None}},
        "info": {"symbol": "BTCUSDT", "status": "TRADING"},
    }


def trade_fields(trade):
    return {k: trade[k] for k in ("id", "symbol", "timestamp", "side", "price", "amount")}


async def trades(exchange, symbol, count):
    seen = 0
    while seen < count:
        batch = await asyncio.wait_for(exchange.watch_trades(symbol), TIMEOUT)
        for trade in batch[-count:]:
            emit(trade=trade_fields(trade))
            seen += 1


async def hashkey(ws_base, count):
    import ccxt.pro as ccxtpro

    exchange = ccxtpro.hashkey({"enableRateLimit": False})
    exchange.urls["api"]["ws"]["public"] = f"{ws_base}/quote/ws/v1"
    exchange.set_markets([market("BTC/USDT", False)])
    try:
        await trades(exchange, "BTC/USDT", count)
        ticker = await asyncio.wait_for(exchange.watch_ticker("BTC/USDT"), TIMEOUT)
        emit(ticker={k: ticker.get(k) for k in ("symbol", "last", "open", "high", "low", "percentage")})
        for _ in range(count):
            book = await asyncio.wait_for(exchange.watch_order_book("BTC/USDT"), TIMEOUT)
            emit(book={"symbol": book["symbol"], "timestamp": book["timestamp"],
                       "bids": book["bids"][:3], "asks": book["asks"][:3],
                       "depth": [len(book["bids"]), len(book["asks"])]})
    finally:
        await exchange.close()


async def hashkey_orders(http_base, ws_base, api_key, secret, count):
    import ccxt.pro as ccxtpro

    exchange = ccxtpro.hashkey({"enableRateLimit": False, "apiKey": api_key, "secret": secret})
    exchange.urls["api"]["private"] = http_base
    exchange.urls["api"]["ws"]["private"] = f"{ws_base}/api/v1/ws"
    exchange.set_markets([market("BTC/USDT", False)])
    try:
        emit(listen_key=await exchange.authenticate())
        seen = 0
        while seen < count:
            orders = await asyncio.wait_for(exchange.watch_orders("BTC/USDT"), TIMEOUT)
            for order in orders[-count:]:
                emit(order={k: order[k] for k in ("id", "symbol", "side", "type", "status", "filled")})
                seen += 1
    finally:
        await exchange.close()


async def binanceusdm(ws_base, count):
    import ccxt.pro as ccxtpro

    exchange = ccxtpro.binanceusdm({"enableRateLimit": False})
    exchange.urls["api"]["ws"]["linear"] = f"{ws_base}/futures/ws"
    exchange.set_markets([market("BTC/USDT:USDT", True)])
    symbol = "BTC/USDT:USDT"
    try:
        await trades(exchange, symbol, count)
        if exchange.has.get("watchMarkPrice"):
            for _ in range(count):
                mark = await asyncio.wait_for(exchange.watch_mark_price(symbol), TIMEOUT)
                emit(mark={k: mark.get(k) for k in ("symbol", "timestamp", "markPrice", "indexPrice")})
    finally:
        await exchange.close()


def main():
    client, args = sys.argv[1], sys.argv[2:]
    if client == "hashkey-orders":
        http_base, ws_base, api_key, secret, count = args
        asyncio.run(hashkey_orders(http_base, ws_base, api_key, secret, int(count)))
    else:
        run = {"hashkey": hashkey, "binanceusdm": binanceusdm}[client]
        asyncio.run(run(args[0], int(args[1])))
    emit(done=True)


if __name__ == "__main__":
    main()
