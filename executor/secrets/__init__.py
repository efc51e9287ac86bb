"""Agents' secrets, sealed at rest and revealed to the egress gateway alone (docs/secrets.md).

    sealing.py   the operator's keys, their ids, seal and unseal (pure)
    service.py   Secrets: put, list, delete, reveal, reseal; the key file of a host

The two rules below are also the API contract's (executor/api/contract/secrets.py).
"""

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"  # a secret's name
MAX_VALUE_BYTES = 8192  # a secret's value, in UTF-8
