"""Throwaway certificates for TLS servers and clients, made with the ``openssl`` command line (no Python dependency).

A CA signs a server certificate for 127.0.0.1/localhost and a client certificate; a second, unrelated CA
stands for "a CA that does not vouch for this server". EC P-256 keys, valid for two days.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

MISSING_OPENSSL = "openssl not found: install the Debian package openssl (apt-get install -y openssl)"
_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for a TLS server: its certificate and key, the CA it trusts, and a client's certificate and key."""

    ca_cert: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str


def _openssl(*args: str | Path) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise RuntimeError(MISSING_OPENSSL)
    result = subprocess.run([binary, *map(str, args)], capture_output=True, text=True, check=False, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(map(str, args[:2]))} failed:\n{result.stderr}")


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA: (certificate, key)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    ca_extensions = ["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]
    _openssl(
        "req",
        "-x509",
        "-new",
        *_KEY,
        "-keyout",
        key,
        "-out",
        cert,
        "-days",
        "2",
        "-subj",
        f"/CN={name}",
        *ca_extensions,
    )
    return cert, key


def _leaf(directory: Path, name: str, ca: tuple[Path, Path], usage: str, serial: int) -> tuple[Path, Path]:
    cert, key, csr, extensions = (directory / f"{name}.{ext}" for ext in ("crt", "key", "csr", "ext"))
    extensions.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage={usage}\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n"
    )
    _openssl("req", "-new", *_KEY, "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
    signing: list[str | Path] = ["-CA", ca[0], "-CAkey", ca[1], "-set_serial", str(serial), "-days", "2"]
    _openssl("x509", "-req", "-in", csr, *signing, "-out", cert, "-extfile", extensions)
    return cert, key


def make_tls_files(directory: Path) -> TlsFiles:
    """A CA, a server certificate for 127.0.0.1 and a client certificate it signed, under ``directory``."""
    ca = make_ca(directory, "stashly-test-ca")
    server = _leaf(directory, "server", ca, "serverAuth", serial=2)
    client = _leaf(directory, "client", ca, "clientAuth", serial=3)
    return TlsFiles(str(ca[0]), str(server[0]), str(server[1]), str(client[0]), str(client[1]))
