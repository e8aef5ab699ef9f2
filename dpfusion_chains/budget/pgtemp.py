"""A throwaway local PostgreSQL server for tests, benchmarks and trying the PostgreSQL ledger.

Not for production (trust authentication, data in a temp dir that `stop` deletes; see the
README for a real set-up). Needs the server binaries (``initdb``, ``pg_ctl``); on Debian/Ubuntu
``apt-get install postgresql`` puts them in /usr/lib/postgresql/<version>/bin, which is searched.
PostgreSQL refuses to run as root, so under root the server runs as an unprivileged system user
(``dpfusion-pg``, created if missing, else ``nobody``).
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

SERVICE_USER = "dpfusion-pg"


def find_pg_bin() -> Path | None:
    """Directory holding initdb and pg_ctl, or None."""
    candidates: list[Path] = []
    found = shutil.which("initdb")
    if found:
        candidates.append(Path(found).parent)

    def version(path: str) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", path)) or (0,)

    for pattern in ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin", "/opt/homebrew/opt/postgresql*/bin"):
        candidates += [Path(p) for p in sorted(glob.glob(pattern), key=version, reverse=True)]
    candidates.append(Path("/usr/local/pgsql/bin"))
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "pg_ctl").is_file():
            return directory
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _service_user() -> str | None:
    """The OS user to run the server as: None when we are not root (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVICE_USER)
        return SERVICE_USER
    except KeyError:
        pass
    made = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
        capture_output=True,
        text=True,
    )
    return SERVICE_USER if made.returncode == 0 else "nobody"


class TemporaryPostgres:
    """``with TemporaryPostgres() as pg: pg.url`` — a fresh server on 127.0.0.1 and a free port."""

    def __init__(self, *, fsync: bool = False, bin_dir: Path | None = None) -> None:
        self.fsync = fsync
        self.bin_dir = bin_dir
        self.url = ""
        self._dir: Path | None = None
        self._user: str | None = None

    def _cmd(self, *args: str) -> list[str]:
        if self._user is None:
            return list(args)
        if shutil.which("runuser"):
            return ["runuser", "-u", self._user, "--", *args]
        import shlex

        return ["su", "-s", "/bin/sh", self._user, "-c", shlex.join(args)]

    def _run(self, *args: str) -> None:
        done = subprocess.run(self._cmd(*args), capture_output=True, text=True, cwd=self._dir, timeout=120)
        if done.returncode != 0:
            log = self._dir / "server.log" if self._dir else None
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}\n{tail}")

    def start(self) -> str:
        bin_dir = self.bin_dir or find_pg_bin()
        if bin_dir is None:
            raise FileNotFoundError(
                "PostgreSQL server binaries (initdb, pg_ctl) not found; install them, e.g. apt-get install -y postgresql"
            )
        self._user = _service_user()
        self._dir = Path(tempfile.mkdtemp(prefix="dpfusion-pg-"))
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(self._dir, entry.pw_uid, entry.pw_gid)
        os.chmod(self._dir, 0o700)
        data = self._dir / "data"
        port = _free_port()
        self._pg_ctl = bin_dir / "pg_ctl"
        options = f"-h 127.0.0.1 -p {port} -k {self._dir} -c fsync={'on' if self.fsync else 'off'} -c max_connections=100"
        try:
            self._run(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync")
            self._run(str(self._pg_ctl), "-D", str(data), "-l", str(self._dir / "server.log"), "-w", "-t", "60", "-o", options, "start")
        except BaseException:
            self.stop()
            raise
        atexit.register(self.stop)
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        return self.url

    def stop(self) -> None:
        if self._dir is None:
            return
        directory, self._dir = self._dir, None
        subprocess.run(
            self._cmd(str(self._pg_ctl), "-D", str(directory / "data"), "-m", "immediate", "-w", "stop"),
            capture_output=True,
            cwd="/",
            timeout=60,
        )
        shutil.rmtree(directory, ignore_errors=True)

    def __enter__(self) -> TemporaryPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
