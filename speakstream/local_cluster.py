"""The README's "Growing beyond one machine" run on this machine, for its test and its benchmark:
a model server (`transformers serve`), page servers (`python app.py`) and Debian's nginx in
front, started from the README's own commands and configuration (only the addresses differ).

Every server listens on 127.0.0.1. Visitors all connect from there too, so nginx is told to
take a visitor's address from X-Forwarded-For, as the README says to where a proxy stands in
front of it: a benchmark's or a test's visitor is the address it sends there.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from speakstream.local_app import ROOT, free_port, serves, start_app, stop_app

SECTION = "Growing beyond one machine"
TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")  # nginx's default folders need root


@dataclass(frozen=True)
class Recipe:
    """The README section's page-server command, nginx configuration, and lines for a proxy in front."""

    command: str
    site: str
    front: str

    @classmethod
    def read(cls) -> Recipe:
        readme = (ROOT / "README.md").read_text(encoding="utf-8")
        section = readme.split(f"\n## {SECTION}\n", 1)[1].split("\n## ", 1)[0]
        blocks = re.findall(r"```(\w+)\n(.*?)```", section, re.S)
        commands = [text for kind, text in blocks if kind == "bash"]
        configs = [text for kind, text in blocks if kind == "nginx"]
        if len(commands) != 1 or len(configs) != 2:
            raise ValueError(f"the README's {SECTION!r} changed shape: update speakstream/local_cluster.py")
        return cls(commands[0], *configs)

    def page_server(self, port: int, model_url: str, env: dict[str, str]) -> tuple[dict[str, str], list[str]]:
        """The environment (the recipe's, under ``env``) and arguments of the `python app.py` line,
        for a page server on ``port``; a value the shell would work out must be in ``env``."""
        line = next(line for line in self.command.replace("\\\n", " ").splitlines() if "python app.py" in line)
        words = shlex.split(line)
        at = words.index("python")
        arguments = " ".join(words[at + 2 :])
        arguments = _replaced(arguments, "--host 0.0.0.0 --port 7860", f"--host 127.0.0.1 --port {port}")
        arguments = _replaced(arguments, "http://model-server:8000", model_url)
        environment = {**dict(word.split("=", 1) for word in words[:at]), **env}
        if unset := [name for name, value in environment.items() if "$" in value]:
            raise ValueError(f"give {', '.join(unset)} a value: the README's recipe has the shell make it")
        return environment, arguments.split()

    def nginx_site(self, port: int, upstream_ports: list[int]) -> str:
        """The configuration, listening on ``port`` in front of the page servers on ``upstream_ports``."""
        servers = "".join(f"    server 127.0.0.1:{upstream};\n" for upstream in upstream_ports)
        site = _replaced(self.site, "    server page-1:7860;\n    server page-2:7860;\n", servers)
        front = _replaced(self.front, "set_real_ip_from 10.0.0.0/8;", "set_real_ip_from 127.0.0.1;")
        return _replaced(site, "    listen 80;\n", f"    listen 127.0.0.1:{port};\n{front}")


def visitor_address(number: int) -> str:
    """A visitor's address, apart from the others' in every part: nginx's hash of near addresses
    (10.0.0.1, 10.0.1.1, ...) may put them all on one server."""
    return f"10.{(number * 73 + 11) % 256}.{(number * 151 + 7) % 256}.{number * 29 % 250 + 1}"


def _replaced(text: str, old: str, new: str) -> str:
    """``text`` with ``old`` replaced, which must be there (else the README changed under us)."""
    if old not in text:
        raise ValueError(f"the README's {SECTION!r} no longer has {old!r}: update speakstream/local_cluster.py")
    return text.replace(old, new)


@contextmanager
def model_server(folder: str, log: Path, timeout: float = 180) -> Iterator[str]:
    """`transformers serve` on the model in ``folder``, offline; yields its URL once it lists its models."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("w") as out:
        process = subprocess.Popen(
            [Path(sys.executable).with_name("transformers"), "serve", "--port", str(port), folder],
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        if not serves(f"{url}/v1/models", process, timeout):
            raise RuntimeError(f"transformers serve did not start:\n{log.read_text()[-3000:]}")
        yield url
    finally:
        stop_app(process)


def metric(url: str, name: str) -> float:
    """One figure of the /metrics of the page server at ``url``."""
    import httpx

    text = httpx.get(f"{url.rstrip('/')}/metrics", timeout=10).text
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    if found is None:
        raise ValueError(f"{name} is not in {url}'s /metrics")
    return float(found.group(1))


@dataclass
class Replicas:
    """Page servers behind nginx, as started."""

    url: str  # nginx's
    ports: list[int]  # the page servers'
    processes: list[subprocess.Popen[bytes]]
    folder: Path  # logs and nginx's files


@contextmanager
def replicas_behind_nginx(count: int, model_url: str, env: dict[str, str], folder: Path) -> Iterator[Replicas]:
    """``count`` page servers on the model server at ``model_url`` (with ``env`` over the recipe's
    environment), behind nginx; yields once nginx serves the page."""

    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise RuntimeError("nginx not found: apt-get install nginx")
    recipe = Recipe.read()
    ports = [free_port() for _ in range(count)]
    processes: list[subprocess.Popen[bytes]] = []
    balancer = None

    def page_server(port: int) -> subprocess.Popen[bytes]:
        environment, arguments = recipe.page_server(port, model_url, env)
        with (folder / f"page-{port}.log").open("w") as log:
            return start_app(port, {**os.environ, **environment}, log, arguments)

    try:
        with ThreadPoolExecutor(count) as starting:
            starts = [starting.submit(page_server, port) for port in ports]
        processes.extend(start.result() for start in starts if start.exception() is None)
        for start in starts:  # (every one that started is stopped below)
            if start.exception() is not None:
                raise RuntimeError(f"a page server did not start (logs in {folder})") from start.exception()
        here = free_port()
        (folder / "speakstream.conf").write_text(recipe.nginx_site(here, ports))
        (folder / "nginx.conf").write_text(
            # (as root, nginx's workers would run as nobody, who may not enter a test's folders)
            ("user root;\n" if os.geteuid() == 0 else "")
            + f"daemon off;\npid {folder}/nginx.pid;\nerror_log {folder}/error.log;\n"
            + "events { worker_connections 1024; }\n"
            + f"http {{\n    access_log {folder}/access.log;\n"
            + "".join(f"    {kind}_temp_path {folder}/{kind};\n" for kind in TEMP_PATHS)
            + f"    include {folder}/speakstream.conf;\n}}\n"
        )
        balancer = subprocess.Popen([nginx, "-p", str(folder), "-c", str(folder / "nginx.conf")])
        url = f"http://127.0.0.1:{here}/"
        if not serves(url, balancer, 30):
            raise RuntimeError(f"nginx did not serve the page:\n{(folder / 'error.log').read_text()[-3000:]}")
        yield Replicas(url, ports, processes, folder)
    finally:
        if balancer is not None:
            stop_app(balancer)
        for process in processes:
            stop_app(process)
