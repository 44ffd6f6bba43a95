"""``verifier.atomicfile``: crash-safe replacement, exclusive creation of secrets, directory fsync.

Real files on the real file system. Failures are injected by monkeypatching the ``os`` calls the
module makes (``os.replace``, ``os.fsync``) or its write loop, so each test shows what is left on disk
when a write fails half-way: the old bytes, never a mix, never a stray temporary or partial file.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from verifier import atomicfile
from verifier.atomicfile import create_exclusive, fsync_dir, write_atomic

OLD, NEW = b"old content\n", b"new content, longer than the old one\n"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def umask():
    """Set a umask for the test (``umask(0o000)``), restoring the previous one afterwards."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield os.umask
    os.umask(previous)


def fail_after_partial_write(monkeypatch, exc: BaseException) -> None:
    """Make the module's write loop write half of the data, then raise ``exc`` (a full disk, say)."""
    def partial(fd: int, data: bytes) -> None:
        os.write(fd, data[: len(data) // 2])
        raise exc

    monkeypatch.setattr(atomicfile, "_write_all", partial)


# --- write_atomic ---------------------------------------------------------------------------------


def test_write_atomic_creates_and_replaces(tmp_path):
    path = tmp_path / "state.json"
    write_atomic(path, OLD)
    assert path.read_bytes() == OLD
    write_atomic(path, NEW)
    assert path.read_bytes() == NEW
    write_atomic(str(path), b"")  # str paths too; empty content is content
    assert path.read_bytes() == b""


def test_write_atomic_writes_large_content_whole(tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 7)
    write_atomic(tmp_path / "big", data)
    assert (tmp_path / "big").read_bytes() == data


def test_write_atomic_result_is_0600_whatever_the_old_mode_and_umask(tmp_path, umask):
    path = tmp_path / "state.json"
    path.write_bytes(OLD)
    path.chmod(0o644)
    umask(0o000)
    write_atomic(path, NEW)
    assert mode_of(path) == 0o600
    assert path.read_bytes() == NEW


def test_write_atomic_honours_an_explicit_mode(tmp_path, umask):
    umask(0o022)
    write_atomic(tmp_path / "public.json", NEW, mode=0o644)
    assert mode_of(tmp_path / "public.json") == 0o644


def test_write_atomic_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "state.json"
    for data in (OLD, NEW, OLD):
        write_atomic(path, data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_write_atomic_renames_a_synced_private_temporary_in_the_same_directory(tmp_path, monkeypatch):
    """The temporary is next to the target (rename is atomic only within one file system), mode 0600
    from creation, and fsynced before it is renamed; the directory is fsynced after the rename."""
    path = tmp_path / "state.json"
    path.write_bytes(OLD)
    events: list[tuple] = []
    real_fsync, real_replace, real_fsync_dir = os.fsync, os.replace, atomicfile.fsync_dir

    def fsync(fd):
        events.append(("fsync", os.fstat(fd).st_ino))
        return real_fsync(fd)

    def replace(src, dst):
        src, dst = Path(src), Path(dst)
        events.append(("replace", src.parent == dst.parent, src.name.startswith("."), mode_of(src),
                       src.read_bytes(), src.stat().st_ino))
        return real_replace(src, dst)

    def fsync_dir_spy(directory):
        events.append(("fsync_dir", Path(directory), path.read_bytes()))
        return real_fsync_dir(directory)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(atomicfile, "fsync_dir", fsync_dir_spy)
    write_atomic(path, NEW)
    assert [e[0] for e in events] == ["fsync", "replace", "fsync_dir", "fsync"], events
    tmp_ino = events[1][5]
    assert events[0][1] == tmp_ino, "the temporary file itself is fsynced before the rename"
    assert events[1][1:5] == (True, True, 0o600, NEW)
    assert events[2][1:] == (tmp_path, NEW), "the directory is fsynced once the new name is in place"
    assert events[3][1] == tmp_path.stat().st_ino
    assert path.stat().st_ino == tmp_ino


@pytest.mark.parametrize("exc", [OSError(errno.EXDEV, "rename failed"), KeyboardInterrupt()],
                         ids=["OSError", "KeyboardInterrupt"])
def test_write_atomic_failing_rename_keeps_the_old_content_and_no_temporary(tmp_path, monkeypatch, exc):
    path = tmp_path / "state.json"
    write_atomic(path, OLD)
    seen: list[Path] = []

    def replace(src, dst):
        seen.append(Path(src))
        assert Path(src).read_bytes() == NEW  # the temporary was complete
        raise exc

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(type(exc)):
        write_atomic(path, NEW)
    assert path.read_bytes() == OLD
    assert len(seen) == 1 and not seen[0].exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


@pytest.mark.parametrize("exc", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()],
                         ids=["ENOSPC", "KeyboardInterrupt"])
def test_write_atomic_failing_write_keeps_the_old_content_and_no_temporary(tmp_path, monkeypatch, exc):
    path = tmp_path / "state.json"
    write_atomic(path, OLD)
    fail_after_partial_write(monkeypatch, exc)
    with pytest.raises(type(exc)):
        write_atomic(path, NEW)
    assert path.read_bytes() == OLD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_write_atomic_failing_fsync_keeps_the_old_content_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    write_atomic(path, OLD)

    def fsync(fd):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match="I/O error"):
        write_atomic(path, NEW)
    monkeypatch.undo()
    assert path.read_bytes() == OLD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_write_atomic_into_a_missing_directory_fails_and_creates_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "missing" / "state.json", NEW)
    assert list(tmp_path.iterdir()) == []


