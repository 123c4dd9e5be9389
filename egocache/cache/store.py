"""Where a cache's files live: a local (or NFS) folder, or an fsspec URL such as `s3://bucket/cache.zarr`.

Everything in the cache package reads and writes through a `CacheStore`, by key relative to the cache
root (`features/c/3/0`, `_egocache/shards/3/zarr.json`), so one code path serves both. The store offers
what the format needs and nothing more: whole and ranged reads, atomic writes (local: temporary file,
fsync, rename; object storage: one PUT, which is atomic), exclusive creation (local: `link`, atomic on
NFS; S3: a conditional PUT with `If-None-Match: *`), listing, checksums, and the matching zarr store.

URLs need the filesystem's fsspec package (S3: `pip install "egocache[s3]"`, i.e. s3fs); credentials
and endpoint come from the usual environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
`AWS_PROFILE`, `AWS_ENDPOINT_URL` for S3-compatible servers). Failures are one line naming the URL.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
import hashlib
import os
import uuid
from typing import Any, Iterator

from egocache.core.files import is_url, os_error_reason, storage_error, write_atomic
from egocache.errors import DependencyError, EgocacheError, StorageError

_EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure"}


def open_store(location: str | os.PathLike[str] | CacheStore) -> CacheStore:
    """The store of the cache at `location` (a path, a `file://` or fsspec URL, or a store already)."""
    if isinstance(location, CacheStore):
        return location
    text = os.fspath(location)
    if is_url(text):
        return RemoteStore(text)
    return LocalStore(text[len("file://"):] if text.startswith("file://") else text)


class CacheStore(ABC):
    """The files of one cache, by key relative to its root (interface; see LocalStore, RemoteStore)."""

    url: str
    local: bool

    def where(self, key: str = "") -> str:
        """Full path or URL of `key`, for messages."""
        return f"{self.url}/{key}" if key else self.url

    def child(self, prefix: str) -> CacheStore:
        """The store of the files under `prefix` (a teacher group, teachers/<name>), keys relative to it."""
        return open_store(f"{self.url}/{prefix.strip('/')}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def __str__(self) -> str:
        return self.url

    # interface, implemented by both stores
    @abstractmethod
    def read(self, key: str) -> bytes:
        """The bytes of `key`; FileNotFoundError if it does not exist."""

    @abstractmethod
    def read_ranges(self, ranges: list[tuple[str, int, int]]) -> list[bytes]:
        """The bytes of each (key, start, stop) range; FileNotFoundError if a file does not exist."""

    @abstractmethod
    def size(self, key: str) -> int:
        """Bytes of `key`; FileNotFoundError if it does not exist."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether file `key` exists."""

    @abstractmethod
    def list(self, key: str = "") -> list[str]:
        """Names of the entries directly under `key` (empty if there is none)."""

    @abstractmethod
    def walk(self) -> Iterator[tuple[str, int]]:
        """(key, bytes) of every file of the cache."""

    @abstractmethod
    def write(self, key: str, data: bytes) -> None:
        """Write `key` atomically: readers see the old content or the complete new one."""

    @abstractmethod
    def create_exclusive(self, key: str, data: bytes) -> bool:
        """Create `key` holding `data` only if it does not exist; False if it does (atomic on NFS and S3)."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove file `key` if it exists."""

    @abstractmethod
    def sha256(self, key: str) -> str:
        """sha256 of the stored bytes of `key`."""

    @abstractmethod
    def zarr_store(self, *, read_only: bool) -> Any:
        """The zarr store over the same files."""

    def failure(self, action: str, key: str, exc: BaseException) -> Exception:
        """The one-line error for `exc` met while doing `action` on `key` (returned, for `raise ... from`)."""
        if isinstance(exc, EgocacheError):
            return exc
        if self.local and isinstance(exc, OSError):
            return storage_error(action, self.where(key), exc)
        reason = _remote_reason(exc) if not self.local else f"{type(exc).__name__}: {exc}"
        return StorageError(f"cannot {action} {self.where(key)}: {reason}")

    def is_empty(self) -> bool:
        """Whether no file exists under the cache root (or the root does not exist)."""
        return next(iter(self.walk()), None) is None


