"""Request ids and the access log (docs/logs.md).

Every request has an id: the caller's `X-Request-Id` when it is a sane token, else one made
here. It is bound for the logs while the request is handled (every line written meanwhile
carries `request_id`), rides with the job to the worker (executions/service.py), is returned
in `X-Request-Id` on every answer and names the problem in a problem document's `instance`
(problems.py).

The access log is one line per request, as fields (never the token, never the query string):
`method`, `route`, `path`, `status`, `duration_ms`, `request_id`, `principal`, `remote`.
"""

from __future__ import annotations

import logging
import re

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest

from executor.api.auth import PRINCIPAL_KEY
from executor.api.problems import REQUEST_ID_HEADER, REQUEST_ID_KEY, Handler
from executor.observability.logs import bind_request, new_request_id
from executor.records.principals import Principal

ACCESS_LOGGER = "executor.access"

# What a caller's id may be: 1 to 128 of the characters a URN may hold unescaped (RFC 8141's
# pchar, without `%`, and `/` after the first), so that it goes as it is into `instance`, a
# header and a log line. A uuid, hex, base64 or base64url id fits; anything else is replaced.
_SANE = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:@-][A-Za-z0-9._~!$&'()*+,;=:@/-]{0,127}")


def accept_request_id(raw: str | None) -> str:
    """The caller's request id when it is sane, else a new one."""
    if raw is not None and _SANE.fullmatch(raw):
        return raw
    return new_request_id()


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: the request's id, on the request and bound for every log line written while it
    is handled (tasks started meanwhile inherit it)."""
    request_id = accept_request_id(request.headers.get(REQUEST_ID_HEADER))
    request[REQUEST_ID_KEY] = request_id
    with bind_request(request_id):
        return await handler(request)


async def stamp_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """An on_response_prepare signal: the id on every answer, streamed ones and problems too."""
    request_id = request.get(REQUEST_ID_KEY)
    if request_id is not None:
        response.headers[REQUEST_ID_HEADER] = request_id


def install(app: web.Application) -> None:
    app.on_response_prepare.append(stamp_request_id)


class AccessLog(AbstractAccessLogger):
    """aiohttp's access logger (web.AppRunner(access_log_class=AccessLog)): one INFO line a
    request, after its answer, with the fields in `extra` (observability/logs.py writes them).
    Requests the HTTP parser refused have no route and no principal; their id is the one made
    for their problem (problems.py)."""

    def log(self, request: BaseRequest, response: web.StreamResponse, time: float) -> None:
        try:
            request_id, fields = access_fields(request, response, time)
            self.logger.info("%s %s %d", request.method, request.path, response.status,
                             extra={"request_id": request_id, "fields": fields})
        except Exception:  # never let the access log break an answer
            logging.getLogger(__name__).exception("could not write the access log line")


def access_fields(request: BaseRequest, response: web.StreamResponse,
                  time: float) -> tuple[str | None, dict[str, object]]:
    """The request's id and the access log line's other fields (pure: unit-tested)."""
    principal = request.get(PRINCIPAL_KEY)
    fields: dict[str, object] = {
        "method": request.method,
        "route": route_template(request),
        "path": request.path,
        "status": response.status,
        "duration_ms": round(time * 1000, 2),
        "principal": principal.party if isinstance(principal, Principal) else None,
        "remote": request.remote,
    }
    return request.get(REQUEST_ID_KEY) or response.headers.get(REQUEST_ID_HEADER), fields


def route_template(request: BaseRequest) -> str | None:
    """The route template the request matched (`/v1/executions/{id}`); None when none did, or
    when the request never reached routing (the parser refused it: no match_info at all)."""
    try:
        resource = request.match_info.route.resource  # type: ignore[attr-defined]
    except (AttributeError, AssertionError):
        return None
    return None if resource is None else resource.canonical
