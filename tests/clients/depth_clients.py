"""Real client libraries keeping a local order book from a wsgate node alone: the REST snapshot
(`GET /api/v3/depth`) and the diff-depth stream both come from the gateway.

    depth_clients.py ccxt <http-base> <ws-base> <rounds>
        ccxt.pro's binance watch_order_book('BTC/USDT').

    depth_clients.py python-binance <http-base> <ws-base> <rounds>
        python-binance's DepthCacheManager on btcusdt@depth@100ms.

Each round fetches a fresh snapshot from the gateway and lets the client's book move until its
update id reaches the snapshot's: at that id the client's bids and asks must equal the
snapshot's. A client whose book passes the snapshot's id without stopping on it tries again
with a new snapshot. Each line of output is one JSON object: `{"compared": <update id>, ...}`
per round, `{"mismatch": ...}` (exit 1) when a book differs, `{"done": true}` at the end.
"""

import asyncio
import json
import sys
import time
import urllib.request

SYMBOL_ID = "BTCUSDT"
TIMEOUT = 60


def emit(**fields):
    print(json.dumps(fields), flush=True)


def rest_snapshot(http_base):
    """The gateway's full BTCUSDT book, numbers as floats (as both clients keep them)."""
    url = f"{http_base}/api/v3/depth?symbol={SYMBOL_ID}&limit=5000"
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.load(response)
    levels = lambda side: [[float(p), float(q)] for p, q in body[side]]
    return body["lastUpdateId"], levels("bids"), levels("asks")


def same_book(client, update_id, bids, asks, snapshot):
    """Compares a client's book at `update_id` with a snapshot taken at the same id."""
    _, want_bids, want_asks = snapshot
    if bids == want_bids and asks == want_asks:
        emit(client=client, compared=update_id, bids=len(bids), asks=len(asks))
        return True
    emit(client=client, mismatch=update_id, bids=bids[:5], asks=asks[:5],
         want_bids=want_bids[:5], want_asks=want_asks[:5],
         sizes=[len(bids), len(asks), len(want_bids), len(want_asks)])
    sys.exit(1)


async def compare_rounds(client, http_base, rounds, current, next_book):
    """`rounds` comparisons. `current()` is the client's book now and `next_book()` waits for
    its next state, each as (update id, bids, asks)."""
    deadline = time.time() + TIMEOUT
    compared = 0
    while compared < rounds:
        if time.time() > deadline:
            sys.exit(f"{client}: only {compared} of {rounds} comparisons in time")
        await asyncio.sleep(0.3)
        snapshot = await asyncio.to_thread(rest_snapshot, http_base)
        update_id, bids, asks = current()
        while update_id < snapshot[0]:
            update_id, bids, asks = await asyncio.wait_for(next_book(), 20)
        if update_id == snapshot[0]:
            same_book(client, update_id, bids, asks, snapshot)
            compared += 1
        else:
            emit(client=client, passed=snapshot[0], at=update_id)


def market():
    """BTC/USDT as ccxt's binance describes a spot market (ccxt would ask exchangeInfo)."""
    return {
        "id": SYMBOL_ID, "lowercaseId": SYMBOL_ID.lower(), "symbol": "BTC/USDT",
        "base": "BTC", "quote": "USDT", "baseId": "BTC", "quoteId": "USDT",
        "type": "spot", "spot": True, "margin": False, "swap": False, "future": False,
        "option": False, "active": True, "contract": False, "linear": None,
        "inverse": None, "settle": None, "settleId": None, "contractSize": None,
        "precision": {"amount": 0.00001, "price": 0.01},
        "limits": {"amount": {"min": None, "max": None}, "price": {"min": None, "max": None},
                   "cost": {"min": None, "max": None}},
        "info": {"symbol": SYMBOL_ID, "status": "TRADING"},
    }


async def ccxt_book(http_base, ws_base, rounds):
    import ccxt.pro as ccxtpro

    exchange = ccxtpro.binance({"enableRateLimit": False})
    # ccxt tells spot from futures by `/stream.binance.` or `testnet` in the socket URL: the
    # gateway ignores a path segment after /ws/ that is no stream name.
    exchange.urls["api"]["ws"]["spot"] = f"{ws_base}/ws/testnet"
    exchange.urls["api"]["public"] = f"{http_base}/api/v3"
    exchange.set_markets([market()])
    def state(book):
        return book["nonce"], [list(l) for l in book["bids"]], [list(l) for l in book["asks"]]

    async def next_book():
        return state(await exchange.watch_order_book("BTC/USDT", 1000))

    try:
        # The first call subscribes and builds the book (snapshot, then buffered deltas).
        await asyncio.wait_for(next_book(), 20)
        current = lambda: state(exchange.orderbooks["BTC/USDT"])
        await compare_rounds("ccxt", http_base, rounds, current, next_book)
    finally:
        await exchange.close()


async def python_binance_book(http_base, ws_base, rounds):
    from binance import AsyncClient, BinanceSocketManager, DepthCacheManager

    # The constructor, not AsyncClient.create(): create() pings Binance's REST API first.
    client = AsyncClient()
    client.API_URL = f"{http_base}/api"
    manager = BinanceSocketManager(client)
    manager.STREAM_URL = f"{ws_base}/"
    cache_manager = DepthCacheManager(client, SYMBOL_ID, bm=manager, limit=5000, ws_interval=100)
    try:
        async with cache_manager as socket:
            def state(cache):
                return cache_manager._last_update_id, cache.get_bids(), cache.get_asks()

            async def next_book():
                return state(await socket.recv())

            await asyncio.wait_for(next_book(), 20)
            current = lambda: state(cache_manager._depth_cache)
            await compare_rounds("python-binance", http_base, rounds, current, next_book)
    finally:
        await client.close_connection()


def main():
    client, http_base, ws_base, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    run = {"ccxt": ccxt_book, "python-binance": python_binance_book}[client]
    asyncio.run(run(http_base, ws_base, rounds))
    emit(done=True)


if __name__ == "__main__":
    main()
