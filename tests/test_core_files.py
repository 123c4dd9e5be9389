"""core/files.py: atomic writes (with OS errors named) and text files read whatever their BOM or line ends."""

from __future__ import annotations

import errno
import os

import pytest

from egocache.core.files import read_text, write_json_atomic, write_text_atomic
from egocache.errors import ManifestError, StorageError


def test_atomic_write_leaves_no_temporary_file_and_replaces_whole(tmp_path):
    path = tmp_path / "sub" / "a.json"
    write_json_atomic(path, {"b": 1, "a": 2})
    assert path.read_text() == '{\n  "a": 2,\n  "b": 1\n}\n'
    write_text_atomic(path, "x")
    assert path.read_text() == "x" and os.listdir(path.parent) == ["a.json"]


@pytest.mark.parametrize("code, reason", [(errno.ENOSPC, "disk full"), (errno.EROFS, "read-only file system"),
                                          (errno.EACCES, "permission denied"), (errno.EFBIG, "file too large")])
def test_a_write_the_os_refuses_is_one_line_naming_the_path(tmp_path, monkeypatch, code, reason):
    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    write_text_atomic(tmp_path / "a.txt", "old")
    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(StorageError, match=rf"cannot write .*a.txt: {reason}") as exc:
        write_text_atomic(tmp_path / "a.txt", "new")
    assert "\n" not in str(exc.value)
    assert (tmp_path / "a.txt").read_text() == "old" and os.listdir(tmp_path) == ["a.txt"]


@pytest.mark.parametrize("raw", [b"id,x\r\n1,2\r\n", b"\xef\xbb\xbfid,x\n1,2\n", b"id,x\r1,2\r",
                                 "id,x\n1,2\n".encode("utf-16")])
def test_read_text_handles_bom_crlf_cr_and_utf16(tmp_path, raw):
    path = tmp_path / "a.csv"
    path.write_bytes(raw)
    assert read_text(path, ManifestError) == "id,x\n1,2\n"


def test_read_text_names_file_line_and_byte_of_non_utf8(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes(b"id,x\n1,caf\xe9\n")
    with pytest.raises(ManifestError, match=r"a.csv:2: not UTF-8 text \(byte 0xe9 at column 6"):
        read_text(path, ManifestError)
