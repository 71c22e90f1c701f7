"""Certificates for the TLS tests, made at test time with trustme: a CA, a server certificate
for 127.0.0.1 and localhost, a client certificate, and their PEM files in a directory.

Nothing here is a fixture: test modules make a `Pki` once per module (making keys takes a
few milliseconds each) and build the client contexts they need from it.
"""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import attrs
import trustme
from cryptography.hazmat.primitives import serialization

HOSTS = ("127.0.0.1", "localhost")


@attrs.frozen
class Pki:
    """One CA and what it signed, written to `directory`."""

    ca: trustme.CA
    directory: Path
    cert: Path  # the server's certificate chain
    key: Path  # the server's private key
    ca_file: Path  # the CA's certificate: what clients trust, and --tls-client-ca
    client_cert: Path  # a client certificate signed by the CA ...
    client_key: Path  # ... and its key

    def client(self, *, certificate: bool = False) -> ssl.SSLContext:
        """A client context that trusts this CA (and presents the client certificate)."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        if certificate:
            context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context

    def server_flags(self, *, client_ca: bool = False) -> tuple[str, ...]:
        flags = ("--tls-cert", str(self.cert), "--tls-key", str(self.key))
        return (*flags, "--tls-client-ca", str(self.ca_file)) if client_ca else flags


def make(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    server = ca.issue_cert(*HOSTS)
    client = ca.issue_cert("worker@example.test")
    paths = {name: directory / f"{name}.pem" for name in
             ("cert", "key", "ca", "client-cert", "client-key")}
    server.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    for blob in server.cert_chain_pems[1:]:
        blob.write_to_path(str(paths["cert"]), append=True)
    server.private_key_pem.write_to_path(str(paths["key"]))
    ca.cert_pem.write_to_path(str(paths["ca"]))
    client.cert_chain_pems[0].write_to_path(str(paths["client-cert"]))
    client.private_key_pem.write_to_path(str(paths["client-key"]))
    return Pki(ca, directory, paths["cert"], paths["key"], paths["ca"], paths["client-cert"],
               paths["client-key"])


def expired(pki: Pki) -> tuple[Path, Path]:
    """A server certificate from the same CA that expired yesterday: (cert, key) files."""
    now = datetime.datetime.now(datetime.UTC)
    leaf = pki.ca.issue_cert(*HOSTS, not_before=now - datetime.timedelta(days=30),
                             not_after=now - datetime.timedelta(days=1))
    cert, key = pki.directory / "expired-cert.pem", pki.directory / "expired-key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    return cert, key


def encrypted_key(pki: Pki) -> Path:
    """The server's key, encrypted with a password."""
    key = serialization.load_pem_private_key(pki.key.read_bytes(), password=None)
    path = pki.directory / "encrypted-key.pem"
    path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")))
    return path
