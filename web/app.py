"""The Mini App's HTTP server (aiohttp): the page from web/static and a small JSON API.

Every /api call is authenticated by Telegram's initData in `Authorization: tma <initData>` and
reaches only the caller's own results; downloads use short-lived signed links (web.links). Bodies
are capped at SEGBOT_WEB_MAX_BODY_KB. Errors are JSON {"error": "<what to do>"}.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

from core.errors import InputError
from core.i18n import render
from core.settings import Settings
from storage.files import Store
from storage.stores import open_store
from web import labeling, links, review
from web.auth import AuthError, allowed, check_init_data, from_header
from web.texts import all_page_texts

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
RID = r"{rid:\d{1,12}}"
IID = r"{iid:\d{1,12}}"
SECURITY_HEADERS = {
    # Telegram's web client shows the page in an iframe, so no frame-ancestors / X-Frame-Options.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; "
    "style-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class WebState:
    settings: Settings
    store: Store
    token: str


STATE = web.AppKey("state", WebState)


def fail(cls: type[web.HTTPException], message: str) -> web.HTTPException:
    return cls(text=json.dumps({"error": message}), content_type="application/json")


def _state(request: web.Request) -> WebState:
    return request.app[STATE]


async def _caller(request: web.Request) -> review.Caller:
    state = _state(request)
    try:
        user = check_init_data(
            from_header(request.headers.get("Authorization")),
            state.token,
            state.settings.webapp_auth_max_age_s,
        )
    except AuthError as error:
        raise fail(web.HTTPUnauthorized, str(error)) from None
    if not allowed(state.settings, user):
        raise fail(web.HTTPForbidden, "This bot is private; ask its admin to add you.")
    caller = await asyncio.to_thread(review.find_user, state.settings, user.telegram_id)
    if caller is None:
        raise fail(web.HTTPForbidden, "Open the bot in Telegram and send /start first.")
    return caller


async def _blocking(fn: Any, *args: Any) -> Any:
    """Run a web.review function in a thread; its refusals become HTTP errors."""
    try:
        return await asyncio.to_thread(fn, *args)
    except review.NotYours:
        raise fail(web.HTTPForbidden, "This result is not yours (or no longer exists).") from None
    except labeling.NoSuchImage:
        raise fail(web.HTTPNotFound, "This image is not yours (or no longer exists).") from None
    except review.Gone:
        raise fail(
            web.HTTPGone, "The files of this result were deleted (they are kept for a limited time)."
        ) from None


def _json(data: Any) -> web.Response:
    return web.json_response(data, headers={"Cache-Control": "no-store"})


# Handlers


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


async def health(request: web.Request) -> web.Response:
    return _json({"ok": True})


async def texts(request: web.Request) -> web.Response:
    """The page's texts in every language, from the gettext catalogs (web/texts.py); public, as the
    page itself is, and the same for everyone until the next deploy."""
    return web.json_response(all_page_texts(), headers={"Cache-Control": "no-cache"})


async def me(request: web.Request) -> web.Response:
    caller = await _caller(request)
    results = await _blocking(review.list_results, _state(request).settings, caller.user_id)
    return _json({"language": caller.language, "results": results})


async def _view(request: web.Request, fn: Any, key: str) -> web.Response:
    """The page's data of one of her results or images (fn(settings, store, user id, id)), in her language."""
    caller, state = await _caller(request), _state(request)
    view = await _blocking(fn, state.settings, state.store, caller.user_id, int(request.match_info[key]))
    return _json({**view, "language": caller.language})


async def _png(request: web.Request, fn: Any, key: str) -> web.Response:
    caller, state = await _caller(request), _state(request)
    data = await _blocking(fn, state.settings, state.store, caller.user_id, int(request.match_info[key]))
    return web.Response(
        body=data, content_type="image/png", headers={"Cache-Control": "private, max-age=300"}
    )


async def result(request: web.Request) -> web.Response:
    return await _view(request, review.result_view, "rid")


async def image(request: web.Request) -> web.Response:
    return await _png(request, review.image_bytes, "rid")


def _file_name(image_name: str, role: str) -> str:
    stem = image_name.rsplit(".", 1)[0] or "result"
    return f"{stem}.json" if role == "labelme" else f"{stem}_objects.csv"


async def download_links(request: web.Request) -> web.Response:
    caller, state = await _caller(request), _state(request)
    rid = int(request.match_info["rid"])
    name = (await _blocking(review.stored_file, state.settings, state.store, caller.user_id, rid, "labelme"))[
        0
    ]
    return _json(
        {
            role: {
                "url": links.make_link(state.token, caller.user_id, rid, role),
                "name": _file_name(name, role),
            }
            for role in links.ROLES
        }
    )


