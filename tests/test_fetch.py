from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from prunelab.data import load_split
from prunelab.errors import UserError
from prunelab.fetch import ARCHIVE_ENV, fetch_cifar10, official_member_md5


def _rewrite(src: Path, dst: Path, change) -> None:
    """Copy a tar.gz, letting `change(name, payload)` alter or drop (None) each member."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w:gz") as tout:
        for member in tin.getmembers():
            payload = change(member.name, tin.extractfile(member).read())
            if payload is None:
                continue
            info = tarfile.TarInfo(member.name)
            info.size = len(payload)
            tout.addfile(info, io.BytesIO(payload))


def test_official_checksums_are_torchvisions_list() -> None:
    md5 = official_member_md5()
    assert md5["data_batch_1"] == "c99cafc152244af753f735de768cd75f"
    assert md5["test_batch"] == "40351d587109b95175f43aff81a1287e"
    assert len(md5) == 7


def test_fetch_local_archive_extracts_verified_batches(synthetic_env: Path, tmp_path: Path) -> None:
    dest = tmp_path / "data" / "cifar-10-batches-py"
    fetch_cifar10(str(synthetic_env), dest)
    train = load_split(dest, train=True)
    assert train.images.shape == (600, 3, 32, 32)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["cifar-10-batches-py"]  # no leftovers


def test_env_var_overrides_source(
    synthetic_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ARCHIVE_ENV, str(synthetic_env))
    used = fetch_cifar10("https://example.invalid/cifar.tar.gz", tmp_path / "cifar-10-batches-py")
    assert used == str(synthetic_env)


def test_tampered_member_is_refused_and_nothing_extracted(synthetic_env: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar.gz"
    _rewrite(
        synthetic_env, bad, lambda name, data: data[:-1] + b"x" if name.endswith("data_batch_3") else data
    )
    dest = tmp_path / "out" / "cifar-10-batches-py"
    with pytest.raises(UserError, match=r"data_batch_3 has md5 .* expected"):
        fetch_cifar10(str(bad), dest)
    assert not dest.parent.exists() or list(dest.parent.iterdir()) == []


def test_failed_fetch_keeps_earlier_good_copy(synthetic_env: Path, tmp_path: Path) -> None:
    dest = tmp_path / "cifar-10-batches-py"
    fetch_cifar10(str(synthetic_env), dest)
    before = (dest / "test_batch").read_bytes()
    bad = tmp_path / "bad.tar.gz"
    _rewrite(synthetic_env, bad, lambda name, data: None if name.endswith("test_batch") else data)
    with pytest.raises(UserError, match="test_batch is missing"):
        fetch_cifar10(str(bad), dest)
    assert (dest / "test_batch").read_bytes() == before


def test_truncated_archive_is_reported(synthetic_env: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(synthetic_env.read_bytes()[:5000])
    with pytest.raises(UserError, match=r"cut\.tar\.gz: damaged or truncated"):
        fetch_cifar10(str(cut), tmp_path / "cifar-10-batches-py")
    assert not (tmp_path / "cifar-10-batches-py").exists()


@pytest.mark.parametrize("kind", ["escape", "symlink"])
def test_hostile_members_are_refused(synthetic_env: Path, tmp_path: Path, kind: str) -> None:
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(synthetic_env) as tin, tarfile.open(evil, "w:gz") as tout:
        for member in tin.getmembers():
            tout.addfile(member, tin.extractfile(member))
        if kind == "escape":
            info = tarfile.TarInfo("../../escaped.txt")
            info.size = 3
            tout.addfile(info, io.BytesIO(b"bad"))
        else:
            info = tarfile.TarInfo("cifar-10-batches-py/link")
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tout.addfile(info)
    with pytest.raises(UserError, match="refused"):
        fetch_cifar10(str(evil), tmp_path / "x" / "cifar-10-batches-py")
    assert not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path.parent / "escaped.txt").exists()


def test_missing_local_archive_names_the_param(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"data.source: local archive .* not found"):
        fetch_cifar10(str(tmp_path / "nope.tar.gz"), tmp_path / "cifar-10-batches-py")


def test_download_failure_says_how_to_use_a_local_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ARCHIVE_ENV, raising=False)
    # Port 9 on loopback (discard) is closed here: the connection is refused at once.
    with pytest.raises(UserError, match=ARCHIVE_ENV):
        fetch_cifar10("http://127.0.0.1:9/cifar-10-python.tar.gz", tmp_path / "cifar-10-batches-py")
