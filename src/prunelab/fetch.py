"""Fetch CIFAR-10: download it (or take a local archive), verify every member, extract safely.

The extracted directory appears only once every member is verified, so a failed fetch leaves
nothing behind and an earlier good copy intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path

from prunelab.data import BASE_DIR
from prunelab.errors import UserError
from prunelab.io import atomic_path

ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE_ENV = "PRUNELAB_CIFAR10_ARCHIVE"
"""Path of a local cifar-10-python.tar.gz; overrides data.source (for offline machines)."""
CHECKSUMS_ENV = "PRUNELAB_CIFAR10_CHECKSUMS"
"""JSON file {member: md5} replacing the official checksums (for CIFAR-format test data)."""


def official_member_md5() -> dict[str, str]:
    """The per-file checksums torchvision's CIFAR10 verifies."""
    from torchvision.datasets import CIFAR10

    members = [
        *CIFAR10.train_list,
        *CIFAR10.test_list,
        [CIFAR10.meta["filename"], CIFAR10.meta["md5"]],
    ]
    return {name: md5 for name, md5 in members}


def expected_member_md5() -> dict[str, str]:
    override = os.environ.get(CHECKSUMS_ENV)
    if not override:
        return official_member_md5()
    try:
        return json.loads(Path(override).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{CHECKSUMS_ENV}={override}: cannot read checksums ({exc})") from None


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_cifar10(source: str, dest: Path) -> str:
    """Place the verified CIFAR-10 batches at `dest` (…/cifar-10-batches-py); return what was used.

    The directory appears only once every member is extracted and verified.
    """
    source = os.environ.get(ARCHIVE_ENV) or source
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{dest.name}.", suffix=".fetch", dir=dest.parent) as tmp:
        scratch = Path(tmp)
        if source.startswith(("http://", "https://")):
            archive = scratch / "cifar-10-python.tar.gz"
            download(source, archive)
            if (actual := md5sum(archive)) != ARCHIVE_MD5 and not os.environ.get(CHECKSUMS_ENV):
                raise UserError(
                    f"{source}: archive md5 {actual} ≠ official {ARCHIVE_MD5}; the download is "
                    "corrupt or not CIFAR-10. Retry, or set data.source to a verified local copy"
                )
        else:
            archive = Path(source).expanduser()
            if not archive.is_file():
                raise UserError(
                    f"data.source: local archive {archive} not found; give the path of "
                    f"cifar-10-python.tar.gz in data.source or {ARCHIVE_ENV}"
                )
        extracted = scratch / "extracted"
        safe_extract(archive, extracted)
        verify_members(extracted / BASE_DIR, expected_member_md5(), archive)
        with atomic_path(dest) as final:
            (extracted / BASE_DIR).rename(final)
    return source


def download(url: str, to: Path) -> None:
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    try:
        with urllib.request.urlopen(url, timeout=30) as response, to.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn()) as bar:
                task = bar.add_task(f"download {url.rsplit('/', 1)[-1]}", total=total)
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    out.write(chunk)
                    bar.advance(task, len(chunk))
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise UserError(
            f"data.source: cannot download {url} ({getattr(exc, 'reason', exc)}). Offline? "
            f"Point the stage at a local copy: export {ARCHIVE_ENV}=/path/to/cifar-10-python.tar.gz "
            "or set data.source to that path in params.yaml"
        ) from None


def safe_extract(archive: Path, into: Path) -> None:
    """Extract a tar archive refusing links, devices and paths that escape `into`."""
    into.mkdir(parents=True, exist_ok=True)

    def refuse_specials(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo:
        if not (member.isfile() or member.isdir()):
            raise UserError(
                f"{archive}: refused: member '{member.name}' is a link or device file, "
                "which a CIFAR-10 archive never holds"
            )
        try:
            return tarfile.data_filter(member, path)
        except tarfile.FilterError as exc:
            raise UserError(f"{archive}: refused: {exc}") from None

    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(into, filter=refuse_specials)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise UserError(f"{archive}: damaged or truncated archive ({exc}); fetch it again") from None


def verify_members(root: Path, expected: dict[str, str], archive: Path) -> None:
    for name, md5 in expected.items():
        member = root / name
        if not member.is_file():
            raise UserError(f"{archive}: member {BASE_DIR}/{name} is missing; not a CIFAR-10 archive")
        if (actual := md5sum(member)) != md5:
            raise UserError(
                f"{archive}: member {BASE_DIR}/{name} has md5 {actual}, expected {md5}; "
                "the archive is corrupt or altered"
            )
