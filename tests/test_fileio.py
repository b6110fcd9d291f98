"""Atomic writes (lr0fm.fileio): whole files or the old content, fsynced, no temporary files left behind."""

import os
import stat

import pytest

from lr0fm import fileio
from lr0fm.fileio import atomic_path, write_bytes_atomic, write_text_atomic


def test_file_appears_whole_and_temp_is_hidden_in_the_same_folder(tmp_path):
    target = tmp_path / "out.txt"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".") and tmp.name.endswith(".tmp")
        tmp.write_text("half")
        assert not target.exists()
        tmp.write_text("whole")
    assert target.read_text() == "whole"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_exception_leaves_no_temp_and_keeps_the_old_content(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"new, but cut short")
            raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(tmp_path / "fresh.bin"):
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == ["out.bin"]


def test_fsync_is_called_on_the_file_and_the_folder(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def counting(fd):
        synced.append(os.fstat(fd).st_mode)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    write_text_atomic(tmp_path / "a.txt", "x")
    assert any(stat.S_ISREG(mode) for mode in synced)
    if os.name == "posix":
        assert any(stat.S_ISDIR(mode) for mode in synced)


def test_second_write_replaces_the_first(tmp_path):
    target = tmp_path / "a.json"
    assert write_text_atomic(target, "first") == target
    write_text_atomic(target, "second")
    assert target.read_text() == "second"
    write_bytes_atomic(target, b"\x00third")
    assert target.read_bytes() == b"\x00third"
    assert os.listdir(tmp_path) == ["a.json"]


def test_prefix_and_permissions_of_a_new_file(tmp_path):
    with atomic_path(tmp_path / "img.png", prefix=".partial-") as tmp:
        assert tmp.name.startswith(".partial-") and tmp.name.endswith(".tmp")
        tmp.write_bytes(b"png")
    if os.name == "posix":
        umask = os.umask(0)
        os.umask(umask)
        assert (tmp_path / "img.png").stat().st_mode & 0o777 == 0o666 & ~umask


def test_fsync_folder_tolerates_what_the_os_refuses(tmp_path, monkeypatch):
    fileio.fsync_folder(tmp_path)

    def refuse(*args, **kwargs):
        raise OSError("no directories here")

    monkeypatch.setattr(os, "open", refuse)
    fileio.fsync_folder(tmp_path)