# --- create_exclusive -----------------------------------------------------------------------------


def test_create_exclusive_creates_the_file(tmp_path):
    path = tmp_path / "token"
    create_exclusive(path, NEW)
    assert path.read_bytes() == NEW
    assert mode_of(path) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["token"]
    create_exclusive(str(tmp_path / "key"), b"")  # str paths, empty content
    assert (tmp_path / "key").read_bytes() == b""


@pytest.mark.parametrize("mask", [0o000, 0o002, 0o022])
def test_create_exclusive_is_0600_even_with_a_permissive_umask(tmp_path, umask, mask):
    umask(mask)
    create_exclusive(tmp_path / "secret.key", NEW)
    assert mode_of(tmp_path / "secret.key") == 0o600


def test_create_exclusive_mode_is_exactly_the_requested_one_whatever_the_umask(tmp_path, umask):
    umask(0o077)  # would narrow 0640 to 0600
    create_exclusive(tmp_path / "group-readable", NEW, mode=0o640)
    assert mode_of(tmp_path / "group-readable") == 0o640


def test_create_exclusive_refuses_an_existing_file_and_leaves_it_unchanged(tmp_path):
    path = tmp_path / "token"
    path.write_bytes(OLD)
    path.chmod(0o644)
    before = path.stat()
    with pytest.raises(FileExistsError):
        create_exclusive(path, NEW)
    after = path.stat()
    assert path.read_bytes() == OLD
    assert (after.st_ino, after.st_mtime_ns, stat.S_IMODE(after.st_mode)) == (
        before.st_ino, before.st_mtime_ns, 0o644)


def test_create_exclusive_refuses_a_symlink_to_an_existing_file(tmp_path):
    target = tmp_path / "victim"
    target.write_bytes(OLD)
    target.chmod(0o644)
    link = tmp_path / "token"
    link.symlink_to(target)
    with pytest.raises(FileExistsError):
        create_exclusive(link, NEW)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes() == OLD and mode_of(target) == 0o644