class LocalStore(CacheStore):
    """A cache in a local or network (NFS) folder."""

    local = True

    def __init__(self, path: str) -> None:
        self.url = os.path.abspath(os.fspath(path))

    def path(self, key: str = "") -> str:
        """Local file system path of `key`."""
        return os.path.join(self.url, *key.split("/")) if key else self.url

    def where(self, key: str = "") -> str:
        return self.path(key)

    def read(self, key: str) -> bytes:
        with open(self.path(key), "rb") as fh:
            return fh.read()

    def read_ranges(self, ranges: list[tuple[str, int, int]]) -> list[bytes]:
        out = []
        for key, start, stop in ranges:
            with open(self.path(key), "rb") as fh:
                fh.seek(start)
                out.append(fh.read(stop - start))
        return out

    def size(self, key: str) -> int:
        return os.path.getsize(self.path(key))

    def exists(self, key: str) -> bool:
        return os.path.isfile(self.path(key))

    def list(self, key: str = "") -> list[str]:
        try:
            return os.listdir(self.path(key))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def walk(self) -> Iterator[tuple[str, int]]:
        for root, _, files in os.walk(self.url):
            rel = os.path.relpath(root, self.url).replace(os.sep, "/")
            for f in files:
                key = f if rel == "." else f"{rel}/{f}"
                with contextlib.suppress(FileNotFoundError):
                    yield key, os.path.getsize(os.path.join(root, f))

    def write(self, key: str, data: bytes) -> None:
        def fill(tmp: str) -> None:
            with open(tmp, "wb") as fh:
                fh.write(data)

        write_atomic(self.path(key), fill)

    def create_exclusive(self, key: str, data: bytes) -> bool:
        target = self.path(key)
        tmp = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.new-{uuid.uuid4().hex[:8]}")
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.link(tmp, target)   # fails if target exists; atomic on local file systems and NFS
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            raise storage_error("create", target, exc) from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def delete(self, key: str) -> None:
        try:
            os.unlink(self.path(key))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise storage_error("delete", self.path(key), exc) from exc

    def sha256(self, key: str) -> str:
        with open(self.path(key), "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()

    def zarr_store(self, *, read_only: bool) -> Any:
        from zarr.storage import LocalStore as ZarrLocalStore

        return ZarrLocalStore(self.url, read_only=read_only)


def _remote_reason(exc: BaseException) -> str:
    """A one-line reason for an error of an fsspec/botocore call, saying what to check."""
    name, text = type(exc).__name__, str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if name in ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"):
        return ("no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)")
    if isinstance(exc, PermissionError) or any(s in text for s in ("AccessDenied", "InvalidAccessKeyId",
                                                                   "SignatureDoesNotMatch", "Forbidden")):
        return f"access denied ({text}); check the credentials and the bucket's permissions"
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ClientConnectorError") or isinstance(
            exc, ConnectionError):
        return f"cannot reach the storage endpoint ({text}); check AWS_ENDPOINT_URL and the network"
    if isinstance(exc, OSError):
        return os_error_reason(exc)
    return f"{name}: {text}"


