"""The dashboard's pages (``/ui``), rendered on the server with Jinja2
(autoescaped) from the REST API's handlers, called in process with the
browser's own request: no second back end, and no rule of the API's that a
page could forget. What changes something (deploy, remove, an inference
call) is a ``fetch`` to ``/api/v1`` by the page's script (static/aiart.js),
with the header that lets the API take the sign-in cookie for a change.

Signing in takes an API key; the browser keeps it in cookies that its
scripts cannot read (auth/access.py KEY_COOKIE).
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from aiart.api import app as api
from aiart.api.views import Principal
from aiart.auth.access import COOKIE_PATHS, KEY_COOKIE, UI_HEADER, Role
from aiart.ui.oidc import OidcSignIn, SignInError

HERE = Path(__file__).parent
# Every value is escaped: status messages and manifests come from deployers.
TEMPLATES = Jinja2Templates(env=jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True))
# The key is kept at most this long; then the browser asks for it again.
COOKIE_SECONDS = 12 * 3600
# An OIDC sign-in's state and PKCE verifier, kept by the browser until it
# comes back from the provider (ui/oidc.py).
OIDC_COOKIE = "aiart_oidc"
OIDC_CALLBACK = "/ui/oidc/callback"
OIDC_COOKIE_SECONDS = 600
# No script, style or frame from anywhere else, and no inline script: a
# status message that slipped through escaping still could not run.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; "
                               "style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

Handler = Callable[[Request], Awaitable[Response]]


def render(request: Request, template: str, status: int = 200, **values: Any) -> Response:
    who = values.get("who")
    context = {"ui_header": UI_HEADER,
               "may_deploy": isinstance(who, Principal) and who.may(Role.DEPLOYER),
               "may_admin": isinstance(who, Principal) and who.may(Role.ADMIN), **values}
    response: Response = TEMPLATES.TemplateResponse(request, template, context,
                                                    status_code=status)
    response.headers.update(SECURITY_HEADERS)
    return response


def safe_next(target: str) -> str:
    """Where to go after signing in: a dashboard page of this site, never
    another site (``//host``, ``https://host``)."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/ui/") or "\\" in target:
        return "/ui/"
    return target


def to_login(request: Request, message: str = "") -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    query = f"next={quote(target)}" + (f"&message={quote(message)}" if message else "")
    return RedirectResponse(f"/ui/login?{query}", status_code=303)


async def from_api(handler: Handler, request: Request) -> Any:
    """What the API's ``handler`` answers this request, as data."""
    response = await handler(request)
    return json.loads(bytes(response.body))


def page(build: Callable[[Request], Awaitable[Response]]) -> Handler:
    """A page, with the API's refusals as a person sees them: not signed in
    (or a key since revoked) to the sign-in page, the rest as an error page."""
    async def run(request: Request) -> Response:
        try:
            return await build(request)
        except api.ApiError as exc:
            if exc.status == 401:
                # Not signed in is no error; a key refused (revoked, say) is.
                return to_login(request, exc.message if api.credential(request) else "")
            return render(request, "error.html", status=exc.status, message=exc.message,
                          who=None)
    return run


async def models(request: Request) -> Response:
    who = await api.principal(request)
    listed = await from_api(api.list_models, request)
    return render(request, "models.html", who=who, models=listed["models"])


async def optional(handler: Handler, request: Request) -> Any:
    """As ``from_api``, or ``{"error": ...}`` where the API refuses (the
    object store away, say): one part of a page missing, not the page."""
    try:
        return await from_api(api.guarded(handler), request)
    except ValueError:
        return {"error": "the API's answer could not be read"}


async def model(request: Request) -> Response:
    who = await api.principal(request)
    view = await from_api(api.get_model, request)
    name = view["name"]
    jobs = [j for j in (await from_api(api.list_jobs, request))["jobs"] if j["model"] == name]
    may_act = who.may(Role.DEPLOYER, name)
    return render(request, "model.html", who=who, model=view, jobs=jobs, may_act=may_act,
                  events=await optional(api.model_events, request),
                  images=await optional(api.list_images, request),
                  runs=await optional(api.model_runs, request),
                  objects=await optional(api.list_objects, request) if may_act else None)


async def deploy(request: Request) -> Response:
    who = await api.principal(request)
    api.allow(who, Role.DEPLOYER)
    return render(request, "deploy.html", who=who)


async def keys(request: Request) -> Response:
    who = await api.principal(request)
    listed = await from_api(api.list_keys, request)
    return render(request, "keys.html", who=who, keys=listed["keys"])


def signin_of(request: Request) -> OidcSignIn | None:
    """The OIDC sign-in, where the site configured one (ui/service.py)."""
    return getattr(request.app.state, "signin", None)


async def login_form(request: Request) -> Response:
    return render(request, "login.html", who=None, message=request.query_params.get("message", ""),
                  next=safe_next(request.query_params.get("next", "/ui/")),
                  oidc=signin_of(request) is not None)


def _secure(request: Request) -> bool:
    return request.headers.get("x-forwarded-proto", request.url.scheme) == "https"


def _signed_in(request: Request, target: str, credential: str, seconds: int) -> Response:
    """To ``target``, with the sign-in cookies holding ``credential``."""
    response = RedirectResponse(safe_next(target), status_code=303)
    for path in COOKIE_PATHS:
        response.set_cookie(KEY_COOKIE, credential, max_age=seconds, path=path,
                            secure=_secure(request), httponly=True, samesite="strict")
    response.headers["Cache-Control"] = "no-store"
    return response


def _callback_url(request: Request) -> str:
    scheme = request.headers.get("x-forwarded-proto", request.url.scheme)
    return f"{scheme}://{request.headers.get('host', request.url.netloc)}{OIDC_CALLBACK}"


async def oidc_start(request: Request) -> Response:
    """To the OIDC provider's sign-in, with a state and a PKCE verifier that
    this browser keeps (a cookie for the callback alone, for ten minutes)."""
    signin = signin_of(request)
    if signin is None:
        return render(request, "error.html", status=404, who=None,
                      message="OIDC sign-in is not configured here (AIART_OIDC_UI_CLIENT_ID)")
    try:
        started = await signin.start(_callback_url(request))
    except SignInError as exc:
        return render(request, "login.html", status=502, who=None, message=str(exc),
                      next="/ui/", oidc=True)
    response = RedirectResponse(started.url, status_code=303)
    # Lax, not Strict: the provider's redirect back is a navigation from
    # another site, on which a Strict cookie is not sent.
    response.set_cookie(OIDC_COOKIE, json.dumps({
        "state": started.state, "verifier": started.verifier,
        "next": safe_next(request.query_params.get("next", "/ui/"))}),
        max_age=OIDC_COOKIE_SECONDS, path=OIDC_CALLBACK, secure=_secure(request),
        httponly=True, samesite="lax")
    return response


async def oidc_callback(request: Request) -> Response:
    """Back from the provider: the state must be the one this browser was
    given (no one else's sign-in finished in it), the code is exchanged
    for an access token, and the token must give an aiart role."""
    signin = signin_of(request)
    params = request.query_params
    try:
        kept: Any = json.loads(request.cookies.get(OIDC_COOKIE, ""))
        state, verifier, target = str(kept["state"]), str(kept["verifier"]), str(kept["next"])
    except (ValueError, KeyError, TypeError):
        kept = None
    if signin is None or kept is None or not hmac.compare_digest(
            state, params.get("state", "")):
        return _refused(request, "this sign-in was not started in this browser (or took over "
                                 "ten minutes): sign in again")
    if params.get("error"):
        return _refused(request, f"the OIDC provider refused: {params.get('error')} "
                                 f"{params.get('error_description', '')}".strip())
    try:
        token = await signin.finish(_callback_url(request), params.get("code", ""), verifier)
    except SignInError as exc:
        return _refused(request, str(exc))
    ctx = api.context(request)
    if ctx.verifier is None:
        return _refused(request, "OIDC tokens are not taken here (AIART_OIDC_ISSUER)")
    try:
        claims = await ctx.verifier.claims(token)
    except ValueError as exc:
        return _refused(request, f"the provider's token is not one aiart takes: {exc}")
    who = Principal.from_claims(claims, roles_claim=ctx.verifier.roles_claim,
                                prefix=ctx.verifier.role_prefix)
    if who is None:
        return _refused(request, f"{claims.get('sub', 'this account')} has no aiart role "
                                 f"({ctx.verifier.role_prefix}viewer, deployer or admin)")
    # The cookie lives as long as the token: then the provider is asked again
    # (a session there signs the person in without a prompt).
    seconds = max(1, min(COOKIE_SECONDS, int(float(claims.get("exp", 0)) - time.time())))
    response = _signed_in(request, target, token, seconds)
    response.delete_cookie(OIDC_COOKIE, path=OIDC_CALLBACK, httponly=True, samesite="lax")
    return response


def _refused(request: Request, message: str) -> Response:
    response = render(request, "login.html", status=401, who=None, message=message,
                      next="/ui/", oidc=signin_of(request) is not None)
    response.delete_cookie(OIDC_COOKIE, path=OIDC_CALLBACK, httponly=True, samesite="lax")
    return response


def from_another_site(request: Request) -> bool:
    """A form another site's page sent (its browser says where it came
    from): signing a visitor in with the other site's key, or out, is not
    that site's to do."""
    origin = request.headers.get("origin")
    return bool(origin) and urlsplit(origin).netloc != request.headers.get("host", "")


async def login(request: Request) -> Response:
    if from_another_site(request):
        return render(request, "error.html", status=403, who=None,
                      message="a sign-in from another site's page is refused")
    async with request.form(max_files=0, max_fields=3, max_part_size=4096) as form:
        key, target = str(form.get("key", "")).strip(), str(form.get("next", "/ui/"))
    try:
        # A key the API would refuse sets nothing.
        await api.key_principal(api.context(request), key)
    except api.ApiError as exc:
        return render(request, "login.html", status=401, who=None, message=exc.message,
                      next=safe_next(target))
    return _signed_in(request, target, key, COOKIE_SECONDS)


async def logout(request: Request) -> Response:
    if from_another_site(request):
        return render(request, "error.html", status=403, who=None,
                      message="a sign-out from another site's page is refused")
    response = RedirectResponse("/ui/login?message=signed%20out", status_code=303)
    for path in COOKIE_PATHS:
        response.delete_cookie(KEY_COOKIE, path=path, httponly=True, samesite="strict")
    return response


async def home(_: Request) -> Response:
    return RedirectResponse("/ui/", status_code=307)


ROUTES: list[BaseRoute] = [
    Route("/ui", home),
    Route("/ui/", page(models), methods=["GET"]),
    Route("/ui/login", login_form, methods=["GET"]),
    Route("/ui/login", login, methods=["POST"]),
    Route("/ui/logout", logout, methods=["POST"]),
    Route("/ui/oidc/start", oidc_start, methods=["GET"]),
    Route(OIDC_CALLBACK, oidc_callback, methods=["GET"]),
    Route("/ui/deploy", page(deploy), methods=["GET"]),
    Route("/ui/models/{name}", page(model), methods=["GET"]),
    Route("/ui/keys", page(keys), methods=["GET"]),
    Mount("/ui/static", StaticFiles(directory=HERE / "static"), name="static"),
]