def test_create_exclusive_refuses_a_dangling_symlink_and_creates_nothing_at_its_target(tmp_path):
    """O_EXCL never follows a symlink: a planted link cannot make the secret land elsewhere."""
    target = tmp_path / "elsewhere" / "planted"
    target.parent.mkdir()
    link = tmp_path / "token"
    link.symlink_to(target)
    with pytest.raises(FileExistsError):
        create_exclusive(link, NEW)
    assert link.is_symlink() and not target.exists()
    assert list(target.parent.iterdir()) == []


def test_create_exclusive_refuses_a_directory(tmp_path):
    (tmp_path / "token").mkdir()
    with pytest.raises(FileExistsError):
        create_exclusive(tmp_path / "token", NEW)
    assert (tmp_path / "token").is_dir()


@pytest.mark.parametrize("exc", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()],
                         ids=["ENOSPC", "KeyboardInterrupt"])
def test_create_exclusive_leaves_no_partial_file_when_writing_fails(tmp_path, monkeypatch, exc):
    path = tmp_path / "secret.key"
    fail_after_partial_write(monkeypatch, exc)
    with pytest.raises(type(exc)):
        create_exclusive(path, NEW)
    assert not path.exists() and list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    create_exclusive(path, NEW)  # the name is free again
    assert path.read_bytes() == NEW


def test_create_exclusive_leaves_no_file_when_fsync_fails(tmp_path, monkeypatch):
    path = tmp_path / "secret.key"

    def fsync(fd):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match="I/O error"):
        create_exclusive(path, NEW)
    assert not path.exists()


def test_create_exclusive_syncs_the_file_then_its_directory(tmp_path, monkeypatch):
    path = tmp_path / "secret.key"
    events: list[tuple] = []
    real_fsync, real_fsync_dir = os.fsync, atomicfile.fsync_dir

    def fsync(fd):
        events.append(("fsync", os.fstat(fd).st_ino))
        return real_fsync(fd)

    def fsync_dir_spy(directory):
        events.append(("fsync_dir", Path(directory), path.read_bytes()))
        return real_fsync_dir(directory)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(atomicfile, "fsync_dir", fsync_dir_spy)
    create_exclusive(path, NEW)
    assert [e[0] for e in events] == ["fsync", "fsync_dir", "fsync"], events
    assert events[0][1] == path.stat().st_ino
    assert events[1][1:] == (tmp_path, NEW)
    assert events[2][1] == tmp_path.stat().st_ino


def test_create_exclusive_with_a_relative_path_syncs_the_right_directory(tmp_path, monkeypatch):
    synced: list[Path] = []
    monkeypatch.setattr(atomicfile, "fsync_dir", lambda d: synced.append(Path(d)))
    monkeypatch.chdir(tmp_path)
    create_exclusive("relative.key", NEW)
    assert (tmp_path / "relative.key").read_bytes() == NEW
    assert synced == [tmp_path]


# --- fsync_dir ------------------------------------------------------------------------------------


def test_fsync_dir_syncs_the_directory_and_closes_its_descriptor(tmp_path, monkeypatch):
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(fd)
        assert os.fstat(fd).st_ino == tmp_path.stat().st_ino
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    fsync_dir(tmp_path)
    fsync_dir(str(tmp_path))
    assert len(synced) == 2
    for fd in synced:
        with pytest.raises(OSError) as info:
            os.fstat(fd)  # closed (unless reused since, which nothing here does)
        assert info.value.errno == errno.EBADF


def test_fsync_dir_closes_its_descriptor_when_fsync_fails(tmp_path, monkeypatch):
    opened: list[int] = []

    def fsync(fd):
        opened.append(fd)
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match="I/O error"):
        fsync_dir(tmp_path)
    monkeypatch.undo()
    with pytest.raises(OSError) as info:
        os.fstat(opened[0])
    assert info.value.errno == errno.EBADF


def test_fsync_dir_refuses_a_missing_directory_and_a_regular_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        fsync_dir(tmp_path / "missing")
    (tmp_path / "file").write_bytes(OLD)
    with pytest.raises(NotADirectoryError):
        fsync_dir(tmp_path / "file")