class RemoteStore(CacheStore):
    """A cache under an fsspec URL (object storage); the filesystem is made again in each process."""

    local = False

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.scheme = self.url.split("://", 1)[0]
        self._fs: Any = None
        self._root = ""
        self._pid = -1

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "scheme": self.scheme, "_fs": None, "_root": "", "_pid": -1}

    @property
    def fs(self) -> Any:
        """The fsspec filesystem (one per process: a forked DataLoader worker makes its own)."""
        if self._fs is None or self._pid != os.getpid():
            import fsspec

            try:
                self._fs, self._root = fsspec.url_to_fs(self.url, use_listings_cache=False)
            except (ImportError, ValueError) as exc:
                extra = _EXTRAS.get(self.scheme)
                hint = f'pip install "egocache[{extra}]"' if extra == "s3" else "install its fsspec package"
                if isinstance(exc, ValueError) and "Protocol not known" not in str(exc):
                    raise StorageError(f"{self.url}: not a usable URL ({exc})") from exc
                raise DependencyError(f"{self.url}: caches on {self.scheme}:// need the optional "
                                      f"dependency for it ({hint}): {exc}") from exc
            self._root = self._root.rstrip("/")
            self._pid = os.getpid()
        return self._fs

    def _path(self, key: str) -> str:
        """The filesystem path of `key` (bucket/prefix/key)."""
        self.fs  # noqa: B018 - resolves the root (and the dependency check) on first use
        return f"{self._root}/{key}" if key else self._root

    def _bucket_missing(self) -> bool:
        """Whether the URL's bucket (first path element) does not exist."""
        bucket = self._path("").split("/", 1)[0]
        try:
            self.fs.info(bucket)
        except FileNotFoundError:
            return True
        except Exception:  # the reason is reported by the failing call itself
            return False
        return False

    def _call(self, action: str, key: str, fn: Any, *args: Any, **kw: Any) -> Any:
        """fn(*args) with storage failures as one StorageError naming the URL; FileNotFoundError passes
        through unless the bucket itself is missing."""
        try:
            return fn(*args, **kw)
        except FileNotFoundError as exc:
            if self._bucket_missing():
                bucket = self._path("").split("/", 1)[0]
                raise StorageError(f"cannot {action} {self.where(key)}: bucket {bucket!r} does not exist "
                                   "(create it, or check the URL and AWS_ENDPOINT_URL)") from exc
            raise
        except (DependencyError, StorageError, FileExistsError):
            raise
        except Exception as exc:  # botocore, aiohttp and fsspec raise many unrelated types
            raise StorageError(f"cannot {action} {self.where(key)}: {_remote_reason(exc)}") from exc

    def read(self, key: str) -> bytes:
        return self._call("read", key, self.fs.cat_file, self._path(key))

    def read_ranges(self, ranges: list[tuple[str, int, int]]) -> list[bytes]:
        if not ranges:
            return []
        return self._call("read", ranges[0][0], self.fs.cat_ranges, [self._path(k) for k, _, _ in ranges],
                          [r[1] for r in ranges], [r[2] for r in ranges], on_error="raise")

    def size(self, key: str) -> int:
        return int(self._call("read", key, self.fs.size, self._path(key)))

    def exists(self, key: str) -> bool:
        # fs.isfile/exists turn every error (no credentials, no network) into False; info says why
        try:
            return self._call("read", key, self.fs.info, self._path(key)).get("type") == "file"
        except FileNotFoundError:
            return False

    def list(self, key: str = "") -> list[str]:
        try:
            names = self._call("list", key, self.fs.ls, self._path(key), detail=False, refresh=True)
        except FileNotFoundError:
            return []
        base = self._path(key).rstrip("/") + "/"
        return [n[len(base):] if n.startswith(base) else n.rsplit("/", 1)[-1] for n in names
                if n.rstrip("/") != base.rstrip("/")]

    def walk(self) -> Iterator[tuple[str, int]]:
        try:
            found = self._call("list", "", self.fs.find, self._root, detail=True)
        except FileNotFoundError:
            return
        for path, info in sorted(found.items()):
            if info.get("type") == "file":
                yield path[len(self._root) + 1:], int(info.get("size") or 0)

    def write(self, key: str, data: bytes) -> None:
        self._call("write", key, self.fs.pipe_file, self._path(key), data)

    def create_exclusive(self, key: str, data: bytes) -> bool:
        try:
            self._call("create", key, self.fs.pipe_file, self._path(key), data, mode="create")
        except FileExistsError:
            return False
        return True

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._call("delete", key, self.fs.rm_file, self._path(key))

    def sha256(self, key: str) -> str:
        def digest() -> str:
            with self.fs.open(self._path(key), "rb", block_size=8 << 20) as fh:
                return hashlib.file_digest(fh, "sha256").hexdigest()

        return self._call("read", key, digest)

    def zarr_store(self, *, read_only: bool) -> Any:
        from zarr.storage import FsspecStore

        self.fs  # noqa: B018 - the dependency check, with its one-line message
        return self._call("open", "", FsspecStore.from_url, self.url, read_only=read_only,
                          storage_options={"use_listings_cache": False})
