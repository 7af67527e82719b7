#!/usr/bin/env python3
"""Build an OCI image archive from a root filesystem directory and/or a list of files, without Docker.

Why this exists: the machines that run the node tier have no Docker engine and no registry, so images are
built here as OCI image-layout tarballs and loaded with ``ctr -n k8s.io images import``. It needs nothing but
the Python standard library, so hack scripts can run it with any ``python3``.

What it guarantees:
- **Deterministic**: entries are sorted, every mtime is fixed (``--mtime``, default ``$SOURCE_DATE_EPOCH`` or
  0), user/group names are dropped (numeric ids only), gzip headers carry no name or time, and the JSON is
  canonical, so rebuilding from the same inputs gives the same digests (and ``ctr import`` is a no-op).
- **Streaming**: a layer is written once, through tar -> sha256 (diff id) -> gzip -> sha256 (digest) into a
  temporary file next to the output, and then copied into the archive; a 2 GB layer never sits in memory.
- **Importable**: the index carries both ``io.containerd.image.name`` (the full reference, which ``ctr import``
  uses as the image name) and ``org.opencontainers.image.ref.name`` (the tag, as the OCI spec wants), and
  the manifest descriptor names its platform, so ``ctr`` imports it without ``--all-platforms``.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import fnmatch
import hashlib
import io
import json
import os
import platform
import shlex
import struct
import sys
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_COPY_BUFFER = 1024 * 1024
#: Extended attributes carried into layers (as PAX SCHILY.xattr.*, which containerd applies): file
#: capabilities matter (e.g. ping), others (selinux labels of the build host) must not leak into the image.
_XATTRS = ("security.capability",)


class _Sink(Protocol):
    """Anything with write/flush: a file, a GzipFile, another :class:`_HashingWriter`."""

    def write(self, data: memoryview, /) -> object: ...

    def flush(self) -> object: ...


class _HashingWriter(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through it on its way to ``target``."""

    def __init__(self, target: _Sink) -> None:
        super().__init__()
        self._target = target
        self.sha256 = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.sha256.update(view)
        self.size += len(view)
        self._target.write(view)
        return len(view)

    def flush(self) -> None:
        self._target.flush()


class ParallelGzipWriter(io.RawIOBase):
    """A gzip stream compressed on every core, pigz-style, with output that does not depend on timing.

    Python's gzip runs on one core at about 15 MB/s (level 6) here, which makes a 2 GB Triton layer a matter of
    minutes. The input is cut into fixed blocks; each is deflated on a thread (zlib releases the GIL) with the
    previous block's last 32 KiB as its dictionary, ending in a sync flush (byte-aligned, not final), the last
    one in a final flush. The concatenation is one valid deflate stream, the same bytes for the same input
    whatever the number of threads, framed by a gzip header without name or time and the CRC-32/size trailer.
    At most ``2 * workers`` blocks are in flight, so memory stays at a few MiB.
    """

    _BLOCK = 1024 * 1024
    _WINDOW = 32 * 1024

    def __init__(self, target: _Sink, level: int, workers: int | None = None) -> None:
        super().__init__()
        self._target = target
        self._level = level
        self._workers = max(1, workers or os.cpu_count() or 1)
        self._pool = concurrent.futures.ThreadPoolExecutor(self._workers, thread_name_prefix="gzip")
        self._pending: collections.deque[concurrent.futures.Future[bytes]] = collections.deque()
        self._buffer = bytearray()
        self._previous_tail = b""
        self._crc = 0
        self._size = 0
        xfl = 2 if level == 9 else 4 if level == 1 else 0
        # magic, deflate, no flags, mtime 0, extra flags, OS "unknown" (as Python's gzip writes it)
        self._target.write(memoryview(b"\x1f\x8b\x08\x00\x00\x00\x00\x00" + bytes([xfl, 255])))

    def writable(self) -> bool:
        return True

    @staticmethod
    def _deflate(block: bytes, zdict: bytes, level: int, final: bool) -> bytes:
        if zdict:
            c = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, 9, zlib.Z_DEFAULT_STRATEGY, zdict)
        else:
            c = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, 9, zlib.Z_DEFAULT_STRATEGY)
        return c.compress(block) + c.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH)

    def _submit(self, block: bytes, final: bool) -> None:
        self._crc = zlib.crc32(block, self._crc)
        self._size += len(block)
        self._pending.append(self._pool.submit(self._deflate, block, self._previous_tail, self._level, final))
        self._previous_tail = block[-self._WINDOW :]
        while len(self._pending) > 2 * self._workers:
            self._target.write(memoryview(self._pending.popleft().result()))

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._buffer += view
        while len(self._buffer) >= self._BLOCK:
            self._submit(bytes(self._buffer[: self._BLOCK]), final=False)
            del self._buffer[: self._BLOCK]
        return len(view)

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._submit(bytes(self._buffer), final=True)
            self._buffer.clear()
            while self._pending:
                self._target.write(memoryview(self._pending.popleft().result()))
            self._target.write(memoryview(struct.pack("<II", self._crc, self._size & 0xFFFFFFFF)))
            self._target.flush()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
            super().close()


