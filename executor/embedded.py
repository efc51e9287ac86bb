"""Private PostgreSQL and Redis servers, started from the installed server binaries.

Used by `executor up` when no database or Redis URL is configured (data under
the state directory, unix sockets only) and by the test suite (a throwaway
cluster on a free loopback port). Synchronous: it runs before the event loop.

PostgreSQL refuses to run as root, so as root the cluster runs as the
`postgres` user (else `nobody`); its base directory must then be traversable
by that user, which is why the service's default state dir for root is
/var/lib/executor and never under /root (mode 0700).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import redis

SUPERUSER = "executor"


class EmbeddedError(Exception):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _postgres_bindir() -> Path:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    if versions:
        return versions[-1].parent
    found = shutil.which("postgres")
    if found:
        return Path(found).resolve().parent
    raise EmbeddedError("PostgreSQL server binaries not found (install Debian's `postgresql` package)")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class EmbeddedPostgres:
    def __init__(self, base_dir: Path, *, port: int | None = None, database: str = "executor",
                 durable: bool = True) -> None:
        self.base_dir = Path(base_dir)
        self.port = port
        self.database = database
        self.durable = durable
        self.data_dir = self.base_dir / "data"
        self.socket_dir = self.base_dir / "run"
        self.log_path = self.base_dir / "postgres.log"
        self._bindir: Path | None = None
        self._started = False
        # Root may not run PostgreSQL: use an unprivileged account then.
        self._user = None
        if os.geteuid() == 0:
            self._user = "postgres" if _user_exists("postgres") else "nobody"

    @property
    def dsn(self) -> str:
        return self._dsn(self.database)

    def _dsn(self, database: str) -> str:
        if self.port is not None:
            return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"
        return f"postgresql://{SUPERUSER}@/{database}?host={quote(str(self.socket_dir), safe='/')}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert self._bindir is not None
        command = [str(self._bindir / args[0]), *args[1:]]
        done = subprocess.run(command, user=self._user, capture_output=True, text=True, cwd=self.base_dir)
        if check and done.returncode != 0:
            raise EmbeddedError(f"{args[0]} failed ({done.returncode}): {done.stderr.strip()}\n{_tail(self.log_path)}")
        return done

    def start(self, timeout: float = 30.0) -> str:
        self._bindir = _postgres_bindir()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        if self._user:
            uid, gid = pwd.getpwnam(self._user)[2:4]
            for path in (self.base_dir, self.socket_dir):
                os.chown(path, uid, gid)
        if not (self.data_dir / "PG_VERSION").exists():
            # trust auth is safe only because nobody else can reach the server: a unix
            # socket in a 0700 directory, or loopback for the throwaway test cluster.
            self._run("initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                      "--no-locale")
            self._write_config()
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_path), "-w", "-t", str(int(timeout)),
                  "start")
        self._started = True
        exists = self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'", "postgres")
        if exists.strip() != "1":
            self._run("createdb", *self._conn_args(), "-U", SUPERUSER, self.database)
        return self.dsn

    def _write_config(self) -> None:
        settings = {
            "listen_addresses": "'127.0.0.1'" if self.port is not None else "''",
            "port": str(self.port or 5432),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "max_connections": "100",
            "shared_buffers": "'128MB'",
        }
        if not self.durable:  # a throwaway cluster: speed over crash safety
            settings.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        lines = "".join(f"{key} = {value}\n" for key, value in settings.items())
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write("\n# executor embedded server\n" + lines)

    def _conn_args(self) -> list[str]:
        return ["-h", str(self.socket_dir), "-p", str(self.port or 5432)]

    def _psql(self, sql: str, database: str) -> str:
        return self._run("psql", *self._conn_args(), "-U", SUPERUSER, "-d", database, "-tAc", sql).stdout

    def create_database(self, name: str) -> str:
        if not name.replace("_", "").isalnum():
            raise EmbeddedError(f"unsafe database name {name!r}")
        self._run("createdb", *self._conn_args(), "-U", SUPERUSER, name)
        return self._dsn(name)

    def stop(self) -> None:
        if not self._started:
            return
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop", check=False)
        self._started = False


class EmbeddedRedis:
    def __init__(self, base_dir: Path, *, port: int | None = None, durable: bool = True) -> None:
        self.base_dir = Path(base_dir)
        self.port = port
        self.durable = durable
        self.socket_path = self.base_dir / "redis.sock"
        self.log_path = self.base_dir / "redis.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.port is not None:
            return f"redis://127.0.0.1:{self.port}/0"
        return f"unix://{self.socket_path}?db=0"

    def start(self, timeout: float = 10.0) -> str:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(binary).exists():
            raise EmbeddedError("redis-server not found (install Debian's `redis-server` package)")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        config = [
            f"dir {self.base_dir}",
            f"logfile {self.log_path}",
            "daemonize no",
            "protected-mode yes",
            'save ""',
            f"appendonly {'yes' if self.durable else 'no'}",
        ]
        if self.port is None:
            config += ["port 0", f"unixsocket {self.socket_path}", "unixsocketperm 700"]
        else:
            config += ["bind 127.0.0.1", f"port {self.port}"]
        config_path = self.base_dir / "redis.conf"
        config_path.write_text("\n".join(config) + "\n")
        self._process = subprocess.Popen([binary, str(config_path)], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, start_new_session=True)
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self._process.poll() is not None:
                    raise EmbeddedError(f"redis-server exited ({self._process.returncode}):\n{_tail(self.log_path)}")
                try:
                    if client.ping():
                        return self.url
                except redis.exceptions.ConnectionError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise EmbeddedError(
                            f"redis-server did not answer within {timeout:g} s:\n{_tail(self.log_path)}"
                        ) from None
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False
