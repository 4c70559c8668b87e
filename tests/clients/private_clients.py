"""Real Binance client libraries against a wsgate node, unmodified but for their URLs.

    private_clients.py python-binance <ws-api-url> <api-key> <secret>
        python-binance's user_socket() (WebSocket API `userDataStream.subscribe.signature`), then
        an order through AsyncClient.ws_create_order(); prints the order, then the fill that
        arrives on the user socket.

    private_clients.py binance-connector <http-base> <ws-base> <api-key>
        binance-connector's legacy listen key (new/renew over REST) subscribed with
        SpotWebsocketStreamClient.user_data(); prints the key, then waits for a balanceUpdate of
        asset PY on it.

Each line of output is one JSON object; the exit status is 0 only when everything arrived.
"""

import asyncio
import json
import queue
import sys
import time


def emit(**fields):
    print(json.dumps(fields), flush=True)


async def python_binance(ws_api_url, api_key, secret):
    from binance import AsyncClient, BinanceSocketManager
    from binance.ws.websocket_api import WebsocketAPI

    # The constructor, not AsyncClient.create(): create() pings Binance's REST API first.
    client = AsyncClient(api_key, secret)
    client.ws_api = WebsocketAPI(url=ws_api_url)
    manager = BinanceSocketManager(client)
    try:
        async with manager.user_socket() as socket:
            emit(subscribed=True)
            order = await client.ws_create_order(
                symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01"
            )
            emit(order=order)
            while True:
                event = await asyncio.wait_for(socket.recv(), 20)
                if event.get("e") == "executionReport":
                    emit(fill=event)
                    return
    finally:
        await client.close_connection()


def binance_connector(http_base, ws_base, api_key):
    from binance.spot import Spot
    from binance.websocket.spot.websocket_stream import SpotWebsocketStreamClient

    client = Spot(api_key=api_key, base_url=http_base)
    listen_key = client.new_listen_key()["listenKey"]
    assert client.new_listen_key()["listenKey"] == listen_key, "the active key again"
    client.renew_listen_key(listen_key)
    events = queue.Queue()
    ws = SpotWebsocketStreamClient(
        stream_url=ws_base, on_message=lambda _, message: events.put(message)
    )
    try:
        ws.user_data(listen_key=listen_key, id=1)
        emit(listenKey=listen_key)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                message = json.loads(events.get(timeout=1))
            except queue.Empty:
                continue
            if message.get("e") == "balanceUpdate" and message.get("a") == "PY":
                emit(event=message)
                break
        else:
            sys.exit("no balanceUpdate arrived")
    finally:
        ws.stop()
    client.close_listen_key(listen_key)
    emit(closed=True)


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "python-binance":
        asyncio.run(python_binance(*args))
    elif command == "binance-connector":
        binance_connector(*args)
    else:
        sys.exit(f"unknown command {command}")