@dataclass(frozen=True)
class Blob:
    """A content-addressed blob: its digest (``sha256:...``), size, and where its bytes are."""

    digest: str
    size: int
    path: Path | None = None
    data: bytes | None = None

    @classmethod
    def from_json(cls, obj: Any) -> Blob:
        data = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
        return cls(f"sha256:{hashlib.sha256(data).hexdigest()}", len(data), data=data)


@dataclass(frozen=True)
class Layer:
    """A gzip layer written to a temporary file, with the digests the manifest and config need."""

    blob: Blob
    diff_id: str
    entries: int


@dataclass
class ImageConfig:
    """The runtime part of the image config (what ``docker inspect`` shows under Config)."""

    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: list[str] = field(default_factory=list)
    working_dir: str = ""
    user: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    exposed_ports: list[str] = field(default_factory=list)
    stop_signal: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.entrypoint is not None:
            out["Entrypoint"] = self.entrypoint
        if self.cmd is not None:
            out["Cmd"] = self.cmd
        if self.env:
            out["Env"] = self.env
        if self.working_dir:
            out["WorkingDir"] = self.working_dir
        if self.user:
            out["User"] = self.user
        if self.labels:
            out["Labels"] = dict(sorted(self.labels.items()))
        if self.exposed_ports:
            out["ExposedPorts"] = {p if "/" in p else f"{p}/tcp": {} for p in sorted(self.exposed_ports)}
        if self.stop_signal:
            out["StopSignal"] = self.stop_signal
        return out


# ---- layer contents ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One path to put into a layer: ``source`` on disk (None for a synthesised parent directory)."""

    name: str  # path inside the image, relative, no leading slash
    source: Path | None
    owner: tuple[int, int] | None  # force uid/gid; None keeps what is on disk


def _excluded(rel: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(rel, p) or fnmatch.fnmatchcase("/" + rel, p) for p in patterns)


def walk_rootfs(root: Path, excludes: Sequence[str] = ()) -> Iterator[Entry]:
    """Every path under ``root`` (not ``root`` itself), directories before their contents, sorted by name.

    Symlinks are stored as symlinks, never followed. Ownership is kept as on disk (a debootstrap rootfs
    is owned by root; files of other users stay theirs, as the distribution made them).
    """

    def walk(directory: Path, prefix: str) -> Iterator[Entry]:
        with os.scandir(directory) as it:
            children = sorted(it, key=lambda e: e.name)
        for child in children:
            rel = f"{prefix}{child.name}"
            if _excluded(rel, excludes):
                continue
            yield Entry(rel, Path(child.path), None)
            if child.is_dir(follow_symlinks=False):
                yield from walk(Path(child.path), rel + "/")

    yield from walk(root, "")


def file_entries(specs: Sequence[tuple[Path, str]], owner: tuple[int, int]) -> Iterator[Entry]:
    """Entries for ``--file SRC=DEST`` (a directory SRC is added recursively), with the parent directories
    of every DEST synthesised (0755, owned by ``owner``), sorted so the layer is deterministic."""
    by_name: dict[str, Entry] = {}
    for src, dest in specs:
        dest_rel = dest.strip("/")
        if not dest_rel:
            raise SystemExit(f"--file {src}={dest}: the destination must not be /")
        parts = dest_rel.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            by_name.setdefault(parent, Entry(parent, None, owner))
        by_name[dest_rel] = Entry(dest_rel, src, owner)
        if src.is_dir() and not src.is_symlink():
            for sub in walk_rootfs(src):
                by_name[f"{dest_rel}/{sub.name}"] = Entry(f"{dest_rel}/{sub.name}", sub.source, owner)
    yield from (by_name[k] for k in sorted(by_name, key=lambda n: n.split("/")))


