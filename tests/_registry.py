"""A private registry for tests and benchmarks: Debian's ``docker-registry``
(the Distribution server) on a free loopback port, and OCI image layouts of
a busybox image built here from ``busybox-static``, pushed with skopeo."""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import http.server
import io
import json
import secrets
import socket
import subprocess
import tarfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

BUSYBOX = "/bin/busybox"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def busybox_layer() -> bytes:
    """An uncompressed layer tar: /bin/busybox and a link per applet."""
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("bin", "etc", "tmp", "proc", "sys", "dev", "root"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        with open(BUSYBOX, "rb") as f:
            data = f.read()
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
        for name in sorted(set(applets.stdout.split()) - {"busybox"}):
            info = tarfile.TarInfo(f"bin/{name}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
        passwd = b"root:x:0:0:root:/root:/bin/sh\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(passwd)
        tar.addfile(info, io.BytesIO(passwd))
    return buf.getvalue()


@dataclass
class Layout:
    path: Path
    manifest_digest: str
    index_digest: str | None = None


def _blob(root: Path, data: bytes) -> dict[str, object]:
    name = digest(data)
    (root / "blobs" / "sha256" / name[7:]).write_bytes(data)
    return {"digest": name, "size": len(data)}


def build_layout(root: Path, layer_tar: bytes, *, multi: bool = False) -> Layout:
    """An OCI image layout with busybox for linux/amd64 (and, with
    ``multi``, an index that also offers a linux/arm64 manifest)."""
    (root / "blobs" / "sha256").mkdir(parents=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    diff_id = digest(layer_tar)
    layer = {
        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
        **_blob(root, gzip.compress(layer_tar, mtime=0)),
    }
    manifests = []
    for arch in ("amd64", "arm64") if multi else ("amd64",):
        config = {
            "architecture": arch,
            "os": "linux",
            "config": {
                "Cmd": ["sh", "-c", "echo hello from $GREETING"],
                "Env": ["GREETING=the image"],
                "WorkingDir": "/tmp",
            },
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
        cfg = {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            **_blob(root, json.dumps(config).encode()),
        }
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": cfg,
            "layers": [layer],
        }
        desc = {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            **_blob(root, json.dumps(manifest).encode()),
            "platform": {"architecture": arch, "os": "linux"},
        }
        manifests.append(desc)
    amd64 = str(manifests[0]["digest"])
    if multi:
        index = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        }
        top = {
            "mediaType": "application/vnd.oci.image.index.v1+json",
            **_blob(root, json.dumps(index).encode()),
            "annotations": {"org.opencontainers.image.ref.name": "1"},
        }
        outer = {"schemaVersion": 2, "manifests": [top]}
        (root / "index.json").write_text(json.dumps(outer))
        return Layout(root, amd64, str(top["digest"]))
    manifests[0]["annotations"] = {"org.opencontainers.image.ref.name": "1"}
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": manifests}))
    return Layout(root, amd64)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Registry:
    host: str
    data: Path
    busybox: Layout
    multi: Layout


def start_registry(
    tmp: Path, *, htpasswd: Path | None = None, tokens: TokenService | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    auth = ""
    if htpasswd is not None:
        auth = f"auth:\n  htpasswd:\n    realm: test\n    path: {htpasswd}\n"
    elif tokens is not None:
        auth = tokens.auth_config()
    config = tmp / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\n"
        f"storage:\n  filesystem:\n    rootdirectory: {tmp / 'data'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n{auth}"
    )
    log = open(tmp / "registry.log", "wb")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=log)
    log.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"127.0.0.1:{port}"
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the registry did not start: " + (tmp / "registry.log").read_text())


def push(layout: Layout, dest: str, *, creds: str | None = None, all_: bool = False) -> None:
    cmd = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false"]
    if all_:
        cmd.append("--all")
    if creds:
        cmd += ["--dest-creds", creds]
    subprocess.run([*cmd, f"oci:{layout.path}:1", f"docker://{dest}"], check=True, timeout=120)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def busybox_registry(tmp: Path) -> Iterator[tuple[str, Layout]]:
    """A running registry under ``tmp`` holding ``HOST/busybox:1``; yields
    (host:port, the layout pushed), stopped however the block ends."""
    tmp.mkdir(parents=True, exist_ok=True)
    proc, host = start_registry(tmp)
    try:
        layout = build_layout(tmp / "busybox", busybox_layer())
        push(layout, f"{host}/busybox:1")
        yield host, layout
    finally:
        stop(proc)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenService:
    """The token half of the registry's bearer auth, as Docker Hub runs it:
    ``GET /token?service=..&scope=repository:NAME:ACTIONS`` answers a JWT
    (RS256, signed with ``openssl``, its certificate in ``x5c``) granting
    those actions, to ``alice:s3cret`` only; anonymous and wrong
    credentials get 401. Every request it saw is in :attr:`requests`."""

    USER, PASSWORD = "alice", "s3cret"
    SERVICE, ISSUER = "test-registry", "test-issuer"

    def __init__(self, tmp: Path) -> None:
        self.key, self.cert = tmp / "token.key", tmp / "token.crt"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", "/CN=test-issuer", "-keyout", str(self.key), "-out", str(self.cert)],
            check=True, capture_output=True,
        )  # fmt: skip
        der = subprocess.run(
            ["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
            check=True,
            capture_output=True,
        ).stdout
        self._x5c = base64.b64encode(der).decode()
        self.requests: list[dict[str, object]] = []
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                authorization = self.headers.get("Authorization", "")
                service.requests.append({"query": query, "authorization": authorization})
                expected = (
                    "Basic "
                    + base64.b64encode(f"{service.USER}:{service.PASSWORD}".encode()).decode()
                )
                if authorization != expected:
                    self.send_response(401)
                    self.end_headers()
                    return
                body = json.dumps({"token": service.token(query.get("scope", []))}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self._server.server_address[1]}/token"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def token(self, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        claims = {
            "iss": self.ISSUER, "sub": self.USER, "aud": self.SERVICE, "iat": now,
            "nbf": now - 60, "exp": now + 600, "jti": secrets.token_hex(8), "access": access,
        }  # fmt: skip
        signed = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)],
            input=signed.encode(), check=True, capture_output=True,
        ).stdout  # fmt: skip
        return f"{signed}.{_b64url(signature)}"

    def auth_config(self) -> str:
        """The registry's ``auth:`` section trusting this service."""
        return (
            f"auth:\n  token:\n    realm: {self.realm}\n    service: {self.SERVICE}\n"
            f"    issuer: {self.ISSUER}\n    rootcertbundle: {self.cert}\n"
        )

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# -- a hostile registry ------------------------------------------------------------

