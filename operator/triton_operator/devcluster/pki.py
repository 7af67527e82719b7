"""A throwaway PKI for the local cluster: CA, serving certificates, client certificates, kubeconfigs.

Every identity is a client certificate signed by one CA (envtest's shape), because certificates need no
token files, no bootstrap and no extra apiserver flags, and the apiserver derives user and groups from CN
and O. The operator gets its own user (``triton-operator``) so the audit policy can log exactly its
requests, which is how the benchmarks count the operator's API writes. Keys are ECDSA P-256: generating a
dozen RSA keys would cost seconds of ``up()`` time for no benefit in a cluster that lives for one test
session.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: The first address of --service-cluster-ip-range, which the ``kubernetes`` Service gets.
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"

_VALIDITY = dt.timedelta(days=3650)
_BACKDATE = dt.timedelta(hours=1)  # tolerate small clock differences between processes


@dataclass(frozen=True)
class CertPair:
    """A certificate and its private key on disk (PEM)."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class ClientIdentity:
    """A user the apiserver will authenticate from a client certificate (CN = user, O = groups)."""

    name: str
    user: str
    groups: tuple[str, ...] = ()


#: Client identities written by :func:`generate_pki`, by file stem.
CLIENT_IDENTITIES: tuple[ClientIdentity, ...] = (
    ClientIdentity("admin", "kubernetes-admin", ("system:masters",)),
    # Its own user so the apiserver audit log can tell the operator's requests apart; masters so the operator
    # can run without the chart's RBAC in the cluster tier (least privilege is proven with the chart).
    ClientIdentity("triton-operator", "triton-operator", ("system:masters",)),
    ClientIdentity("kube-controller-manager", "system:kube-controller-manager"),
    ClientIdentity("kube-scheduler", "system:kube-scheduler"),
    ClientIdentity("kwok", "kwok", ("system:masters",)),
    # What the apiserver presents to kubelets (logs, exec) in the node tier.
    ClientIdentity("apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",)),
)


