"""A Bot API stand-in: a real HTTP server on 127.0.0.1 that answers like Telegram.

It serves /bot<token>/<method> and /file/bot<token>/<path>, keeps the chats' messages, records
every call the bot made (uploaded files included, parsed from multipart) and lets a test inject
updates: text and commands, documents with bytes, photos, albums, button presses.

Strict where Telegram is: an edit that changes nothing, an edit of a message that is not there,
and a second (or late) answer to a button press are refused with Telegram's own descriptions.
It counts every request against Telegram's flood limits (over_limit) and, with enforce_limits,
answers an excess with 429 and retry_after as Telegram does.
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BOT_USER = {
    "id": 777000111,
    "is_bot": True,
    "first_name": "segbot",
    "username": "segbot_test_bot",
    "can_join_groups": False,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}
TEXT_FIELDS = {"text", "caption", "callback_query_id", "file_id", "parse_mode", "url", "message_text"}
FILE_FIELDS = ("document", "photo", "video", "audio")
# Telegram's own words for the refusals a bot meets every day
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)
EDIT_NOT_FOUND = "Bad Request: message to edit not found"
DELETE_NOT_FOUND = "Bad Request: message to delete not found"
QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"
QUERY_TTL_S = 15.0  # a button press must be answered within this (Telegram: a few seconds to ~15 s)


@dataclass(frozen=True)
class Limits:
    """Telegram's flood limits (core.telegram.org/bots/faq): about 30 messages/s in all, about one per
    second in a chat with short bursts allowed, 20 per minute in a group. They count what goes to a
    chat (requests with a chat_id: sends, edits, deletes), not button answers or getFile. A request
    is over when, for some earlier request of the same scope, more went out since than the scope
    allows: at most `burst + rate * elapsed` (a token bucket seen from the outside)."""

    overall: tuple[float, float] = (30.0, 30.0)  # (burst, per second)
    chat: tuple[float, float] = (3.0, 1.0)
    group: tuple[float, float] = (20.0, 20.0 / 60.0)


def _over(times: list[float], now: float, burst: float, rate: float, horizon: float) -> bool:
    """Whether one more request at `now` breaks the envelope (times: earlier requests, ascending)."""
    count = 1
    for then in reversed(times):
        if now - then > horizon:
            break
        count += 1
        if count > burst + rate * (now - then) + 1e-9:
            return True
    return False


def _bad(description: str) -> tuple[int, dict[str, Any]]:
    return 400, {"ok": False, "error_code": 400, "description": description}


def _markup(value: Any) -> Any:
    """A reply markup as Telegram keeps it: one without buttons is no markup."""
    if isinstance(value, str):
        value = json.loads(value) if value else None
    if isinstance(value, dict) and not any(value.get("inline_keyboard") or []):
        return None
    return value or None


@dataclass
class Call:
    """One request the bot made."""

    method: str
    params: dict[str, Any]
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # field -> (filename, bytes)
    at: float = field(default_factory=time.monotonic)
    result: Any = None
    status: int = 200  # the HTTP status of the answer (429: refused for the flood limits)

    @property
    def chat_id(self) -> int | None:
        value = self.params.get("chat_id")
        return int(value) if value is not None else None

    @property
    def text(self) -> str:
        return str(self.params.get("text") or self.params.get("caption") or "")


@dataclass
class User:
    id: int
    first_name: str = "Test"
    username: str | None = None
    language_code: str = "en"

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "is_bot": False,
            "first_name": self.first_name,
            "language_code": self.language_code,
        }
        if self.username:
            data["username"] = self.username
        return data


class BotApiStandIn:
    """Start with `.start()`; `base_url` / `base_file_url` go into the bot's settings."""

    def __init__(self, token: str = "123456:TEST-token_secret", host: str = "127.0.0.1") -> None:
        self.token = token
        self.host = host  # another address for a bot in another network namespace (tests/netns.py)
        self._mutex = threading.RLock()
        self._lock = threading.Condition(self._mutex)
        self._chat_waits: dict[int, threading.Condition] = {}  # wait_reply's: one call wakes its chat only
        self._updates: list[dict[str, Any]] = []
        self._next_update_id = 1
        self._message_ids = itertools.count(1000)
        self._file_ids = itertools.count(1)
        self.calls: list[Call] = []
        self.messages: dict[tuple[int, int], dict[str, Any]] = {}  # (chat, message_id) -> message
        self.files: dict[str, tuple[str, bytes]] = {}  # file_id -> (file_path, bytes)
        self.fail_next: dict[str, dict[str, Any]] = {}  # method -> error response, used once
        self.failing: dict[str, dict[str, Any]] = {}  # method -> error response, until removed
        self.queries: dict[str, float] = {}  # callback query id -> when pressed (unanswered ones)
        self.query_ttl_s = QUERY_TTL_S
        self.commands: list[dict[str, Any]] = []  # the default menu
        self.commands_by_lang: dict[str, list[dict[str, Any]]] = {}  # setMyCommands' language_code
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._by_chat: dict[int, list[int]] = {}  # chat -> its calls' indexes
        self.limits = Limits()
        self.enforce_limits = False  # True: a request over the limits gets 429 with retry_after
        self.over_limit: list[tuple[str, str, int | None]] = []  # (scope, method, chat) of each excess
        self._sent_at: dict[object, list[float]] = {}  # scope key -> times of accepted requests

    # Life cycle

    def start(self) -> BotApiStandIn:
        handler = type("Handler", (_Handler,), {"api": self})
        self._server = _Server((self.host, 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="botapi", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            self._lock.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://{self.host}:{self.port}/file/bot"

    # Injecting updates (what users do)

    def _push(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            update = {"update_id": self._next_update_id, kind: payload}
            self._next_update_id += 1
            self._updates.append(update)
            self._lock.notify_all()
        return update

    def _user_message(self, user: User, **content: Any) -> dict[str, Any]:
        message = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": {"id": user.id, "type": "private", "first_name": user.first_name},
            "from": user.as_dict(),
            **content,
        }
        with self._lock:
            self.messages[(user.id, message["message_id"])] = message
        return message

    def send_text(self, user: User, text: str) -> dict[str, Any]:
        content: dict[str, Any] = {"text": text}
        if text.startswith("/"):
            length = len(text.split()[0])
            content["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        return self._push("message", self._user_message(user, **content))

    def add_file(self, data: bytes, path_hint: str = "documents/file") -> dict[str, Any]:
        number = next(self._file_ids)
        file_id = f"FILE{number:06d}"
        with self._lock:
            self.files[file_id] = (f"{path_hint}_{number}", data)
        return {"file_id": file_id, "file_unique_id": f"U{number:06d}", "file_size": len(data)}

    def send_document(
        self,
        user: User,
        filename: str,
        data: bytes,
        *,
        caption: str | None = None,
        mime_type: str = "application/octet-stream",
        media_group_id: str | None = None,
        file_size: int | None = None,
    ) -> dict[str, Any]:
        doc = {**self.add_file(data, "documents/file"), "file_name": filename, "mime_type": mime_type}
        if file_size is not None:
            doc["file_size"] = file_size
        content: dict[str, Any] = {"document": doc}
        if caption:
            content["caption"] = caption
        if media_group_id:
            content["media_group_id"] = media_group_id
        return self._push("message", self._user_message(user, **content))

    def send_photo(
        self,
        user: User,
        data: bytes,
        *,
        width: int = 64,
        height: int = 64,
        caption: str | None = None,
        media_group_id: str | None = None,
    ) -> dict[str, Any]:
        small = {**self.add_file(data[:100], "photos/thumb"), "width": 32, "height": 32}
        big = {**self.add_file(data, "photos/file"), "width": width, "height": height}
        content: dict[str, Any] = {"photo": [small, big]}
        if caption:
            content["caption"] = caption
        if media_group_id:
            content["media_group_id"] = media_group_id
        return self._push("message", self._user_message(user, **content))

    def press(self, user: User, message: dict[str, Any], data: str) -> dict[str, Any]:
        query = {
            "id": str(next(self._message_ids)),
            "from": user.as_dict(),
            "chat_instance": str(user.id),
            "message": message,
            "data": data,
        }
        with self._lock:
            self.queries[query["id"]] = time.monotonic()
        return self._push("callback_query", query)

    def expire(self, update: dict[str, Any]) -> None:
        """Let the press `update` time out: answering it now fails as on Telegram."""
        with self._lock:
            self.queries.pop(update["callback_query"]["id"], None)

    # Looking at what the bot did

    def answered(self, update: dict[str, Any]) -> bool:
        """Whether the bot answered the button press `update` (press's return value) successfully."""
        return self.answers(update) >= 1

    def wait_answered(self, update: dict[str, Any], timeout: float = 10.0) -> bool:
        """Wait for the answer to the press `update` (the bot answers after acting on it)."""
        return bool(self.wait_for(lambda _calls: self.answered(update), timeout, what="the answer"))

    def answers(self, update: dict[str, Any]) -> int:
        """How many answers to the press `update` Telegram accepted (it accepts at most one)."""
        query_id = update["callback_query"]["id"]
        with self._lock:
            return sum(
                c.method == "answerCallbackQuery"
                and str(c.params.get("callback_query_id")) == query_id
                and c.result is True
                for c in self.calls
            )

    def answer_text(self, update: dict[str, Any], timeout: float = 10.0) -> str:
        """The text of the accepted answer to the press `update` (a notice over the chat; "" when
        the answer had none), once it comes."""
        query_id = update["callback_query"]["id"]

        def accepted(calls: list[Call]) -> Call | None:
            return next(
                (
                    c
                    for c in calls
                    if c.method == "answerCallbackQuery"
                    and str(c.params.get("callback_query_id")) == query_id
                    and c.result is True
                ),
                None,
            )

        return str(self.wait_for(accepted, timeout, what="the answer").params.get("text") or "")

    def calls_to(self, chat_id: int, methods: tuple[str, ...] | None = None) -> list[Call]:
        with self._lock:
            return [
                c for c in self.calls if c.chat_id == chat_id and (methods is None or c.method in methods)
            ]

    def wait_for(self, predicate, timeout: float = 10.0, what: str = "a call"):
        """Wait until predicate(calls) returns something truthy; returns it."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = predicate(list(self.calls))
                if found:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    summary = [(c.method, c.chat_id, c.text[:60]) for c in self.calls[-15:]]
                    raise AssertionError(f"timed out waiting for {what}; last calls: {summary}")
                self._lock.wait(min(left, 0.2))

    def wait_reply(
        self,
        chat_id: int,
        after: int,
        contains: str | None = None,
        methods: tuple[str, ...] = (
            "sendMessage",
            "sendDocument",
            "sendPhoto",
            "editMessageText",
            "sendMediaGroup",
        ),
        timeout: float = 10.0,
        skip: tuple[str, ...] = (),
    ) -> Call:
        """The first call to chat_id among calls[after:] (optionally containing a text, and not
        starting with one of `skip`, e.g. an acknowledgement that is edited later)."""

        def matches(call: Call) -> bool:
            return (
                call.status != 429  # the user never saw it
                and call.method in methods
                and (contains is None or contains.lower() in call.text.lower())
                and not (skip and call.text.startswith(skip))
            )

        deadline = time.monotonic() + timeout
        with self._lock:
            wake = self._chat_waits.setdefault(chat_id, threading.Condition(self._mutex))
            seen = 0  # how many of the chat's calls are already looked at
            while True:
                mine = self._by_chat.get(chat_id, [])
                for index in mine[seen:]:
                    if index >= after and matches(self.calls[index]):
                        return self.calls[index]
                seen = len(mine)
                left = deadline - time.monotonic()
                if left <= 0:
                    summary = [(c.method, c.chat_id, c.text[:60]) for c in self.calls[-15:]]
                    raise AssertionError(
                        f"timed out waiting for a reply to {chat_id} containing {contains!r}; "
                        f"last calls: {summary}"
                    )
                wake.wait(min(left, 0.2))

    def mark(self) -> int:
        with self._lock:
            return len(self.calls)

    def message(self, chat_id: int, message_id: int) -> dict[str, Any]:
        with self._lock:
            return dict(self.messages[(chat_id, message_id)])

    # Serving

    def _record(self, call: Call) -> None:
        with self._lock:
            if call.chat_id is not None:
                self._by_chat.setdefault(call.chat_id, []).append(len(self.calls))
                if call.chat_id in self._chat_waits:
                    self._chat_waits[call.chat_id].notify_all()
            self.calls.append(call)
            self._lock.notify_all()

    def _limited(self, method: str, call: Call) -> float | None:
        """Count the request against the flood limits; the seconds to wait when it is over them (and
        limits are enforced), else None. Refused requests do not count, as on Telegram."""
        chat = call.chat_id
        if chat is None or method == "getUpdates":
            return None
        now = time.monotonic()
        group = chat < 0  # groups and channels have negative ids
        scopes: list[tuple[object, str, tuple[float, float]]] = [
            ("all", "overall", self.limits.overall),
            ((chat,), "group" if group else "chat", self.limits.group if group else self.limits.chat),
        ]
        with self._lock:
            over = [(key, name, limit) for key, name, limit in scopes
                    if _over(self._sent_at.get(key, []), now, limit[0], limit[1], 120.0)]
            for _key, name, _limit in over:
                self.over_limit.append((name, method, chat))
            if over and self.enforce_limits:
                return max(1.0, max(1.0 / limit[1] for _k, _n, limit in over))
            for key, _name, _limit in scopes:
                times = self._sent_at.setdefault(key, [])
                times.append(now)
                if len(times) > 200:
                    del times[:100]
        return None

    def requests_by_kind(self) -> dict[str, int]:
        """How many requests of each method the bot made (refusals included)."""
        counts: dict[str, int] = {}
        with self._lock:
            for call in self.calls:
                counts[call.method] = counts.get(call.method, 0) + 1
        return counts

    def _new_message(self, chat_id: int, **content: Any) -> dict[str, Any]:
        message = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private"},
            "from": BOT_USER,
            **content,
        }
        with self._lock:
            self.messages[(chat_id, message["message_id"])] = message
        return message

    def _sent_file(self, call: Call, name: str, kind: str) -> dict[str, Any]:
        ref = call.params.get(name)
        filename, data = "file", b""
        if name in call.files:
            filename, data = call.files[name]
        elif isinstance(ref, str) and ref.startswith("attach://") and ref[9:] in call.files:
            filename, data = call.files[ref[9:]]
        elif isinstance(ref, str) and ref in self.files:
            data = self.files[ref][1]
        meta = self.add_file(data, f"sent/{kind}")
        if kind == "photo":
            return {"photo": [{**meta, "width": 100, "height": 100}]}
        return {kind: {**meta, "file_name": filename, "mime_type": "application/octet-stream"}}

    def handle(self, method: str, call: Call) -> tuple[int, dict[str, Any]]:
        with self._lock:
            failure = self.fail_next.pop(method, None) or self.failing.get(method)
        if failure is not None:
            return int(failure.get("error_code", 400)), failure
        wait = self._limited(method, call)
        if wait is not None:
            return 429, {"ok": False, "error_code": 429, "parameters": {"retry_after": int(wait)},
                         "description": f"Too Many Requests: retry after {int(wait)}"}
        p = call.params
        if method == "getMe":
            return 200, {"ok": True, "result": BOT_USER}
        if method in (
            "deleteWebhook",
            "setMyCommands",
            "deleteMyCommands",
            "setChatMenuButton",
            "sendChatAction",
            "close",
            "logOut",
        ):
            if method == "setMyCommands":
                commands = p.get("commands") or []
                if isinstance(commands, str):  # sent form-encoded
                    commands = json.loads(commands)
                if p.get("language_code"):
                    self.commands_by_lang[str(p["language_code"])] = list(commands)
                else:
                    self.commands = list(commands)
            return 200, {"ok": True, "result": True}
        if method == "getUpdates":
            return 200, {"ok": True, "result": self._get_updates(p)}
        if method == "answerCallbackQuery":
            return self._answer(str(p.get("callback_query_id")))
        chat_id = call.chat_id
        if method == "sendMessage":
            extra = {"reply_markup": p["reply_markup"]} if p.get("reply_markup") else {}
            return 200, {
                "ok": True,
                "result": self._new_message(chat_id, text=str(p.get("text", "")), **extra),
            }
        if method in ("sendDocument", "sendPhoto"):
            kind = "document" if method == "sendDocument" else "photo"
            content = self._sent_file(call, kind, kind)
            if p.get("caption"):
                content["caption"] = str(p["caption"])
            return 200, {"ok": True, "result": self._new_message(chat_id, **content)}
        if method == "sendMediaGroup":
            group = str(next(self._message_ids))
            results = []
            for item in p.get("media") or []:
                kind = item.get("type", "document")
                fake = Call(method, {kind: item.get("media")}, call.files)
                content = self._sent_file(fake, kind, kind)
                if item.get("caption"):
                    content["caption"] = item["caption"]
                results.append(self._new_message(chat_id, media_group_id=group, **content))
            return 200, {"ok": True, "result": results}
        if method in ("editMessageText", "editMessageReplyMarkup"):
            return self._edit(method, (chat_id, int(p.get("message_id", 0))), p)
        if method == "deleteMessage":
            with self._lock:
                if self.messages.pop((chat_id, int(p.get("message_id", 0))), None) is None:
                    return _bad(DELETE_NOT_FOUND)
            return 200, {"ok": True, "result": True}
        if method == "getFile":
            file_id = str(p.get("file_id"))
            with self._lock:
                entry = self.files.get(file_id)
            if entry is None:
                return 400, {"ok": False, "error_code": 400, "description": "Bad Request: invalid file_id"}
            return 200, {
                "ok": True,
                "result": {
                    "file_id": file_id,
                    "file_unique_id": "U" + file_id,
                    "file_size": len(entry[1]),
                    "file_path": entry[0],
                },
            }
        return 404, {"ok": False, "error_code": 404, "description": "Not Found: method not found"}

    def _answer(self, query_id: str) -> tuple[int, dict[str, Any]]:
        """One answer per press, within query_ttl_s of it; after that Telegram refuses."""
        with self._lock:
            pressed = self.queries.pop(query_id, None)
        if pressed is None or time.monotonic() - pressed > self.query_ttl_s:
            return _bad(QUERY_TOO_OLD)
        return 200, {"ok": True, "result": True}

    def _edit(
        self, method: str, key: tuple[int | None, int], p: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        """editMessageText replaces text and keyboard (none given: the keyboard goes); an edit that
        changes nothing, or of a message that is not there, is refused."""
        new_markup = _markup(p.get("reply_markup"))
        with self._lock:
            message = self.messages.get(key)
            if message is None:
                return _bad(EDIT_NOT_FOUND)
            text = str(p.get("text")) if method == "editMessageText" else message.get("text")
            if text == message.get("text") and new_markup == _markup(message.get("reply_markup")):
                return _bad(NOT_MODIFIED)
            if method == "editMessageText":
                message["text"] = text
                message["edit_date"] = int(time.time())
            if new_markup is None:
                message.pop("reply_markup", None)
            else:
                message["reply_markup"] = new_markup
            return 200, {"ok": True, "result": dict(message)}

    def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        timeout = float(params.get("timeout") or 0)
        limit = int(params.get("limit") or 100)
        deadline = time.monotonic() + timeout
        with self._lock:
            if offset:
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
            while True:
                ready = [u for u in self._updates if u["update_id"] >= offset][:limit]
                left = deadline - time.monotonic()
                if ready or left <= 0 or self._server is None:
                    return ready
                self._lock.wait(min(left, 0.5))

    def file_bytes(self, path: str) -> bytes | None:
        with self._lock:
            for file_path, data in self.files.values():
                if file_path == path:
                    return data
        return None


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # a bot sends dozens of requests at once (the default backlog is 5)


class _Handler(BaseHTTPRequestHandler):
    api: BotApiStandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _reply(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the bot hung up (shutdown while long polling)

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        prefix = f"/file/bot{self.api.token}/"
        path = urllib.parse.unquote(self.path)  # httpx sends the token's ':' as %3A
        if path.startswith(prefix):
            data = self.api.file_bytes(path[len(prefix) :])
            if data is not None:
                self._reply(200, data, "application/octet-stream")
                return
        if path.startswith(f"/bot{self.api.token}/"):
            self._api(b"", "")
            return
        self._reply(404, b'{"ok":false,"error_code":404,"description":"Not Found"}')

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self._api(body, self.headers.get("Content-Type") or "")

    def _api(self, body: bytes, content_type: str) -> None:
        prefix = f"/bot{self.api.token}/"
        path = urllib.parse.unquote(self.path)
        if not path.startswith(prefix):
            self._reply(401, b'{"ok":false,"error_code":401,"description":"Unauthorized"}')
            return
        method = path[len(prefix) :].split("?")[0]
        params, files = _parse_body(body, content_type)
        call = Call(method, params, files)
        status, payload = self.api.handle(method, call)
        call.result, call.status = payload.get("result"), status
        if method != "getUpdates":
            self.api._record(call)
        self._reply(status, json.dumps(payload).encode())


def _value(name: str, raw: str) -> Any:
    if name in TEXT_FIELDS:
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _parse_body(body: bytes, content_type: str) -> tuple[dict[str, Any], dict[str, tuple[str, bytes]]]:
    params: dict[str, Any] = {}
    files: dict[str, tuple[str, bytes]] = {}
    if not body:
        return params, files
    if content_type.startswith("application/json"):
        return json.loads(body), files
    if content_type.startswith("multipart/form-data"):
        head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            filename = part.get_filename()
            data = part.get_payload(decode=True) or b""
            if filename is not None:
                files[name] = (filename, data)
            else:
                params[name] = _value(name, data.decode("utf-8"))
        return params, files
    for name, raw in urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True):
        params[name] = _value(name, raw)
    return params, files
