"""SQL for bearer tokens (stored hashed)."""

from __future__ import annotations

import uuid

import asyncpg


async def insert_token(db: asyncpg.Pool, token_hash: bytes, role: str, subject: str) -> asyncpg.Record:
    return await db.fetchrow(
        "INSERT INTO tokens (id, token_hash, role, subject) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (token_hash) DO UPDATE SET role = EXCLUDED.role"
        " RETURNING id, role, subject, created_at",
        uuid.uuid4(), token_hash, role, subject,
    )


async def find_token(db: asyncpg.Pool, token_hash: bytes) -> asyncpg.Record | None:
    return await db.fetchrow(
        "SELECT id, role, subject FROM tokens WHERE token_hash = $1 AND revoked_at IS NULL", token_hash
    )


async def operator_exists(db: asyncpg.Pool) -> bool:
    return bool(await db.fetchval(
        "SELECT EXISTS (SELECT 1 FROM tokens WHERE role = 'operator' AND revoked_at IS NULL)"))
