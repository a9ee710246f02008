"""uvicorn's HTTP/1.1 protocol (h11) with a deadline for the request head.

uvicorn bounds the time between requests on a kept-alive connection (``timeout_keep_alive``, restarted by every
byte that arrives) but not the time a request's line and headers take to arrive: a client that opened a connection
and sent nothing, or part of its headers (a byte now and then), held it, and a few hundred such clients held the
server's connections. Here the head must be complete within ``seconds`` of the connection opening, or of the end
of the previous response: else a client that sent part of it gets a JSON 408, and the connection closes.
"""
from __future__ import annotations

import json


def head_deadline_protocol(seconds: float) -> type:
    """A uvicorn ``http`` protocol class (h11) that closes a connection whose request head is not in within
    ``seconds``."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    message = (f"the request head (request line and headers) did not arrive within {seconds:g} s "
               f"(read_timeout_s={seconds:g})")
    body = json.dumps({"error": {"code": "timeout", "message": message}}).encode()
    answer = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
              b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)

    class HeadDeadlineProtocol(H11Protocol):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._head_timer = None
            self._head_bytes = 0
            self._arm_head_timer()

        def _arm_head_timer(self) -> None:
            self._disarm_head_timer()
            self._head_bytes = len(self.conn.trailing_data[0])  # a pipelined next request may have begun already
            self._head_timer = self.loop.call_later(seconds, self._head_timed_out)

        def _disarm_head_timer(self) -> None:
            if getattr(self, "_head_timer", None) is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def data_received(self, data: bytes) -> None:
            if self._head_timer is not None:
                self._head_bytes += len(data)
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:  # the head is in (or the connection failed): no deadline
                self._disarm_head_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self._arm_head_timer()  # the next request on this connection gets the same deadline

        def connection_lost(self, exc) -> None:
            self._disarm_head_timer()
            super().connection_lost(exc)

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
                return
            if self._head_bytes:  # part of a request came: say why it is cut (h11 sends no response before a request)
                self.transport.write(answer)
            self.transport.close()

    return HeadDeadlineProtocol
