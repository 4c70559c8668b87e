"""Real clients streaming from a wsgate node over TLS (wss), trusting the test CA.

    wss_clients.py websockets <url> <ca.pem> <count>
        the `websockets` library with an SSL context that trusts <ca.pem>; reads <count>
        messages.

    wss_clients.py python-binance <stream-url> <count>
        python-binance's BinanceSocketManager.trade_socket("BTCUSDT"), its STREAM_URL pointed
        at the node (the CA comes from SSL_CERT_FILE, as a trader's deployment would set it);
        reads <count> trades.

Each line of output is one JSON object; the exit status is 0 only when everything arrived.
"""

import asyncio
import json
import ssl
import sys


def emit(**fields):
    print(json.dumps(fields), flush=True)


async def plain_websockets(url, ca, count):
    import websockets

    context = ssl.create_default_context(cafile=ca)
    async with websockets.connect(url, ssl=context) as socket:
        for _ in range(count):
            message = json.loads(await asyncio.wait_for(socket.recv(), 10))
            emit(event=message.get("e"), symbol=message.get("s"))


async def python_binance(stream_url, count):
    from binance import AsyncClient, BinanceSocketManager

    # The constructor, not AsyncClient.create(): create() pings Binance's REST API first.
    client = AsyncClient()
    manager = BinanceSocketManager(client)
    manager.STREAM_URL = stream_url
    try:
        async with manager.trade_socket("BTCUSDT") as socket:
            for _ in range(count):
                message = await asyncio.wait_for(socket.recv(), 10)
                emit(event=message.get("e"), symbol=message.get("s"))
    finally:
        await client.close_connection()


def main():
    mode = sys.argv[1]
    if mode == "websockets":
        asyncio.run(plain_websockets(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    elif mode == "python-binance":
        asyncio.run(python_binance(sys.argv[2], int(sys.argv[3])))
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