@dataclass(frozen=True)
class Pki:
    """Paths of everything :func:`generate_pki` wrote."""

    dir: Path
    ca: CertPair
    front_proxy_ca: CertPair
    apiserver: CertPair
    front_proxy_client: CertPair
    #: serving certificate for kube-controller-manager, kube-scheduler and kwok (127.0.0.1 / localhost)
    components: CertPair
    service_account_key: Path
    service_account_pub: Path
    clients: dict[str, CertPair]


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _name(common_name: str, organizations: Sequence[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, now: dt.datetime, *, ca: bool
) -> x509.CertificateBuilder:
    """What every certificate here shares: validity, basic constraints and key usage (signing, and for the CA
    signing certificates and CRLs)."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )


class _Ca:
    """A CA held in memory while the PKI is generated (or loaded again to sign more, see :meth:`load`)."""

    def __init__(self, common_name: str) -> None:
        self.key: ec.EllipticCurvePrivateKey = _new_key()
        now = dt.datetime.now(dt.UTC)
        subject = _name(common_name)
        self.cert = (
            _builder(subject, subject, self.key.public_key(), now, ca=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    @classmethod
    def load(cls, pair: CertPair) -> _Ca:
        """The CA written by :func:`generate_pki`, to sign certificates for components added later."""
        key = serialization.load_pem_private_key(pair.key.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TypeError(f"{pair.key}: not an EC private key")
        ca = cls.__new__(cls)
        ca.key = key
        ca.cert = x509.load_pem_x509_certificate(pair.cert.read_bytes())
        return ca

    def write(self, directory: Path, stem: str) -> CertPair:
        pair = CertPair(directory / f"{stem}.crt", directory / f"{stem}.key")
        _write_cert(pair.cert, self.cert)
        _write_key(pair.key, self.key)
        return pair

    def issue(
        self,
        directory: Path,
        stem: str,
        common_name: str,
        organizations: Sequence[str] = (),
        *,
        server: bool = False,
        client: bool = False,
        dns_names: Sequence[str] = (),
        ip_addresses: Sequence[str] = (),
    ) -> CertPair:
        """Sign a leaf certificate for ``common_name`` and write it with its key as ``<stem>.crt/.key``."""
        key = _new_key()
        now = dt.datetime.now(dt.UTC)
        usages = []
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = (
            _builder(_name(common_name, organizations), self.cert.subject, key.public_key(), now, ca=False)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        if dns_names or ip_addresses:
            sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
            sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        pair = CertPair(directory / f"{stem}.crt", directory / f"{stem}.key")
        _write_cert(pair.cert, cert)
        _write_key(pair.key, key)
        return pair


def generate_pki(directory: Path, apiserver_ips: Sequence[str] = ()) -> Pki:
    """Write a complete PKI for one local cluster into ``directory`` (created if missing); ``apiserver_ips`` are
    addresses the API server's certificate names beside loopback and the ``kubernetes`` Service's."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    ca = _Ca("triton-operator-dev-ca")
    front_proxy = _Ca("triton-operator-dev-front-proxy-ca")
    apiserver = ca.issue(
        directory,
        "apiserver",
        "kube-apiserver",
        server=True,
        dns_names=(
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ),
        ip_addresses=tuple(dict.fromkeys(("127.0.0.1", KUBERNETES_SERVICE_IP, *apiserver_ips))),
    )
    components = ca.issue(
        directory,
        "components",
        "localhost",
        server=True,
        dns_names=("localhost",),
        ip_addresses=("127.0.0.1",),
    )
    # The aggregation layer (custom metrics adapters) authenticates the apiserver by this front-proxy client.
    front_proxy_client = front_proxy.issue(directory, "front-proxy-client", "front-proxy-client", client=True)
    clients = {
        ident.name: ca.issue(directory, ident.name, ident.user, ident.groups, client=True)
        for ident in CLIENT_IDENTITIES
    }
    sa_key = _new_key()
    sa_key_path = directory / "sa.key"
    sa_pub_path = directory / "sa.pub"
    _write_key(sa_key_path, sa_key)
    sa_pub_path.write_bytes(
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return Pki(
        dir=directory,
        ca=ca.write(directory, "ca"),
        front_proxy_ca=front_proxy.write(directory, "front-proxy-ca"),
        apiserver=apiserver,
        front_proxy_client=front_proxy_client,
        components=components,
        service_account_key=sa_key_path,
        service_account_pub=sa_pub_path,
        clients=clients,
    )


def issue_certificate(
    directory: Path,
    stem: str,
    common_name: str,
    organizations: Sequence[str] = (),
    *,
    server: bool = False,
    client: bool = False,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
) -> CertPair:
    """Sign one more leaf certificate with the cluster CA in ``directory`` (``ca.crt``/``ca.key`` written by
    :func:`generate_pki`), e.g. a real kubelet's client and serving certificates, which only the node tier
    needs and which name the node, so they are issued when the node is added rather than with the PKI."""
    ca = _Ca.load(CertPair(directory / "ca.crt", directory / "ca.key"))
    return ca.issue(
        directory,
        stem,
        common_name,
        organizations,
        server=server,
        client=client,
        dns_names=dns_names,
        ip_addresses=ip_addresses,
    )


def write_kubeconfig(
    path: Path,
    *,
    server: str,
    ca_cert: Path,
    client: CertPair,
    user: str,
    cluster_name: str = "triton-operator-dev",
) -> None:
    """Write a kubeconfig with the CA and client certificate inline, so it works when copied elsewhere."""

    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": {"server": server, "certificate-authority-data": b64(ca_cert)}}],
        "users": [
            {
                "name": user,
                "user": {"client-certificate-data": b64(client.cert), "client-key-data": b64(client.key)},
            }
        ],
        "contexts": [{"name": f"{user}@{cluster_name}", "context": {"cluster": cluster_name, "user": user}}],
        "current-context": f"{user}@{cluster_name}",
        "preferences": {},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
