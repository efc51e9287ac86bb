"""The API contract: every operation, its request and response schemas, as data.

Each area's module (executions.py, agents.py, ...) exports `OPERATIONS` (a tuple of
operation.Operation) and may export `SCHEMAS` (named JSON Schemas, referenced as
`#/components/schemas/<name>`). AREAS lists them; openapi.py assembles the document."""