def _tarinfo(tar: tarfile.TarFile, entry: Entry, mtime: int) -> tarfile.TarInfo | None:
    if entry.source is None:
        info = tarfile.TarInfo(entry.name)
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        got = tar.gettarinfo(str(entry.source), arcname=entry.name)
        if got is None:  # sockets and the like cannot be in a tar; nothing in an image needs them
            return None
        info = got
        info.pax_headers = dict(info.pax_headers)
        for attr in _XATTRS:
            with contextlib.suppress(OSError):
                value = os.getxattr(entry.source, attr, follow_symlinks=False)
                # PAX records are text; tarfile encodes str values as UTF-8 with surrogateescape.
                info.pax_headers[f"SCHILY.xattr.{attr}"] = value.decode("utf-8", "surrogateescape")
    if entry.owner is not None:
        info.uid, info.gid = entry.owner
    info.uname = ""
    info.gname = ""
    info.mtime = mtime
    return info


def write_layer(
    entries: Iterable[Entry], directory: Path, *, mtime: int, compress_level: int, threads: int | None = None
) -> Layer:
    """Write ``entries`` as one gzip tar layer into a temporary file in ``directory``, streaming."""
    fd, tmp_name = tempfile.mkstemp(prefix=".layer-", suffix=".tar.gz", dir=directory)
    tmp = Path(tmp_name)
    count = 0
    try:
        with os.fdopen(fd, "wb") as raw:
            compressed = _HashingWriter(raw)
            with ParallelGzipWriter(compressed, compress_level, threads) as gz:
                uncompressed = _HashingWriter(gz)
                with tarfile.open(
                    fileobj=uncompressed, mode="w|", format=tarfile.PAX_FORMAT, bufsize=_COPY_BUFFER
                ) as tar:
                    tar.copybufsize = _COPY_BUFFER  # type: ignore[attr-defined]  # real attribute, missing from typeshed
                    for entry in entries:
                        info = _tarinfo(tar, entry, mtime)
                        if info is None:
                            continue
                        if info.isreg() and entry.source is not None:
                            with entry.source.open("rb") as f:
                                tar.addfile(info, f)
                        else:
                            tar.addfile(info)
                        count += 1
                        if count % 20000 == 0:
                            _log(f"  ... {count} entries, {uncompressed.size / 1e6:.0f} MB so far")
        return Layer(
            Blob(f"sha256:{compressed.sha256.hexdigest()}", compressed.size, path=tmp),
            f"sha256:{uncompressed.sha256.hexdigest()}",
            count,
        )
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ---- the image --------------------------------------------------------------------------------------------


def split_reference(name: str) -> tuple[str, str]:
    """``localhost/pause:3.10`` -> (``localhost/pause``, ``3.10``); no tag means ``latest``."""
    last = name.rsplit("/", 1)[-1]
    if "@" in name:
        raise SystemExit(f"--name {name}: give a tag, not a digest")
    if ":" in last:
        repo, tag = name.rsplit(":", 1)
        return repo, tag
    return name, "latest"


def default_platform() -> tuple[str, str]:
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    return "linux", arch


