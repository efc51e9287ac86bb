"""Private PostgreSQL and Redis servers, started from the installed server binaries.

Used by `executor up` when no database or Redis URL is configured (data under the state
directory, unix sockets only) and by the test suite (throwaway servers on free loopback
ports). Synchronous: it runs before any event loop starts.

PostgreSQL refuses to run as root, so as root the cluster runs as the `postgres` user
(else `nobody`), and every parent of its base directory must be traversable by that user:
a root service's default state dir is therefore /var/lib/executor, never under /root (0700).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis

from executor.errors import DependencyUnavailable

SUPERUSER = "executor"
POSTGRES_ROOT = Path("/usr/lib/postgresql")  # Debian: one bin dir per major version
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")  # the database names we accept need no quoting


class EmbeddedError(DependencyUnavailable):
    """A private server could not be found, started or stopped (the message says why): for the
    CLI a dependency that is not there, one line and exit 3."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return f"\n--- {path} ---\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"\n(no log at {path})"


def _checked_dir(path: Path, socket_name: str) -> Path:
    """Absolute, free of control characters (paths go into config files) and short enough for the socket."""
    path = Path(path).absolute()
    if any(ord(char) < 32 for char in str(path)):
        raise EmbeddedError(f"unusable directory name {str(path)!r}")
    if len(os.fsencode(path / socket_name)) >= 108:  # sockaddr_un.sun_path, NUL included
        raise EmbeddedError(f"{path / socket_name} is too long for a unix socket: use a shorter directory")
    return path


