"""The generated modules match the contract, and the SDK covers every operation of it, on both clients."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import executor_client
from executor_client import AsyncExecutor, Executor
from executor_client._routes import ROUTES
from executor_client.errors import ApiError
from executor_client.operations import ITERATORS, OPERATIONS
from executor_client.problems import PROBLEM_CLASSES

SDK = Path(__file__).resolve().parent.parent
DOCUMENT = json.loads((SDK.parent / "openapi.json").read_text())
GENERATED = ("models.py", "problems.py", "_routes.py", "_sync.py")


def operations() -> dict[str, tuple[str, str, dict[str, object]]]:
    return {operation["operationId"]: (method.upper(), path, operation)
            for path, methods in DOCUMENT["paths"].items() for method, operation in methods.items()}


def test_the_generated_files_are_what_the_generator_writes(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(SDK / "generate.py"), "--out", str(tmp_path)], check=True)
    for name in GENERATED:
        checked_in = (SDK / "src" / "executor_client" / name).read_text()
        assert (tmp_path / name).read_text() == checked_in, f"{name} is stale: run clients/python/generate.py"
    assert subprocess.run([sys.executable, str(SDK / "generate.py"), "--check"]).returncode == 0


def test_every_operation_has_a_method_on_both_clients() -> None:
    assert len(operations()) >= 46  # the document was read (it only grows)
    assert set(OPERATIONS) == set(operations()), "OPERATIONS must map every operationId of clients/openapi.json"
    for operation_id, name in {**OPERATIONS, **ITERATORS}.items():
        for cls in (Executor, AsyncExecutor):
            assert callable(getattr(cls, name, None)), f"{cls.__name__} has no {name} ({operation_id})"


def test_both_clients_have_the_same_methods_and_signatures() -> None:
    def public(cls: type) -> dict[str, inspect.Signature]:
        return {name: inspect.signature(member) for name, member in vars(cls).items()
                if callable(member) and not name.startswith("_")}

    sync, asynchronous = public(Executor), public(AsyncExecutor)
    assert set(sync) == (set(asynchronous) - {"aclose"}) | {"close"}
    for name, signature in asynchronous.items():
        other = sync["close" if name == "aclose" else name]
        assert [(p.name, p.kind, p.default) for p in signature.parameters.values()] == \
               [(p.name, p.kind, p.default) for p in other.parameters.values()], name
        assert str(signature.return_annotation).replace("AsyncIterator", "Iterator") == str(other.return_annotation)
        is_coroutine = inspect.iscoroutinefunction(getattr(AsyncExecutor, name))
        assert is_coroutine or inspect.isasyncgenfunction(getattr(AsyncExecutor, name)) or name in ITERATORS.values() \
            or name == "with_token", name


def test_routes_are_the_documents() -> None:
    for operation_id, (method, path, operation) in operations().items():
        keyed = any(p.get("name") == "Idempotency-Key" for p in operation.get("parameters", []))  # type: ignore[attr-defined]
        assert ROUTES[operation_id] == (method, path, keyed)
    keyed = sorted(name for name, route in ROUTES.items() if route.idempotency_key)
    assert keyed == ["attestReceipt", "createToken", "publishVersion", "registerAgent", "submitExecution"]


def test_one_error_class_per_problem_slug() -> None:
    slugs = {slug for _, _, operation in operations().values()
             for response in operation["responses"].values()  # type: ignore[attr-defined]
             for slug in response.get("x-problem-types", [])}
    assert set(PROBLEM_CLASSES) == slugs
    names = {"entitlement_used_up": "EntitlementUsedUp", "rate_limited": "RateLimited",
             "too_many_live_executions": "TooManyLiveExecutions", "input_invalid": "InputInvalid"}
    for slug, name in names.items():
        assert PROBLEM_CLASSES[slug] is getattr(executor_client, name)
    for slug, cls in PROBLEM_CLASSES.items():
        assert issubclass(cls, ApiError) and slug == cls.SLUG
        assert cls.__name__ == "".join(part.capitalize() for part in slug.split("_"))


def test_one_model_per_schema() -> None:
    from executor_client import models

    for name in DOCUMENT["components"]["schemas"]:
        assert hasattr(models, name), name
    assert models.Execution.__required_keys__ >= {"id", "status", "output"}  # type: ignore[attr-defined]
    assert "bodies_deleted_at" in models.Execution.__optional_keys__  # type: ignore[attr-defined]
    assert models.ConsistencyProof.__required_keys__ == {"from", "to", "hashes"}  # type: ignore[attr-defined]


def test_the_sdk_never_imports_the_server() -> None:
    code = ("import sys, executor_client, executor_client.receipts, executor_client.models;"
            "bad = [m for m in sys.modules if m == 'executor' or m.startswith('executor.')"
            " or m.split('.')[0] in ('aiohttp', 'asyncpg', 'docker', 'redis')];"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd="/")
    for path in (SDK / "src").rglob("*.py"):
        assert not re.search(r"^\s*(from|import) executor(\.| |$)", path.read_text(), re.M), path
