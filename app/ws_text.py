"""graphql-transport-ws messages go out as text frames.

The protocol's messages are JSON text, and clients expect text frames: gql raises
"Binary data received in the websocket", and a browser's graphql-ws gets a Blob it cannot
parse. strawberry's adapter sends whatever the view's ``encode_json`` returns, and ours
returns bytes (orjson, for HTTP bodies); this adapter sends the same JSON as text. The
live updates themselves are sent as text by app/ws_transport.py already.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.websockets import WebSocketDisconnect
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.http.exceptions import WebSocketDisconnected


class TextFramesAdapter(ASGIWebSocketAdapter):
    async def send_json(self, message: Mapping[str, object]) -> None:
        encoded = self.view.encode_json(message)
        text = encoded.decode() if isinstance(encoded, bytes) else encoded
        try:
            await self.ws.send_text(text)
        except WebSocketDisconnect as exc:
            raise WebSocketDisconnected from exc