async def download(request: web.Request) -> web.Response:
    state, info = _state(request), request.match_info
    user_id, rid, role = int(info["uid"]), int(info["rid"]), info["role"]
    if not links.check_link(state.token, user_id, rid, role, int(info["expires"]), info["sig"]):
        raise fail(web.HTTPForbidden, "This download link has expired; open the page again.")
    name, data = await _blocking(review.stored_file, state.settings, state.store, user_id, rid, role)
    filename = _file_name(name, role)
    headers = {
        "Content-Disposition": f'attachment; filename="{filename.encode("ascii", "replace").decode()}"; '
        f"filename*=UTF-8''{quote(filename)}",
        "Cache-Control": "no-store",
    }
    kind = "application/json" if role == "labelme" else "text/csv"
    return web.Response(body=data, content_type=kind, charset="utf-8", headers=headers)


async def _edit(request: web.Request, caller: review.Caller, fn: Any, *args: Any) -> Any:
    """Run fn(settings, store, user id, *args, body) on the request's JSON body; bad input -> 400."""
    state = _state(request)
    raw = await request.read()  # over client_max_size: HTTPRequestEntityTooLarge, nothing read further
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise fail(web.HTTPBadRequest, "The body is not valid JSON.") from None
    try:
        return await _blocking(fn, state.settings, state.store, caller.user_id, *args, body)
    except review.EditError as error:  # a malformed request from the page: for its developer
        raise fail(web.HTTPBadRequest, str(error)) from None
    except InputError as error:  # what the user drew cannot be saved: say why in their language
        raise fail(web.HTTPBadRequest, render(caller.language, error.text)) from None


async def _save(request: web.Request, fn: Any, key: str, what: str) -> web.Response:
    """fn(settings, store, user id, id, body) keeps what she made on the page as an upload."""
    caller, ident = await _caller(request), int(request.match_info[key])
    saved = await _edit(request, caller, fn, ident)
    log.info("%s %s saved as upload %s", what, ident, saved["upload_id"])
    return _json(saved)


async def correction(request: web.Request) -> web.Response:
    return await _save(request, review.save_correction, "rid", "correction of result")


# Label mode: an image she sent (web.labeling)


async def images(request: web.Request) -> web.Response:
    caller = await _caller(request)
    found = await _blocking(labeling.list_images, _state(request).settings, caller.user_id)
    return _json({"language": caller.language, "images": found})


async def label_view(request: web.Request) -> web.Response:
    return await _view(request, labeling.image_view, "iid")


async def label_image(request: web.Request) -> web.Response:
    return await _png(request, labeling.image_png, "iid")


async def propose(request: web.Request) -> web.Response:
    caller = await _caller(request)
    return _json(await _edit(request, caller, labeling.propose, int(request.match_info["iid"])))


async def save_labels(request: web.Request) -> web.Response:
    return await _save(request, labeling.save_labels, "iid", "labels of image upload")


# Middlewares


@web.middleware
async def errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """JSON errors for the API (aiohttp's own, like 413, included); an id for the unexpected."""
    try:
        return await handler(request)
    except web.HTTPException as error:
        if error.status < 400 or error.content_type == "application/json":
            raise
        message = error.reason
        if isinstance(error, web.HTTPRequestEntityTooLarge):
            message = f"The request is larger than {_state(request).settings.web_max_body_kb} KB."
        keep = {k: v for k, v in error.headers.items() if k.lower() not in ("content-type", "content-length")}
        return web.json_response({"error": message}, status=error.status, headers=keep)
    except Exception:
        error_id = secrets.token_hex(4)
        log.exception("error %s in %s %s", error_id, request.method, request.path)
        message = f"Something went wrong on the server (error id {error_id})."
        return web.json_response({"error": message}, status=500)


@web.middleware
async def security_headers(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as error:
        error.headers.update(SECURITY_HEADERS)
        raise
    response.headers.update(SECURITY_HEADERS)
    return response


def build_web_app(settings: Settings) -> web.Application:
    settings.ensure_dirs()
    app = web.Application(
        client_max_size=settings.web_max_body_kb * 1024, middlewares=[security_headers, errors]
    )
    app[STATE] = WebState(settings, open_store(settings), settings.token)  # folder or S3
    app.router.add_get("/", index)
    app.router.add_get("/healthz", health)
    app.router.add_static("/static/", STATIC, follow_symlinks=False, show_index=False)
    app.router.add_get("/api/texts", texts)
    app.router.add_get("/api/me", me)
    app.router.add_get(f"/api/results/{RID}", result)
    app.router.add_get(f"/api/results/{RID}/image", image)
    app.router.add_post(f"/api/results/{RID}/links", download_links)
    app.router.add_post(f"/api/results/{RID}/correction", correction)
    app.router.add_get("/api/images", images)
    app.router.add_get(f"/api/images/{IID}", label_view)
    app.router.add_get(f"/api/images/{IID}/image", label_image)
    app.router.add_post(f"/api/images/{IID}/propose", propose)
    app.router.add_post(f"/api/images/{IID}/labels", save_labels)
    app.router.add_get(
        r"/dl/{uid:\d{1,12}}/" + RID + r"/{role:[a-z]{1,16}}/{expires:\d{1,12}}/{sig:[0-9a-f]{1,64}}",
        download,
    )
    return app
