"""A fake Telegram Bot API server of our own, over real HTTP, for the bot's tests and benchmarks.

Telegram is the one outside service MTA talks to; tests point python-telegram-bot at this server
(``ApplicationBuilder().base_url(api.base_url)``) and act as the users on the other side: push
messages, locations and button presses (delivered through ``getUpdates`` long polling, or POSTed to
the bot's webhook once ``setWebhook`` was called), and read back every call the bot made.

It follows the real Bot API's shapes: ``{"ok": true, "result": ...}`` and errors
``{"ok": false, "error_code", "description", "parameters": {"retry_after"}}``, form-encoded,
JSON and multipart requests, message ids counted per chat, "message is not modified" and "message to
edit not found" on edits, 64-byte callback data, 4096-character texts, HTML parse-mode checks, and
Telegram's flood limit (about 30 messages a second overall; 429 with ``retry_after`` beyond it).
Faults are injected per method: 429, 5xx, slow answers (timeouts) and users who blocked the bot.

The server runs uvicorn in a background thread with its own event loop; the test-facing methods
are thread-safe and synchronous.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import html.parser
import itertools
import json
import random
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

Record = dict[str, Any]

BOT_USER: dict[str, Any] = {
    "id": 123456,
    "is_bot": True,
    "first_name": "MTA Test Bot",
    "username": "mta_test_bot",
    "can_join_groups": True,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
    "can_connect_to_business": False,
    "has_main_web_app": False,
}

MAX_TEXT_CHARS = 4096
MAX_CALLBACK_DATA_BYTES = 64
JSON_FIELDS = frozenset(
    {
        "reply_markup",
        "entities",
        "caption_entities",
        "allowed_updates",
        "commands",
        "scope",
        "link_preview_options",
        "reply_parameters",
    }
)
INT_FIELDS = frozenset(
    {"chat_id", "message_id", "offset", "limit", "timeout", "message_thread_id", "cache_time"}
)
BOOL_FIELDS = frozenset(
    {
        "disable_notification",
        "protect_content",
        "show_alert",
        "drop_pending_updates",
        "disable_web_page_preview",
    }
)
SENDING_METHODS = frozenset(
    {"sendMessage", "sendDocument", "sendPhoto", "editMessageText", "editMessageReplyMarkup"}
)
"""Calls that count against the flood limit."""
QUIET_METHODS = frozenset({"getUpdates"})
"""Calls not recorded (long polling would flood the record)."""
HTML_TAGS = frozenset(
    {
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "a",
        "code",
        "pre",
        "span",
        "tg-spoiler",
        "tg-emoji",
        "blockquote",
    }
)


class _ApiError(Exception):
    def __init__(self, status: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


@dataclass
class Fault:
    """One injected misbehaviour of one method (``"*"`` for all)."""

    method: str
    status: int
    retry_after: int | None = None
    times: int | None = None
    """Answer this many calls, then stop (None: until cleared)."""
    ratio: float | None = None
    """Answer this share of calls (None: every call)."""
    chat_id: int | None = None
    delay_s: float | None = None
    """Wait this long before answering (a client with a shorter timeout sees a timeout)."""
    rng: random.Random = field(default_factory=lambda: random.Random(5))

    def matches(self, method: str, chat_id: int | None) -> bool:
        if self.method not in ("*", method):
            return False
        if self.chat_id is not None and self.chat_id != chat_id:
            return False
        if self.times is not None and self.times <= 0:
            return False
        return self.ratio is None or self.rng.random() < self.ratio


class _HtmlChecker(html.parser.HTMLParser):
    """Rejects what Telegram's HTML parse mode rejects: unknown or unbalanced tags."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.error: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in HTML_TAGS:
            self.error = self.error or f'Unsupported start tag "{tag}"'
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.error = self.error or f'Unexpected end tag "{tag}"'
        else:
            self.stack.pop()


_TAG = re.compile(r"</?([a-zA-Z][a-zA-Z-]*)(\s[^<>]*)?>")
_ENTITY = re.compile(r"&(#\d+|#x[0-9a-fA-F]+|[a-zA-Z]+);")


