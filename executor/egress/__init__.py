"""Egress (issue 21, docs/egress.md): the upstreams an agent version may call, and the gateway
that forwards a task's requests to them through a Unix socket of its own.

    policy.py    what a version declares (pure): upstreams, methods, injections, caps
    records.py   what a task sent (pure): one entry per request, and the digest a receipt binds
    gateway.py   the gateway: one socket per task, forwarding, refusals, caps, records
"""
