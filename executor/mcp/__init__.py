"""The MCP endpoint (docs/mcp.md): marketplace agents as Model Context Protocol tools, served
over Streamable HTTP by the official `mcp` SDK on a listener of its own beside the HTTP API.

An API layer like executor/api/: it authenticates, lists and calls through the domain services
(tokens, agents, entitlements, executions) and never reaches SQL, Redis or Docker itself.

    auth.py      bearer tokens → a Principal; the 401 and the protected resource metadata
    naming.py    agent name → tool name (stable, unique, in MCP's alphabet)
    tools.py     the tools a caller may run: tools/list
    calls.py     tools/call: one execution, as POST /v1/executions?wait=N runs it
    changes.py   notifications/tools/list_changed for the open sessions
    server.py    the SDK's low-level Server, its Starlette app and the uvicorn listener
"""
