"""hubcast against the Python client signalrcore (threads and callbacks, negotiate version 0)."""

import threading
import uuid

import msgpack
import pytest
from signalrcore.hub.errors import HubConnectionError
from signalrcore.hub.negotiation import NegotiationHandler
from signalrcore.hub_connection_builder import HubConnectionBuilder
from signalrcore.protocol.messagepack_protocol import MessagePackHubProtocol
from signalrcore.types import HttpTransportType

TIMEOUT = 5.0

CASES = [
    pytest.param(HttpTransportType.web_sockets, "json", id="websockets-json"),
    pytest.param(HttpTransportType.web_sockets, "messagepack", id="websockets-messagepack"),
    pytest.param(HttpTransportType.server_sent_events, "json", id="sse-json"),
]


class InvocationError(Exception):
    pass


class Client:
    """A signalrcore HubConnection with blocking helpers built on threading.Event."""

    def __init__(self, url, transport, protocol):
        builder = HubConnectionBuilder().with_url(url, options={"transport": transport})
        if protocol == "messagepack":
            builder.with_hub_protocol(MessagePackHubProtocol())
        self.connection = builder.build()
        self.opened = threading.Event()
        self.closed = threading.Event()
        self._pending = {}
        self._lock = threading.Lock()
        self.connection.on_open(self.opened.set)
        self.connection.on_close(self.closed.set)
        self.connection.on_error(self._on_error)

    def start(self):
        assert self.connection.start() is True
        assert self.opened.wait(TIMEOUT), "on_open was not called: the handshake did not complete"

    def stop(self):
        self.connection.stop()

    def _finish(self, invocation_id, result=None, error=None):
        with self._lock:
            pending = self._pending.get(invocation_id)
        if pending is not None:
            pending["result"], pending["error"] = result, error
            pending["done"].set()

    def _on_error(self, message):
        self._finish(getattr(message, "invocation_id", None), error=message.error)

    def invoke(self, method, arguments):
        """Invokes `method` and waits for its completion; raises InvocationError with the server's text."""
        pending = {"done": threading.Event()}
        # Register under our own id before sending, so that no answer can arrive unregistered.
        invocation_id = str(uuid.uuid4())
        with self._lock:
            self._pending[invocation_id] = pending
        self.connection.send(
            method,
            arguments,
            on_invocation=lambda message: self._finish(message.invocation_id, result=message.result),
            invocation_id=invocation_id,
        )
        assert pending["done"].wait(TIMEOUT), f"no completion for {method} within {TIMEOUT} s"
        if pending["error"] is not None:
            raise InvocationError(pending["error"])
        return pending["result"]


@pytest.fixture
def negotiations(monkeypatch):
    """Records every negotiate response signalrcore receives."""
    seen = []
    original = NegotiationHandler.negotiate

    def recording(self):
        result = original(self)
        seen.append(result[2])
        return result

    monkeypatch.setattr(NegotiationHandler, "negotiate", recording)
    return seen


@pytest.fixture
def client_factory(server):
    clients = []

    def make(transport, protocol, path="/testhub"):
        client = Client(server.url + path, transport, protocol)
        clients.append(client)
        return client

    yield make
    for client in clients:
        try:
            client.stop()
        except Exception:  # noqa: BLE001 - best-effort cleanup
            pass


@pytest.mark.parametrize("transport,protocol", CASES)
def test_echo_over_negotiate_v0(client_factory, negotiations, transport, protocol):
    client = client_factory(transport, protocol)
    client.start()
    # signalrcore sends no negotiateVersion, so the server must answer version 0 (token == connectionId).
    assert len(negotiations) == 1
    assert negotiations[0].negotiate_version == 0
    connection_id = negotiations[0].connection_id
    assert client.connection.transport.connection_id == connection_id

    assert client.invoke("Echo", ["hello from python ✓"]) == "hello from python ✓"
    assert client.invoke("echo", ["case-insensitive"]) == "case-insensitive"
    assert client.invoke("GetCallerConnectionId", []) == connection_id
    assert client.invoke("GetActiveTransportName", []) == transport.value


@pytest.mark.parametrize("transport,protocol", CASES)
def test_receives_server_call(client_factory, transport, protocol):
    client = client_factory(transport, protocol)
    received = []
    got_message = threading.Event()

    def on_message(arguments):
        received.append(arguments)
        got_message.set()

    client.connection.on("Message", on_message)
    client.start()
    assert client.invoke("InvokeWithString", ["message from the server"]) is None
    assert got_message.wait(TIMEOUT), "the Message callback was not called"
    assert received == [["message from the server"]]


@pytest.mark.parametrize("transport,protocol", CASES)
def test_error_texts(client_factory, transport, protocol):
    client = client_factory(transport, protocol)
    client.start()
    with pytest.raises(InvocationError) as thrown:
        client.invoke("ThrowException", ["An error occurred."])
    assert str(thrown.value) == (
        "An unexpected error occurred invoking 'ThrowException' on the server. "
        "InvalidOperationException: An error occurred."
    )
    with pytest.raises(InvocationError) as unknown:
        client.invoke("NoSuchMethod", [])
    assert str(unknown.value) == "Unknown hub method 'NoSuchMethod'"
    assert client.invoke("Echo", ["still connected"]) == "still connected"


@pytest.mark.parametrize("transport,protocol", CASES)
def test_complex_object(client_factory, transport, protocol):
    client = client_factory(transport, protocol)
    client.start()
    value = client.invoke("SendComplexObject", [])
    assert value["String"] == "hello world"
    assert value["IntArray"] == [1, 2, 3]
    assert value["Guid"] == "00010203-0405-0607-0706-050403020100"
    if protocol == "messagepack":
        assert value["ByteArray"] == b"\x01\x02\x03"
        assert value["DateTime"] == msgpack.Timestamp(seconds=946684800)
    else:
        assert value["ByteArray"] == "AQID"
        assert value["DateTime"] == "2000-01-01T00:00:00Z"


@pytest.mark.parametrize("transport,protocol", CASES)
def test_stop_closes_cleanly(client_factory, transport, protocol):
    client = client_factory(transport, protocol)
    client.start()
    assert client.invoke("Echo", ["before stop"]) == "before stop"
    client.stop()
    assert client.closed.wait(TIMEOUT), "on_close was not called after stop()"
    assert not client.connection.transport.is_running()
    with pytest.raises(HubConnectionError):
        client.connection.send("Echo", ["after stop"])


def test_long_polling(client_factory, negotiations):
    """signalrcore's long polling POSTs the handshake before its first poll, which ASP.NET Core accepts."""
    client = client_factory(HttpTransportType.long_polling, "json")
    received = threading.Event()
    client.connection.on("Message", lambda arguments: received.set())
    client.start()
    assert negotiations[0].negotiate_version == 0
    assert client.invoke("Echo", ["over long polling"]) == "over long polling"
    assert client.invoke("GetActiveTransportName", []) == "LongPolling"
    # signalrcore's long-polling client hands over only the first record of each poll response and keeps
    # the rest until the next response arrives (its _append), so a call whose Message and Completion come
    # back in one poll (as they do from ASP.NET Core too) would see its Completion only a poll later. Send it
    # without waiting for the Completion; the Message comes first.
    client.connection.send("InvokeWithString", ["poll"])
    assert received.wait(TIMEOUT)
    client.stop()
    assert client.closed.wait(TIMEOUT)
