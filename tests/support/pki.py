"""Test certificates and password hashes."""

from __future__ import annotations

import base64
import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import bcrypt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# --- Certificates and password hashes ------------------------------------------------------------


@dataclass
class Pki:
    """PEM files of the test certificates (see `make_pki`)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path
    rogue_key: Path
    other_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject, issuer, public_key, signing_key, *, ca=False, usage=None, san=None):
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False),
            critical=True,
        )
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def _write(path: Path, cert=None, key=None) -> Path:
    if cert is not None:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return path


def make_pki(d: Path) -> Pki:
    """A test CA, a server certificate for 127.0.0.1/localhost, a client certificate signed by
    the CA, one signed by another CA, and a spare key: PEM files in `d`."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate(_name("test CA"), _name("test CA"), ca_key.public_key(), ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _certificate(
        _name("127.0.0.1"),
        ca.subject,
        server_key.public_key(),
        ca_key,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        san=[x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")],
    )
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _certificate(
        _name("scraper"),
        ca.subject,
        client_key.public_key(),
        ca_key,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    rogue_ca_key = ec.generate_private_key(ec.SECP256R1())
    rogue_key = ec.generate_private_key(ec.SECP256R1())
    rogue = _certificate(
        _name("scraper"),
        _name("rogue CA"),
        rogue_key.public_key(),
        rogue_ca_key,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    return Pki(
        ca=_write(d / "ca.crt", cert=ca),
        server_cert=_write(d / "server.crt", cert=server),
        server_key=_write(d / "server.key", key=server_key),
        client_cert=_write(d / "client.crt", cert=client),
        client_key=_write(d / "client.key", key=client_key),
        rogue_cert=_write(d / "rogue.crt", cert=rogue),
        rogue_key=_write(d / "rogue.key", key=rogue_key),
        other_key=_write(d / "other.key", key=ec.generate_private_key(ec.SECP256R1())),
    )


def basic_authorization(credentials: str | bytes) -> str:
    """The Authorization value of HTTP basic auth for `user:password` (or any bytes)."""
    raw = credentials.encode() if isinstance(credentials, str) else credentials
    return "Basic " + base64.b64encode(raw).decode()


def bcrypt_hash(password: str) -> str:
    # Cost 4 keeps the tests fast; production hashes use 10 or more.
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