Handler = Callable[[http.server.BaseHTTPRequestHandler], None]


@dataclass
class Served:
    """What the hostile registry sent on one path: bytes of body, and whether
    it sent them all (False: the client hung up first)."""

    sent: int = 0
    completed: bool = False


class HostileRegistry:
    """Just enough of the registry API v2, on a loopback port, for a test to
    make any answer hostile: ``routes[path]`` is called with the request
    handler. :meth:`serve_image` installs honest routes for one small image;
    :meth:`stream` sends a body of any size at any pace and records in
    :attr:`served` how much went out before the client hung up."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.served: dict[str, Served] = {}
        self.done: dict[str, threading.Event] = {}
        self.requests: list[str] = []
        self._stopping = threading.Event()
        registry = self

        class RequestHandler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                path = urllib.parse.urlsplit(self.path).path
                registry.requests.append(path)
                route = registry.routes.get(path)
                if route is None:
                    registry.send(self, 404, b'{"errors":[{"code":"NOT_FOUND"}]}')
                else:
                    route(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RequestHandler)
        self._server.daemon_threads = True
        self.host = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @staticmethod
    def send(
        handler: http.server.BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(body)

    def stream(
        self,
        path: str,
        *,
        status: int = 200,
        total: int,
        chunk: bytes = b"x" * 65536,
        pause: float = 0.0,
        content_type: str = "application/octet-stream",
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer ``path`` with ``total`` bytes of ``chunk`` repeated (a
        ``pause`` between writes), announced by Content-Length."""
        served = self.served[path] = Served()
        done = self.done[path] = threading.Event()

        def route(handler: http.server.BaseHTTPRequestHandler) -> None:
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(total))
            for key, value in (headers or {}).items():
                handler.send_header(key, value)
            handler.end_headers()
            try:
                while served.sent < total and not self._stopping.is_set():
                    piece = chunk[: total - served.sent]
                    handler.wfile.write(piece)
                    handler.wfile.flush()
                    served.sent += len(piece)
                    if pause:
                        self._stopping.wait(pause)
                served.completed = served.sent == total
            except OSError:
                handler.close_connection = True
            finally:
                done.set()

        self.routes[path] = route

    def serve_image(self, repo: str, tag: str, layer: bytes) -> tuple[str, str]:
        """Honest routes for ``repo:tag``, one gzipped layer: (manifest
        digest, layer digest)."""
        blob = gzip.compress(layer, mtime=0)
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": [digest(layer)]},
            }
        ).encode()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": digest(config),
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": digest(blob),
                        "size": len(blob),
                    }
                ],
            }
        ).encode()
        oci = "application/vnd.oci.image.manifest.v1+json"
        for name, body, kind in (
            (f"/v2/{repo}/manifests/{tag}", manifest, oci),
            (f"/v2/{repo}/manifests/{digest(manifest)}", manifest, oci),
            (f"/v2/{repo}/blobs/{digest(config)}", config, "application/octet-stream"),
            (f"/v2/{repo}/blobs/{digest(blob)}", blob, "application/octet-stream"),
        ):
            self.routes[name] = (
                lambda h, body=body, kind=kind: self.send(h, 200, body, kind)  # type: ignore[misc]
            )
        return digest(manifest), digest(blob)

    def close(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()


# -- TLS ---------------------------------------------------------------------------


@dataclass
class Certificates:
    """A private CA (made here with openssl), a server certificate it signed
    for 127.0.0.1 and localhost, and a client certificate it signed."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(tmp: Path) -> Certificates:
    tmp.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-days", "2", "-subj", "/CN=supervisor test CA",
             "-keyout", "ca.key", "-out", "ca.crt",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=tmp)  # fmt: skip
    for name, usage, subject, alt in (
        ("server", "serverAuth", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ("client", "clientAuth", "/CN=alice", ""),
    ):
        _openssl("req", *ec, "-subj", subject, "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", cwd=tmp)  # fmt: skip
        (tmp / f"{name}.ext").write_text(f"extendedKeyUsage={usage}\n" + (alt and alt + "\n"))
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext",
                 "-out", f"{name}.crt", cwd=tmp)  # fmt: skip
    return Certificates(
        tmp / "ca.crt", tmp / "server.crt", tmp / "server.key", tmp / "client.crt",
        tmp / "client.key",
    )  # fmt: skip


def start_tls_registry(
    tmp: Path,
    certs: Certificates,
    *,
    client_auth: bool = False,
    htpasswd: Path | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """A ``docker-registry`` on 127.0.0.1 serving TLS with ``certs``' server
    certificate (and, with ``client_auth``, wanting a client certificate
    signed by the same CA)."""
    port = free_port()
    auth = ""
    if htpasswd is not None:
        auth = f"auth:\n  htpasswd:\n    realm: test\n    path: {htpasswd}\n"
    tls = f"  tls:\n    certificate: {certs.server_cert}\n    key: {certs.server_key}\n"
    if client_auth:
        tls += f"    clientcas:\n      - {certs.ca}\n"
    config = tmp / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\n"
        f"storage:\n  filesystem:\n    rootdirectory: {tmp / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n{tls}{auth}"
    )
    log = open(tmp / "registry.log", "wb")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=log)
    log.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"127.0.0.1:{port}"
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the registry did not start: " + (tmp / "registry.log").read_text())


def docker_cert_dir(directory: Path, certs: Certificates, *, client: bool = True) -> Path:
    """A directory as docker's ``certs.d/<host>/`` (and skopeo's
    ``--cert-dir``) reads it: ``ca.crt``, ``client.cert``, ``client.key``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca.crt").write_bytes(certs.ca.read_bytes())
    if client:
        (directory / "client.cert").write_bytes(certs.client_cert.read_bytes())
        (directory / "client.key").write_bytes(certs.client_key.read_bytes())
    return directory


def push_tls(layout: Layout, dest: str, cert_dir: Path, *, creds: str | None = None) -> None:
    cmd = ["skopeo", "copy", "--quiet", f"--dest-cert-dir={cert_dir}"]
    if creds:
        cmd += ["--dest-creds", creds]
    subprocess.run([*cmd, f"oci:{layout.path}:1", f"docker://{dest}"], check=True, timeout=120)