def _process_args(pid: int) -> list[str]:
    """The command line of a live process ([] when it is gone or a zombie)."""
    try:
        return [arg for arg in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0") if arg]
    except OSError:
        return []


def _postgres_bindir() -> Path:
    """The newest /usr/lib/postgresql/N/bin, else the directory of `postgres` on PATH.

    Not `pg_config --bindir`: it comes with the client package and may name a version without a server.
    """
    candidates = sorted((p.parent for p in POSTGRES_ROOT.glob("*/bin/postgres")), reverse=True,
                        key=lambda bindir: [int(part) for part in re.findall(r"\d+", bindir.parent.name)])
    if on_path := shutil.which("postgres"):
        candidates.append(Path(on_path).resolve().parent)
    for bindir in candidates:
        if all(os.access(bindir / tool, os.X_OK) for tool in ("postgres", "initdb", "pg_ctl", "psql")):
            return bindir
    raise EmbeddedError(f"PostgreSQL server binaries (postgres, initdb, pg_ctl) not found in {POSTGRES_ROOT}/*/bin "
                        "or on PATH (install Debian's `postgresql` package)")


class EmbeddedPostgres:
    """A PostgreSQL cluster in `base_dir`: data/, the socket dir run/, and postgres.log."""

    def __init__(self, base_dir: Path, *, port: int | None = None, database: str = "executor",
                 durable: bool = True) -> None:
        if not _NAME.fullmatch(database):
            raise EmbeddedError(f"unsupported database name {database!r} (lower-case letters, digits, _)")
        self.port, self.database, self.durable = port, database, durable
        self.base_dir = _checked_dir(base_dir, f"run/.s.PGSQL.{port or 5432}")
        self.data_dir, self.socket_dir = self.base_dir / "data", self.base_dir / "run"
        self.log_path = self.base_dir / "postgres.log"
        # PostgreSQL refuses to run as root: then it runs as `postgres`, else `nobody`.
        users = {user.pw_name: user for user in pwd.getpwall()} if os.geteuid() == 0 else {}
        self._account = users.get("postgres") or users.get("nobody")
        if users and self._account is None:
            raise EmbeddedError("running as root, but there is no `postgres` or `nobody` user to run PostgreSQL as")
        self._bindir: Path | None = None
        self._started = False

    @property
    def dsn(self) -> str:
        return self._dsn(self.database)

    def _dsn(self, database: str) -> str:
        if self.port is not None:
            return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"
        return f"postgresql://{SUPERUSER}@/{database}?host={quote(str(self.socket_dir), safe='/')}"

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert self._bindir is not None
        # The caller's PG* variables (PGHOST, PGDATA, ...) must not redirect our tools.
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        account: dict[str, Any] = {}
        if (user := self._account) is not None:  # and never keep root's supplementary groups
            groups = os.getgrouplist(user.pw_name, user.pw_gid)
            account = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": groups}
            env.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)
        done = subprocess.run([str(self._bindir / tool), *args], check=False, capture_output=True, text=True,
                              env=env, cwd=self.base_dir, stdin=subprocess.DEVNULL, **account)
        if check and done.returncode != 0:
            raise EmbeddedError(f"{tool} failed (exit status {done.returncode}): "
                                f"{(done.stderr or done.stdout).strip()}{_tail(self.log_path)}")
        return done

    def _own(self, *paths: Path) -> None:
        """As root: hand `paths` to the server's user, after checking that it can reach them at all."""
        if (user := self._account) is None:
            return
        groups = set(os.getgrouplist(user.pw_name, user.pw_gid))
        for parent in reversed(self.base_dir.parents):
            info = parent.stat()
            if info.st_uid == user.pw_uid:
                bit = stat.S_IXUSR
            elif info.st_gid in groups:
                bit = stat.S_IXGRP
            else:
                bit = stat.S_IXOTH
            if not info.st_mode & bit:
                raise EmbeddedError(f"{parent} is not traversable by user `{user.pw_name}`, which PostgreSQL runs as "
                                    f"because root may not: put {self.base_dir} elsewhere "
                                    "(e.g. under /var/lib or /tmp)")
        for path in paths:
            os.chown(path, user.pw_uid, user.pw_gid)

    def _sql(self, sql: str) -> str:
        args = ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self.socket_dir), "-p", str(self.port or 5432)]
        return self._run("psql", *args, "-U", SUPERUSER, "-d", "postgres", "-tAc", sql).stdout.strip()

    def _postmaster(self) -> int | None:
        """The pid in postmaster.pid if a postgres process has it (after a crash that pid may be anyone's)."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        args = _process_args(pid)
        return pid if args and Path(args[0]).name == "postgres" else None

    def _pg_ctl_stop(self, mode: str, timeout: float, check: bool = True) -> bool:
        return self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", mode, "-w", "-t", str(max(1, int(timeout))),
                         check=check).returncode == 0

    def start(self, timeout: float = 30.0) -> str:
        """Create the cluster on first use, start it, create `database` if missing; returns its DSN."""
        self._bindir = _postgres_bindir()
        if self._started and self._postmaster():
            return self.dsn
        self.socket_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.base_dir.chmod(0o700)  # its log may hold queries
        self._own(self.base_dir, self.socket_dir)
        if not self.data_dir.exists():
            # initdb into a scratch dir renamed when complete: a killed initdb never leaves half a cluster.
            scratch = self.base_dir / "data.initdb"
            shutil.rmtree(scratch, ignore_errors=True)
            # Trust authentication is acceptable only because nobody else can reach the server: its socket
            # is in a 0700 directory owned by the server's user (root, the service, passes that anyway; a
            # non-root service *is* that user), and TCP is only for tests, on 127.0.0.1.
            self._run("initdb", "-D", str(scratch), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-locale",
                      *([] if self.durable else ["--no-sync"]))
            with open(scratch / "postgresql.conf", "a") as conf:
                conf.write("\n# executor: settings rewritten at every start\ninclude_if_exists = 'executor.conf'\n")
            scratch.rename(self.data_dir)
        self._write_settings()
        if self._postmaster():  # left running by an earlier owner that was killed: restart with our settings
            self._pg_ctl_stop("fast", timeout)
        else:  # a killed server's lock files may name a pid since reused by another process: postgres would refuse
            for lock in [self.data_dir / "postmaster.pid", *self.socket_dir.glob(".s.PGSQL.*")]:
                lock.unlink(missing_ok=True)
        self._run("pg_ctl", "start", "-D", str(self.data_dir), "-l", str(self.log_path), "-w",
                  "-t", str(max(1, int(timeout))))
        self._started = True
        try:
            if self._sql(f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'") != "1":
                self._sql(f'CREATE DATABASE "{self.database}"')
        except BaseException:
            self.stop()  # a server start() did not hand over would never be stopped
            raise
        return self.dsn

    def _write_settings(self) -> None:
        """Settings in a file postgresql.conf includes: no option string for pg_ctl to parse."""
        def quoted(value: object) -> str:
            return "'" + str(value).replace("'", "''") + "'"

        settings = {
            "listen_addresses": quoted("127.0.0.1" if self.port is not None else ""),
            "port": str(self.port or 5432),  # without TCP it only names the socket file
            "unix_socket_directories": quoted(self.socket_dir),
            "unix_socket_permissions": "0700",
            "max_connections": "100",
            "shared_buffers": quoted("128MB"),
        }
        if not self.durable:  # a throwaway cluster: speed over crash safety
            settings.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        path = self.data_dir / "executor.conf"
        path.write_text("".join(f"{key} = {value}\n" for key, value in settings.items()))
        self._own(path)

    def create_database(self, name: str) -> str:
        """A new, empty database in this started cluster; returns its DSN."""
        if not _NAME.fullmatch(name):
            raise EmbeddedError(f"unsupported database name {name!r} (lower-case letters, digits, _)")
        if not self._started:
            raise EmbeddedError("start() the cluster before creating databases in it")
        self._sql(f'CREATE DATABASE "{name}"')
        return self._dsn(name)

    def stop(self) -> None:
        """Stop the server (fast: sessions are cut off) and wait until all its processes have exited."""
        if not self._started:
            return
        self._started = False
        if not self._pg_ctl_stop("fast", 60, check=False) and self._postmaster():
            self._pg_ctl_stop("immediate", 30)


class EmbeddedRedis:
    """A redis-server in `base_dir`: its generated redis.conf, redis.log and (when durable) the append-only file."""

    def __init__(self, base_dir: Path, *, port: int | None = None, durable: bool = True) -> None:
        self.port, self.durable = port, durable
        self.base_dir = _checked_dir(base_dir, "redis.sock")
        self.socket_path, self.config_path = self.base_dir / "redis.sock", self.base_dir / "redis.conf"
        self.pid_path, self.log_path = self.base_dir / "redis.pid", self.base_dir / "redis.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.port is not None:
            return f"redis://127.0.0.1:{self.port}/0"
        return f"unix://{quote(str(self.socket_path))}?db=0"

    def start(self, timeout: float = 10.0) -> str:
        """Start redis-server (no-op while this object's server runs) and wait until it answers PING."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise EmbeddedError("redis-server not found on PATH (install Debian's `redis-server` package)")
        if self._process is not None and self._process.poll() is None:
            return self.url
        self.base_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.base_dir.chmod(0o700)  # the AOF holds the jobs
        self._stop_leftover()

        def quoted(value: object) -> str:
            return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'

        # A config file rather than a command line; the title is kept so that _stop_leftover can recognise it.
        config = [f"dir {quoted(self.base_dir)}", f"pidfile {quoted(self.pid_path)}", 'logfile ""', "daemonize no",
                  "set-proc-title no", "protected-mode yes", 'save ""', f"appendonly {'yes' if self.durable else 'no'}"]
        if self.port is None:
            config += ["port 0", f"unixsocket {quoted(self.socket_path)}", "unixsocketperm 700"]
        else:
            config += ["bind 127.0.0.1", f"port {int(self.port)}"]
        self.config_path.write_text("\n".join(config) + "\n")
        with open(self.log_path, "ab") as log:  # config errors go to stderr: both streams go to the log
            self._process = subprocess.Popen([binary, str(self.config_path)], stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT, start_new_session=True)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self._process.poll() is not None:
                    code, self._process = self._process.returncode, None
                    raise EmbeddedError(f"redis-server exited with status {code}{_tail(self.log_path)}")
                try:
                    if client.ping():
                        return self.url
                except redis.exceptions.ConnectionError:  # not listening yet, or still loading its AOF
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise EmbeddedError(f"redis-server did not answer within {timeout:g} s{_tail(self.log_path)}")
                time.sleep(0.05)
        finally:
            client.close()

    def _stop_leftover(self) -> None:
        """Stop a server whose earlier owner was killed: two servers must never share one AOF or socket."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return
        if str(self.config_path) not in _process_args(pid):
            return  # a stale pid file: that pid is gone, or is someone else now
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + 10
            while _process_args(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if not _process_args(pid):
                return

    def stop(self) -> None:
        """SIGTERM (Redis flushes its AOF), SIGKILL after 10 s; returns once the process has exited."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
