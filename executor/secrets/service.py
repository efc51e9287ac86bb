"""Agents' secrets: written by the agent's service (or an operator), listed by name and version,
deleted, re-sealed after a key rotation, and revealed to the egress gateway alone (docs/secrets.md).

A value enters through `put` and leaves only through `reveal`, an in-process call of the gateway;
no answer, record, receipt, webhook or log line carries one. Values are sealed with the
operator's key (sealing.py) before they reach PostgreSQL."""

from __future__ import annotations

import logging
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg

from executor.agents.versions import check_may_manage
from executor.errors import ConfigurationError, NotFound, RequestInvalid
from executor.pagination import query_invalid
from executor.records.principals import Principal
from executor.secrets import MAX_VALUE_BYTES, NAME_PATTERN
from executor.secrets.sealing import KeyRing, Sealed, SecretUnreadable, encode_key, new_key, parse_key, parse_keys
from executor.settings import Settings
from executor.storage import secrets as secret_sql
from executor.storage.secrets import SecretEntry

if TYPE_CHECKING:  # only its type: the key file and the rules import nothing of the engine's
    from executor.agents.service import Agents

log = logging.getLogger(__name__)

_NAME = re.compile(NAME_PATTERN)


@dataclass(frozen=True)
class ResealReport:
    resealed: int  # rows moved to the current key
    unreadable: int  # rows under a key not held (or that do not authenticate): left as they are

    def to_dict(self) -> dict[str, Any]:
        return {"resealed": self.resealed, "unreadable": self.unreadable}


def valid_name(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


class Secrets:
    """The secrets of every agent. `keys` seals and unseals; `agents` says whose an agent is."""

    def __init__(self, db: asyncpg.Pool, keys: KeyRing, agents: Agents) -> None:
        self.db = db
        self.keys = keys
        self.agents = agents

    async def put(self, caller: Principal, agent_id: str, name: str, value: Any) -> tuple[SecretEntry, bool]:
        """Write or replace a secret of an agent the caller manages: its entry, and whether it is new."""
        agent = await self.agents.get(agent_id)
        check_may_manage(caller, agent)
        if not valid_name(name):
            raise RequestInvalid(f"a secret's name must match {NAME_PATTERN}")
        # The contract checked the shape (a string of 1 to 8192 characters); bytes are counted here.
        # Neither problem ever quotes the value.
        if not isinstance(value, str) or not value:
            raise RequestInvalid("value: a non-empty string", errors=[{"pointer": "/value",
                                                                        "detail": "must be a non-empty string"}])
        if len(value.encode()) > MAX_VALUE_BYTES:
            detail = f"must be at most {MAX_VALUE_BYTES} bytes of UTF-8"
            raise RequestInvalid(f"value: {detail}", errors=[{"pointer": "/value", "detail": detail}])
        sealed = self.keys.seal(value)
        entry = await secret_sql.put(self.db, agent.agent_id, name, sealed.key_id, sealed.sealed)
        return entry, entry.version == 1

    async def list_page(self, caller: Principal, agent_id: str, *, limit: int,
                        cursor: str | None) -> tuple[list[SecretEntry], str | None]:
        """A page of an agent's secrets by name (never a value); the cursor is the page's last name."""
        agent = await self.agents.get(agent_id)
        check_may_manage(caller, agent)
        if cursor is not None and not valid_name(cursor):
            raise query_invalid("cursor", "not one of ours")
        found = await secret_sql.list_page(self.db, agent.agent_id, after=cursor, limit=limit)
        return found, found[-1].name if len(found) == limit else None

    async def delete(self, caller: Principal, agent_id: str, name: str) -> None:
        agent = await self.agents.get(agent_id)
        check_may_manage(caller, agent)
        if not valid_name(name) or not await secret_sql.delete(self.db, agent.agent_id, name):
            raise NotFound(f"agent {agent.agent_id} has no secret {name!r}")

    async def reveal(self, agent_id: uuid.UUID, name: str) -> str | None:
        """The value of an agent's secret, for the egress gateway alone; None when there is no such
        secret. SecretUnreadable (logged with its key id) when it cannot be unsealed here."""
        row = await secret_sql.get_sealed(self.db, agent_id, name)
        if row is None:
            return None
        try:
            return self.keys.unseal(Sealed(row.key_id, row.sealed))
        except SecretUnreadable as exc:
            log.error("secret %r of agent %s cannot be unsealed: it is sealed under key %s (%s); this process "
                      "holds %s", name, agent_id, exc.key_id, exc.reason, ", ".join(self.keys.key_ids))
            raise

    async def reseal(self) -> ResealReport:
        """Move every row sealed under a previous key to the current one. Rows under a key not
        held stay as they are, counted and logged by key id. Safe to run again, and beside writes:
        a row written meanwhile is under the current key already."""
        current = self.keys.current_id
        resealed = unreadable = 0
        after: tuple[uuid.UUID, str] | None = None
        while True:
            page = await secret_sql.not_under(self.db, current, after=after)
            for row in page:
                try:
                    fresh = self.keys.reseal(Sealed(row.key_id, row.sealed))
                except SecretUnreadable as exc:
                    unreadable += 1
                    log.error("secret %r of agent %s not re-sealed: key %s: %s", row.name, row.agent_id,
                              exc.key_id, exc.reason)
                    continue
                if await secret_sql.replace_sealed(self.db, row, fresh.key_id, fresh.sealed):
                    resealed += 1
            if len(page) < secret_sql.RESEAL_PAGE:
                break
            after = (page[-1].agent_id, page[-1].name)
        log.info("secrets re-sealed under key %s: %d (%d left unreadable)", current, resealed, unreadable)
        return ResealReport(resealed, unreadable)


# --- the operator's key ------------------------------------------------------------------------

def open_key_ring(settings: Settings) -> KeyRing:
    """EXECUTOR_SECRETS_KEY (with EXECUTOR_SECRETS_PREVIOUS_KEYS), else the key file of this host,
    created 0600 on first start. ConfigurationError for a key that is not 32 bytes of base64."""
    previous = parse_keys(settings.secrets_previous_keys, source="EXECUTOR_SECRETS_PREVIOUS_KEYS")
    if settings.secrets_key:
        current = parse_key(settings.secrets_key, source="EXECUTOR_SECRETS_KEY")
    else:
        current = ensure_key_file(settings.resolved_secrets_key_file)
    return KeyRing(current, previous)


def read_key_file(path: Path) -> bytes | None:
    """The key in `path` (one base64 line), or None when there is no such file."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    if path.stat().st_mode & 0o077:
        log.warning("%s can be read by others than its owner: chmod 600 it", path)
    return parse_key(text, source=str(path))


def ensure_key_file(path: Path) -> bytes:
    """The key of `path`, created when absent: written 0600 beside it, then linked into place, so
    that two processes starting at once both end up with the one key that won."""
    found = read_key_file(path)
    if found is not None:
        return found
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (encode_key(new_key()) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temporary, path)  # fails when another process created it first: its key wins
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
    key = read_key_file(path)
    if key is None:
        raise ConfigurationError(f"{path} vanished while it was being created")
    return key