def build_archive(
    *,
    name: str,
    layers: Sequence[Layer],
    config: ImageConfig,
    out: Path,
    mtime: int,
    os_name: str,
    arch: str,
) -> str:
    """Write the OCI image-layout tarball to ``out`` (atomically); return the manifest digest."""
    repo, tag = split_reference(name)
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(mtime))
    image_config = Blob.from_json(
        {
            "architecture": arch,
            "os": os_name,
            "created": created,
            "config": config.to_json(),
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
            "history": [{"created": created, "created_by": "hack/oci_image.py"} for _ in layers],
        }
    )
    manifest = Blob.from_json(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": image_config.digest, "size": image_config.size},
            "layers": [
                {"mediaType": MEDIA_LAYER_GZIP, "digest": layer.blob.digest, "size": layer.blob.size}
                for layer in layers
            ],
        }
    )
    index = {
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [
            {
                "mediaType": MEDIA_MANIFEST,
                "digest": manifest.digest,
                "size": manifest.size,
                "platform": {"architecture": arch, "os": os_name},
                "annotations": {ANNOTATION_CONTAINERD_NAME: f"{repo}:{tag}", ANNOTATION_REF_NAME: tag},
            }
        ],
    }
    files: list[tuple[str, Blob]] = [
        ("oci-layout", Blob.from_json({"imageLayoutVersion": "1.0.0"})),
        ("index.json", Blob.from_json(index)),
    ]
    blobs = {b.digest: b for b in [image_config, manifest, *(layer.blob for layer in layers)]}
    files += [(f"blobs/sha256/{d.split(':', 1)[1]}", blobs[d]) for d in sorted(blobs)]

    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    tmp = Path(tmp_name)
    try:
        with (
            os.fdopen(fd, "wb") as raw,
            tarfile.open(fileobj=raw, mode="w|", format=tarfile.PAX_FORMAT, bufsize=_COPY_BUFFER) as tar,
        ):
            tar.copybufsize = _COPY_BUFFER  # type: ignore[attr-defined]  # real attribute, missing from typeshed
            for dirname in ("blobs", "blobs/sha256"):
                info = tarfile.TarInfo(dirname)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, mtime
                tar.addfile(info)
            for arcname, blob in files:
                info = tarfile.TarInfo(arcname)
                info.size, info.mode, info.mtime = blob.size, 0o644, mtime
                if blob.data is not None:
                    tar.addfile(info, io.BytesIO(blob.data))
                else:
                    assert blob.path is not None
                    with blob.path.open("rb") as f:
                        tar.addfile(info, f)
        tmp.chmod(0o644)
        tmp.replace(out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return manifest.digest


# ---- command line -----------------------------------------------------------------------------------------


def _argv_list(value: str) -> list[str]:
    """A JSON array (``'["/bin/sh", "-c", "x"]'``) or a shell-quoted string (``'/bin/sh -c "x"'``)."""
    text = value.strip()
    if text.startswith("["):
        parsed = json.loads(text)
        if not isinstance(parsed, list) or not all(isinstance(a, str) for a in parsed):
            raise argparse.ArgumentTypeError(f"not a JSON array of strings: {value}")
        return parsed
    return shlex.split(text)


def _key_value(value: str) -> tuple[str, str]:
    if "=" not in value:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {value!r}")
    key, _, val = value.partition("=")
    return key, val


def _file_spec(value: str) -> tuple[Path, str]:
    src, sep, dest = value.partition("=")
    if not sep:
        dest = "/" + Path(src).name
    path = Path(src)
    if not path.exists() and not path.is_symlink():
        raise argparse.ArgumentTypeError(f"{src} does not exist")
    return path, dest


def _owner(value: str) -> tuple[int, int]:
    uid, _, gid = value.partition(":")
    return int(uid), int(gid or uid)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="oci_image.py",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Build an OCI image archive (oci-layout, index.json, blobs/; gzip layers) from a root filesystem\n"
            "directory and/or single files, deterministically and without Docker; load it with\n"
            "  ctr -a SOCKET -n k8s.io images import [--snapshotter S] FILE.tar\n"
            "Each --rootfs becomes one layer (in order); all --file entries together become one more layer.\n"
            "The manifest digest is printed on stdout; progress goes to stderr."
        ),
        epilog=(
            "examples:\n"
            "  # a Triton CPU image from a debootstrap rootfs\n"
            "  oci_image.py --rootfs /tmp/rootfs --exclude 'var/cache/apt/archives/*.deb' \\\n"
            "      --name localhost/triton-cpu:24.08 --entrypoint /opt/tritonserver/bin/tritonserver \\\n"
            "      --env LD_LIBRARY_PATH=/opt/tritonserver/lib --workdir /opt/tritonserver --out triton.tar\n"
            "  # a single static binary\n"
            "  oci_image.py --file ./pause=/pause --name localhost/pause:3.10 --entrypoint /pause \\\n"
            "      --user 65535:65535 --out pause.tar\n"
            "\n"
            '--entrypoint and --cmd take a JSON array (\'["/bin/sh","-c","echo hi"]\') or a shell-quoted\n'
            "string ('/bin/sh -c \"echo hi\"'). PATH defaults to the usual system PATH unless --env PATH=... is\n"
            "given. Determinism: entries sorted, mtimes fixed to --mtime, user/group names dropped, gzip header\n"
            "without name/time; the same inputs give the same digest."
        ),
    )
    p.add_argument(
        "--rootfs",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="a root filesystem directory to put in one layer (repeatable: one layer each, in order); "
        "ownership and modes are kept as on disk, symlinks and hard links preserved",
    )
    p.add_argument(
        "--file",
        type=_file_spec,
        action="append",
        default=[],
        metavar="SRC[=DEST]",
        help="a file or directory SRC placed at DEST in the image (default /<basename of SRC>); "
        "repeatable; owned by --owner; missing parent directories are created 0755",
    )
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="skip rootfs paths matching GLOB (fnmatch, against the path relative to the rootfs, "
        "e.g. 'var/cache/apt/archives/*.deb' or 'proc/*'); a skipped directory skips its contents",
    )
    p.add_argument(
        "--name",
        required=True,
        metavar="REPO:TAG",
        help="the image reference, e.g. localhost/pause:3.10 (a bare name gets :latest)",
    )
    p.add_argument("--out", type=Path, required=True, metavar="FILE.tar", help="the archive to write (atomically)")
    p.add_argument("--entrypoint", type=_argv_list, default=None, help="Entrypoint (JSON array or shell words)")
    p.add_argument("--cmd", type=_argv_list, default=None, help="Cmd (JSON array or shell words)")
    p.add_argument("--env", type=_key_value, action="append", default=[], metavar="KEY=VALUE", help="repeatable")
    p.add_argument("--workdir", default="", help="WorkingDir (absolute path)")
    p.add_argument("--user", default="", help="User, e.g. 1000, 1000:1000 or nobody")
    p.add_argument("--label", type=_key_value, action="append", default=[], metavar="KEY=VALUE", help="repeatable")
    p.add_argument("--expose", action="append", default=[], metavar="PORT[/PROTO]", help="ExposedPorts; repeatable")
    p.add_argument("--stop-signal", default="", help="StopSignal, e.g. SIGTERM")
    p.add_argument(
        "--owner",
        type=_owner,
        default=(0, 0),
        metavar="UID[:GID]",
        help="owner of --file entries (default 0:0, whoever runs the build)",
    )
    p.add_argument(
        "--mtime",
        type=int,
        default=int(os.environ.get("SOURCE_DATE_EPOCH", "0")),
        help="the mtime of every entry and the config's created time (default $SOURCE_DATE_EPOCH or 0)",
    )
    p.add_argument(
        "--compress-level",
        type=int,
        default=6,
        choices=range(1, 10),
        metavar="1-9",
        help="gzip level (default 6, ~30 MB/s of input on 2 cores; 1 is about 2x faster and ~10%% larger)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="compression threads (default: one per core); the output is the same bytes for any number",
    )
    p.add_argument(
        "--platform",
        default="/".join(default_platform()),
        metavar="OS/ARCH",
        help="the platform the image is for (default: this machine's, e.g. linux/amd64)",
    )
    return p