def check_html(text: str) -> str | None:
    """Telegram's "can't parse entities" reason for ``text`` in HTML mode, or None when it parses."""
    bare = _ENTITY.sub("", _TAG.sub("", text))
    if "<" in bare or ">" in bare:
        return "Unexpected character; use &lt; and &gt;"
    if "&" in bare:
        return "Unexpected end of name token; use &amp;"
    checker = _HtmlChecker()
    checker.feed(text)
    checker.close()
    if checker.error:
        return checker.error
    if checker.stack:
        return f'Can\'t find end tag corresponding to start tag "{checker.stack[-1]}"'
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _coerce(key: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if key in JSON_FIELDS:
        try:
            return json.loads(value)
        except ValueError as exc:
            raise _ApiError(400, f"Bad Request: can't parse {key} JSON object") from exc
    if key in INT_FIELDS:
        try:
            return int(value)
        except ValueError:
            if key == "chat_id" and value.startswith("@"):
                return value
            raise _ApiError(400, f"Bad Request: invalid {key} specified") from None
    if key in BOOL_FIELDS:
        return value.lower() in ("true", "1")
    return value


def _parse_multipart(content_type: str, body: bytes) -> dict[str, Any]:
    """Multipart form data through the stdlib e-mail parser: fields as str, files as dicts."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        content = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename()
        if filename is not None:
            fields[name] = {"file_name": filename, "content": content, "mime_type": part.get_content_type()}
        else:
            fields[name] = content.decode("utf-8")
    return fields


class FakeBotApi:
    """The fake server; use as ``with FakeBotApi() as api:``.

    ``flood_limit_per_s`` is Telegram's overall limit for messages (a token bucket of that size,
    refilled at that rate; None turns it off); ``group_limit_per_min`` limits each group chat
    (negative chat id).
    """

    def __init__(
        self,
        token: str = "123456:TEST",
        *,
        flood_limit_per_s: float | None = 30.0,
        group_limit_per_min: int | None = 20,
        retry_after_s: int = 1,
    ) -> None:
        self.token = token
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/bot"
        self.base_file_url = f"http://127.0.0.1:{self.port}/file/bot"
        self.flood_limit_per_s = flood_limit_per_s
        self.group_limit_per_min = group_limit_per_min
        self.retry_after_s = retry_after_s
        self._lock = threading.Condition()
        self._records: list[Record] = []
        self._attempts: list[Record] = []
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._callback_ids = itertools.count(1)
        self._message_ids: dict[int, itertools.count[int]] = {}
        self._messages: dict[tuple[int, int], dict[str, Any]] = {}
        self._open_callbacks: set[str] = set()
        self._faults: list[Fault] = []
        self._blocked: set[int] = set()
        self._bucket_tokens = flood_limit_per_s or 0.0
        self._bucket_at = time.monotonic()
        self._group_sends: dict[int, list[float]] = {}
        self._closing = False
        self._inflight: set[asyncio.Future[tuple[dict[str, Any], int]]] = set()
        self._answering: Counter[str] = Counter()
        self.webhook: dict[str, Any] | None = None
        self.webhook_deliveries: list[tuple[int, int]] = []
        """(update_id, HTTP status) of each update POSTed to the bot's webhook."""
        self.commands: list[dict[str, Any]] = []
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FakeBotApi:
        app = Starlette(
            routes=[
                Route("/bot{token}/{method}", self._endpoint, methods=["GET", "POST"]),
                Route("/file/bot{token}/{path:path}", self._file, methods=["GET"]),
            ]
        )
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="fake-bot-api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the fake Bot API did not start on port {self.port}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._closing = True
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> FakeBotApi:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ acting as users
    def _user(self, user_id: int, first_name: str, language_code: str) -> dict[str, Any]:
        return {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": language_code}

    def _chat(self, chat_id: int, first_name: str = "Test") -> dict[str, Any]:
        if chat_id < 0:
            return {"id": chat_id, "type": "group", "title": "Test group"}
        return {"id": chat_id, "type": "private", "first_name": first_name}

    def _next_message_id(self, chat_id: int) -> int:
        return next(self._message_ids.setdefault(chat_id, itertools.count(1)))

    def _push(self, kind: str, payload: dict[str, Any]) -> int:
        with self._lock:
            update_id = next(self._update_ids)
            update = {"update_id": update_id, kind: payload}
            webhook = self.webhook
            if webhook is None:
                self._updates.append(update)
                self._lock.notify_all()
        if webhook is not None:
            headers = {}
            if webhook.get("secret_token"):
                headers["X-Telegram-Bot-Api-Secret-Token"] = webhook["secret_token"]
            try:
                response = httpx.post(webhook["url"], json=update, headers=headers, timeout=10)
                status = response.status_code
            except httpx.HTTPError:
                status = 0
            with self._lock:
                self.webhook_deliveries.append((update_id, status))
        return update_id

    def _user_message(
        self, chat_id: int, user_id: int | None, language_code: str, first_name: str, **content: Any
    ) -> dict[str, Any]:
        with self._lock:
            message_id = self._next_message_id(chat_id)
            message = {
                "message_id": message_id,
                "from": self._user(user_id if user_id is not None else chat_id, first_name, language_code),
                "chat": self._chat(chat_id, first_name),
                "date": int(time.time()),
                **content,
            }
            self._messages[(chat_id, message_id)] = {**message, "from_bot": False}
        return message

    def push_message(
        self,
        chat_id: int,
        text: str,
        *,
        user_id: int | None = None,
        language_code: str = "en",
        first_name: str = "Test",
        reply_to: int | None = None,
    ) -> int:
        """A user writes ``text``; a leading ``/command`` gets its bot_command entity; ``reply_to``
        makes it a reply to that message of the chat.

        Returns the update id."""
        content: dict[str, Any] = {"text": text}
        if reply_to is not None:
            with self._lock:
                replied = self._messages.get((chat_id, reply_to))
            if replied is None:
                raise ValueError(f"no message {reply_to} in chat {chat_id} to reply to")
            content["reply_to_message"] = {k: v for k, v in replied.items() if k != "from_bot"}
        if text.startswith("/"):
            command = text.split(maxsplit=1)[0]
            content["entities"] = [
                {"type": "bot_command", "offset": 0, "length": len(command.encode("utf-16-le")) // 2}
            ]
        message = self._user_message(chat_id, user_id, language_code, first_name, **content)
        return self._push("message", message)

    def push_location(
        self,
        chat_id: int,
        latitude: float,
        longitude: float,
        *,
        user_id: int | None = None,
        language_code: str = "en",
        first_name: str = "Test",
    ) -> int:
        """A user shares a location. Returns the update id."""
        message = self._user_message(
            chat_id,
            user_id,
            language_code,
            first_name,
            location={"latitude": latitude, "longitude": longitude},
        )
        return self._push("message", message)

    def push_update(self, update: dict[str, Any]) -> int:
        """Any raw update (its update_id is assigned here); for malformed-input tests."""
        kinds = [k for k in update if k != "update_id"]
        if len(kinds) != 1:
            raise ValueError("an update holds exactly one kind besides update_id")
        return self._push(kinds[0], update[kinds[0]])

    def push_callback(
        self,
        chat_id: int,
        data: str,
        *,
        message_id: int,
        user_id: int | None = None,
        language_code: str = "en",
        first_name: str = "Test",
    ) -> int:
        """A user presses an inline button carrying ``data`` under message ``message_id``."""
        with self._lock:
            stored = self._messages.get((chat_id, message_id))
            if stored is not None:
                message = {k: v for k, v in stored.items() if k != "from_bot"}
            else:
                message = {
                    "message_id": message_id,
                    "from": BOT_USER,
                    "chat": self._chat(chat_id, first_name),
                    "date": int(time.time()),
                    "text": "",
                }
            query_id = str(next(self._callback_ids))
            self._open_callbacks.add(query_id)
        query = {
            "id": query_id,
            "from": self._user(user_id if user_id is not None else chat_id, first_name, language_code),
            "message": message,
            "chat_instance": str(chat_id),
            "data": data,
        }
        return self._push("callback_query", query)

    def press(self, chat_id: int, button_text: str, *, message_id: int | None = None, **kw: Any) -> int:
        """Press the inline button labelled ``button_text`` (substring) on the bot's latest message
        showing it (or on ``message_id``)."""
        with self._lock:
            candidates = sorted(
                (m for (c, _), m in self._messages.items() if c == chat_id and m.get("from_bot")),
                key=lambda m: m["message_id"],
                reverse=True,
            )
        for message in candidates:
            if message_id is not None and message["message_id"] != message_id:
                continue
            for row in (message.get("reply_markup") or {}).get("inline_keyboard", []):
                for button in row:
                    if button_text in button.get("text", "") and "callback_data" in button:
                        return self.push_callback(
                            chat_id, button["callback_data"], message_id=message["message_id"], **kw
                        )
        raise AssertionError(f"no button {button_text!r} in chat {chat_id}; bot messages: {candidates}")

    # ------------------------------------------------------------------ reading what the bot did
    def sent(self, chat_id: int | None = None, method: str | None = None) -> list[Record]:
        """Accepted calls, oldest first: ``{"method", "params", "chat_id", "message_id", "at"}``."""
        with self._lock:
            return [
                r
                for r in self._records
                if (chat_id is None or r["chat_id"] == chat_id) and (method is None or r["method"] == method)
            ]

    def attempts(self, method: str | None = None) -> list[Record]:
        """Every call, accepted or not, with ``"status"`` (the HTTP status answered)."""
        with self._lock:
            return [r for r in self._attempts if method is None or r["method"] == method]

    def in_flight(self, method: str) -> int:
        """Calls of ``method`` that arrived and are not answered yet (held by a delay fault)."""
        with self._lock:
            return self._answering[method]

    def texts(self, chat_id: int) -> list[str]:
        """Texts of the messages sent to ``chat_id`` (sendMessage only), oldest first."""
        return [r["params"].get("text", "") for r in self.sent(chat_id, "sendMessage")]

    def message(self, chat_id: int, message_id: int) -> dict[str, Any]:
        """A message as the user sees it now (after edits): text, reply_markup, …"""
        with self._lock:
            return dict(self._messages[(chat_id, message_id)])

    def mark(self) -> int:
        """A position in the record; pass it as ``since`` to wait only for later calls."""
        with self._lock:
            return len(self._records)

    def wait_for(
        self, predicate: Callable[[Record], bool], timeout_s: float = 10.0, *, since: int = 0
    ) -> Record:
        """The first accepted call (from ``since`` on) matching ``predicate``, waiting for it."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while True:
                for record in self._records[since:]:
                    if predicate(record):
                        return record
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    calls = "\n".join(
                        f"  {r['method']} chat={r['chat_id']} {str(r['params'].get('text', ''))[:120]!r}"
                        for r in self._records[since:]
                    )
                    raise AssertionError(f"no matching call within {timeout_s}s; recorded calls:\n{calls}")
                self._lock.wait(remaining)

    def wait_for_text(
        self, chat_id: int, contains: str, timeout_s: float = 10.0, *, since: int = 0
    ) -> Record:
        """The first message text (sent or edited) or caption to ``chat_id`` containing ``contains``."""

        def match(record: Record) -> bool:
            text = record["params"].get("text") or record["params"].get("caption") or ""
            return record["chat_id"] == chat_id and contains in str(text)

        return self.wait_for(match, timeout_s, since=since)

    def wait_until(self, condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
        """Wait until ``condition()`` (called under no lock) holds after some recorded call."""
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"condition not met within {timeout_s}s; {len(self.sent())} calls recorded"
                )
            with self._lock:
                self._lock.wait(0.1)

    def pending_updates(self) -> int:
        """Updates pushed but not yet confirmed by the bot (through a later getUpdates offset)."""
        with self._lock:
            return len(self._updates)

    # ------------------------------------------------------------------ faults
    def fail(
        self,
        method: str,
        *,
        status: int,
        retry_after: int | None = None,
        times: int | None = None,
        ratio: float | None = None,
        chat_id: int | None = None,
        delay_s: float | None = None,
        seed: int = 5,
    ) -> None:
        """Answer ``method`` ("*": any) with ``status`` (429 gets ``retry_after``); ``delay_s`` delays
        the answer. ``status=200`` with ``delay_s`` performs the call after the delay (slow, not failed)."""
        with self._lock:
            self._faults.append(
                Fault(method, status, retry_after, times, ratio, chat_id, delay_s, random.Random(seed))
            )

    def block(self, chat_id: int) -> None:
        """The user of ``chat_id`` blocked the bot: every call to that chat gets 403."""
        with self._lock:
            self._blocked.add(chat_id)

    def unblock(self, chat_id: int) -> None:
        with self._lock:
            self._blocked.discard(chat_id)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._blocked.clear()

    # ------------------------------------------------------------------ HTTP side
    async def _file(self, request: Request) -> JSONResponse:
        return JSONResponse({"ok": False, "error_code": 404, "description": "Not Found"}, status_code=404)

    async def _read_params(self, request: Request) -> dict[str, Any]:
        content_type = request.headers.get("content-type", "")
        raw: dict[str, Any] = dict(request.query_params)
        body = await request.body()
        if content_type.startswith("application/json") and body:
            try:
                loaded = json.loads(body)
            except ValueError as exc:
                raise _ApiError(400, "Bad Request: invalid JSON body") from exc
            if not isinstance(loaded, dict):
                raise _ApiError(400, "Bad Request: invalid JSON body")
            raw.update(loaded)
        elif content_type.startswith("multipart/form-data"):
            raw.update(_parse_multipart(content_type, body))
        elif body:
            from urllib.parse import parse_qsl

            raw.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        return {key: _coerce(key, value) for key, value in raw.items()}

    def _take_fault(self, method: str, chat_id: int | None) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, chat_id):
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None

    def _flood_check(self, method: str, chat_id: int | None) -> None:
        if method not in SENDING_METHODS:
            return
        now = time.monotonic()
        with self._lock:
            if self.flood_limit_per_s:
                self._bucket_tokens = min(
                    self.flood_limit_per_s,
                    self._bucket_tokens + (now - self._bucket_at) * self.flood_limit_per_s,
                )
                self._bucket_at = now
                if self._bucket_tokens < 1:
                    raise _flood(self.retry_after_s)
                self._bucket_tokens -= 1
            if self.group_limit_per_min and isinstance(chat_id, int) and chat_id < 0:
                recent = [t for t in self._group_sends.get(chat_id, []) if now - t < 60]
                if len(recent) >= self.group_limit_per_min:
                    raise _flood(max(1, int(60 - (now - recent[0])) + 1))
                recent.append(now)
                self._group_sends[chat_id] = recent

    async def _endpoint(self, request: Request) -> JSONResponse:
        method = request.path_params["method"]
        if request.path_params["token"] != self.token:
            return JSONResponse(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status_code=401
            )
        try:
            params = await self._read_params(request)
        except _ApiError as error:
            return JSONResponse(
                {"ok": False, "error_code": error.status, "description": error.description},
                status_code=error.status,
            )
        # Like Telegram, a request that arrived is carried out even if the client hangs up meanwhile.
        task = asyncio.ensure_future(self._answer(method, params))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        body, status = await asyncio.shield(task)
        return JSONResponse(body, status_code=status)

    async def _answer(self, method: str, params: dict[str, Any]) -> tuple[dict[str, Any], int]:
        with self._lock:
            self._answering[method] += 1
        try:
            return await self._answer_call(method, params)
        finally:
            with self._lock:
                self._answering[method] -= 1

    async def _answer_call(self, method: str, params: dict[str, Any]) -> tuple[dict[str, Any], int]:
        status = 200
        chat_id: int | None = None
        try:
            raw_chat = params.get("chat_id")
            chat_id = raw_chat if isinstance(raw_chat, int) else None
            fault = self._take_fault(method, chat_id)
            if fault is not None and fault.delay_s:
                await asyncio.sleep(fault.delay_s)
            if fault is not None and fault.status != 200:
                raise _fault_error(fault)
            if chat_id is not None and chat_id in self._blocked:
                raise _ApiError(403, "Forbidden: bot was blocked by the user")
            self._flood_check(method, chat_id)
            if method == "getUpdates":
                result: Any = await self._get_updates(params)
                message_id = None
            else:
                result, message_id = self._perform(method, params, chat_id)
            body: dict[str, Any] = {"ok": True, "result": result}
        except _ApiError as error:
            status = error.status
            body = {"ok": False, "error_code": error.status, "description": error.description}
            if error.parameters:
                body["parameters"] = error.parameters
            message_id = None
        with self._lock:
            record = {
                "method": method,
                "params": params,
                "chat_id": chat_id,
                "message_id": message_id,
                "at": time.time(),
            }
            self._attempts.append({**record, "status": status})
            if status == 200 and method not in QUIET_METHODS:
                self._records.append(record)
            self._lock.notify_all()
        return body, status

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        if self.webhook is not None:
            raise _ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active;"
                " use deleteWebhook to delete the webhook first",
            )
        offset = int(params.get("offset") or 0)
        limit = int(params.get("limit") or 100)
        timeout_s = float(params.get("timeout") or 0)
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                if offset:
                    self._updates = [u for u in self._updates if u["update_id"] >= offset]
                ready = self._updates[:limit]
            if ready or time.monotonic() >= deadline or self._closing:
                return ready
            await asyncio.sleep(0.02)

    def _bot_message(self, chat_id: int, **content: Any) -> dict[str, Any]:
        message_id = self._next_message_id(chat_id)
        message = {
            "message_id": message_id,
            "from": BOT_USER,
            "chat": self._chat(chat_id),
            "date": int(time.time()),
        }
        message.update({k: v for k, v in content.items() if v is not None})
        self._messages[(chat_id, message_id)] = {**message, "from_bot": True}
        return message

    def _require_chat(self, params: dict[str, Any], chat_id: int | None) -> int:
        if chat_id is None:
            if "chat_id" in params:
                raise _ApiError(400, "Bad Request: chat not found")
            raise _ApiError(400, "Bad Request: chat_id is empty")
        return chat_id

    def _check_markup(self, markup: Any) -> Any:
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise _ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
        for row in markup.get("inline_keyboard", []):
            for button in row:
                data = button.get("callback_data")
                if data is not None and not (1 <= len(str(data).encode()) <= MAX_CALLBACK_DATA_BYTES):
                    raise _ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
                if not button.get("text"):
                    raise _ApiError(400, "Bad Request: text buttons are unallowed in the inline keyboard")
        return markup

    def _check_text(self, params: dict[str, Any], key: str = "text", required: bool = True) -> str | None:
        text = params.get(key)
        if text is None or text == "":
            if required:
                raise _ApiError(400, "Bad Request: message text is empty")
            return None
        text = str(text)
        limit = MAX_TEXT_CHARS if key == "text" else 1024
        if len(text) > limit:
            raise _ApiError(
                400,
                "Bad Request: message is too long"
                if key == "text"
                else "Bad Request: message caption is too long",
            )
        if str(params.get("parse_mode", "")).upper() == "HTML":
            reason = check_html(text)
            if reason:
                raise _ApiError(400, f"Bad Request: can't parse entities: {reason}")
        return text

    def _perform(self, method: str, params: dict[str, Any], chat_id: int | None) -> tuple[Any, int | None]:
        with self._lock:
            if method == "getMe":
                return BOT_USER, None
            if method in ("deleteWebhook", "logOut", "close"):
                self.webhook = None
                if params.get("drop_pending_updates"):
                    self._updates.clear()
                return True, None
            if method == "setWebhook":
                if not str(params.get("url", "")).startswith(("http://", "https://")):
                    raise _ApiError(
                        400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook"
                    )
                self.webhook = {"url": params["url"], "secret_token": params.get("secret_token")}
                return True, None
            if method == "getWebhookInfo":
                url = self.webhook["url"] if self.webhook else ""
                return {
                    "url": url,
                    "has_custom_certificate": False,
                    "pending_update_count": len(self._updates),
                }, None
            if method == "setMyCommands":
                commands = params.get("commands")
                if not isinstance(commands, list):
                    raise _ApiError(400, "Bad Request: can't parse commands JSON object")
                self.commands = commands
                return True, None
            if method == "getMyCommands":
                return self.commands, None
            if method in (
                "deleteMyCommands",
                "setMyDescription",
                "setMyShortDescription",
                "setMyName",
                "setChatMenuButton",
            ):
                return True, None
            if method == "sendChatAction":
                self._require_chat(params, chat_id)
                return True, None
            if method == "getChat":
                target = self._require_chat(params, chat_id)
                return self._chat(target), None
            if method == "sendMessage":
                target = self._require_chat(params, chat_id)
                text = self._check_text(params)
                markup = self._check_markup(params.get("reply_markup"))
                message = self._bot_message(
                    target,
                    text=text,
                    entities=params.get("entities"),
                    reply_markup=markup if markup and "inline_keyboard" in markup else None,
                )
                return message, message["message_id"]
            if method in ("sendDocument", "sendPhoto"):
                target = self._require_chat(params, chat_id)
                field_name = "document" if method == "sendDocument" else "photo"
                upload = params.get(field_name)
                if upload is None:
                    raise _ApiError(400, f"Bad Request: there is no {field_name} in the request")
                caption = self._check_text(params, "caption", required=False)
                markup = self._check_markup(params.get("reply_markup"))
                content = upload["content"] if isinstance(upload, dict) else b""
                if method == "sendDocument":
                    media: Any = {
                        "document": {
                            "file_id": f"doc-{target}-{len(self._messages)}",
                            "file_unique_id": f"u{len(self._messages)}",
                            "file_name": upload.get("file_name") if isinstance(upload, dict) else "file",
                            "mime_type": upload.get("mime_type") if isinstance(upload, dict) else None,
                            "file_size": len(content),
                        }
                    }
                else:
                    media = {
                        "photo": [
                            {
                                "file_id": f"photo-{len(self._messages)}",
                                "file_unique_id": f"p{len(self._messages)}",
                                "width": 100,
                                "height": 100,
                                "file_size": len(content),
                            }
                        ]
                    }
                inline = markup if markup and "inline_keyboard" in markup else None
                message = self._bot_message(target, caption=caption, reply_markup=inline, **media)
                return message, message["message_id"]
            if method in ("editMessageText", "editMessageReplyMarkup"):
                if "inline_message_id" in params:
                    return True, None
                target = self._require_chat(params, chat_id)
                message_id = params.get("message_id")
                stored = self._messages.get((target, message_id)) if isinstance(message_id, int) else None
                if stored is None or not stored.get("from_bot") or not isinstance(message_id, int):
                    raise _ApiError(400, "Bad Request: message to edit not found")
                markup = self._check_markup(params.get("reply_markup"))
                new = dict(stored)
                if method == "editMessageText":
                    new["text"] = self._check_text(params)
                    new["entities"] = params.get("entities")
                new["reply_markup"] = markup if markup else None
                if new.get("text") == stored.get("text") and new.get("reply_markup") == stored.get(
                    "reply_markup"
                ):
                    raise _ApiError(
                        400,
                        "Bad Request: message is not modified: specified new message content and reply markup"
                        " are exactly the same as a current content and reply markup of the message",
                    )
                new["edit_date"] = int(time.time())
                self._messages[(target, message_id)] = {k: v for k, v in new.items() if v is not None}
                result = {k: v for k, v in new.items() if v is not None and k != "from_bot"}
                return result, message_id
            if method == "deleteMessage":
                target = self._require_chat(params, chat_id)
                message_id = params.get("message_id")
                if not isinstance(message_id, int) or self._messages.pop((target, message_id), None) is None:
                    raise _ApiError(400, "Bad Request: message to delete not found")
                return True, message_id if isinstance(message_id, int) else None
            if method == "answerCallbackQuery":
                query_id = str(params.get("callback_query_id", ""))
                if query_id not in self._open_callbacks:
                    raise _ApiError(
                        400,
                        "Bad Request: query is too old and response timeout expired or query ID is invalid",
                    )
                self._open_callbacks.discard(query_id)
                return True, None
        raise _ApiError(404, "Not Found")


def _flood(retry_after_s: int) -> _ApiError:
    return _ApiError(429, f"Too Many Requests: retry after {retry_after_s}", {"retry_after": retry_after_s})


def _fault_error(fault: Fault) -> _ApiError:
    if fault.status == 429:
        return _flood(fault.retry_after if fault.retry_after is not None else 1)
    if fault.status == 403:
        return _ApiError(403, "Forbidden: bot was blocked by the user")
    if fault.status == 400:
        return _ApiError(400, "Bad Request: injected fault")
    descriptions = {
        500: "Internal Server Error",
        502: "Bad Gateway",
        503: "Service Unavailable",
        504: "Gateway Timeout",
    }
    return _ApiError(fault.status, descriptions.get(fault.status, "Injected fault"))


__all__ = ["BOT_USER", "FakeBotApi", "Fault", "check_html"]
