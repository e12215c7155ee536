"""A TCP proxy on 127.0.0.1 that a test can cut and restore: the database "goes away"."""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpProxy:
    """Forwards 127.0.0.1:<port> to ``target``. ``cut()`` drops every connection and refuses new
    ones (the listening socket closes); ``restore()`` listens again on the same port.

    ``round_trips`` counts exchanges: each time the server answers after the client has sent
    something since its last answer (on each connection). A client that waits for each answer
    before it sends again (as database drivers do outside pipeline mode) makes one per request.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.round_trips = 0
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port: int = probe.getsockname()[1]
        probe.close()
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, set()
        if listener is not None:
            listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    close = cut

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._sockets |= {client, upstream}
            # Whether the client has sent since the server last answered, on this connection.
            asked = [False]
            for a, b, up in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pipe, args=(a, b, up, asked), daemon=True).start()

    def _pipe(
        self, source: socket.socket, sink: socket.socket, up: bool, asked: list[bool]
    ) -> None:
        try:
            while data := source.recv(65536):
                with self._lock:
                    if up:
                        asked[0] = True
                    elif asked[0]:
                        asked[0] = False
                        self.round_trips += 1
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
