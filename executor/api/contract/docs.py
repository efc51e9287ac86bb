"""The contract itself, served: the OpenAPI document and its human page."""

from __future__ import annotations

from executor.api.contract.operation import Operation, Reply

OPERATIONS = (
    Operation("GET", "/v1/openapi.json", "getOpenApi", "This document (OpenAPI 3.1)", "contract", None,
              replies=(Reply(200, "The OpenAPI 3.1 document.", {"type": "object"}),)),
    Operation("GET", "/docs", "getDocs", "The API reference as a page", "contract", None,
              replies=(Reply(200, "HTML, rendered on the server from this document.", {"type": "string"},
                             media="text/html"),)),
)