def _log(message: str) -> None:
    print(f"[oci_image] {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.rootfs and not args.file:
        _parser().error("give at least one --rootfs or --file")
    for root in args.rootfs:
        if not root.is_dir():
            _parser().error(f"--rootfs {root}: not a directory")
    os_name, _, arch = args.platform.partition("/")
    out: Path = args.out.absolute()
    out.parent.mkdir(parents=True, exist_ok=True)

    env = [f"{k}={v}" for k, v in args.env]
    if not any(k == "PATH" for k, _ in args.env):
        env.insert(0, DEFAULT_PATH)
    config = ImageConfig(
        entrypoint=args.entrypoint,
        cmd=args.cmd,
        env=env,
        working_dir=args.workdir,
        user=args.user,
        labels=dict(args.label),
        exposed_ports=list(args.expose),
        stop_signal=args.stop_signal,
    )

    t0 = time.monotonic()
    layers: list[Layer] = []
    try:
        sources: list[tuple[str, Iterable[Entry]]] = [
            (f"rootfs {root}", walk_rootfs(root, args.exclude)) for root in args.rootfs
        ]
        if args.file:
            sources.append((f"{len(args.file)} file(s)", file_entries(args.file, args.owner)))
        for what, entries in sources:
            _log(f"layer {len(layers) + 1}: {what}")
            layer = write_layer(
                entries, out.parent, mtime=args.mtime, compress_level=args.compress_level, threads=args.threads
            )
            layers.append(layer)
            _log(f"  {layer.entries} entries, {layer.blob.size / 1e6:.1f} MB compressed, {layer.blob.digest}")
        digest = build_archive(
            name=args.name, layers=layers, config=config, out=out, mtime=args.mtime, os_name=os_name, arch=arch
        )
    finally:
        for layer in layers:
            if layer.blob.path is not None:
                layer.blob.path.unlink(missing_ok=True)
    size = out.stat().st_size
    _log(f"wrote {out} ({size / 1e6:.1f} MB) for {args.name} in {time.monotonic() - t0:.1f} s: {digest}")
    print(digest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
