"""One exception hierarchy for the library; the CLI turns EgocacheError into a one-line message."""


class EgocacheError(Exception):
    """Base class of every error egocache raises on purpose."""


class ConfigError(EgocacheError, ValueError):
    """A setting (CLI option or config field) has a value that cannot work; the message names it."""


class StorageError(EgocacheError):
    """The operating system refused a write or read (disk full, read-only, permissions, quota)."""


class CacheError(EgocacheError):
    """A cache cannot be created, opened, written or read."""


class CacheFormatError(CacheError):
    """A cache's schema, version or attributes are not what this egocache reads."""


class CacheLockedError(CacheError):
    """Another process holds the cache's extraction lock."""


class CheckpointError(EgocacheError):
    """A checkpoint file is missing, unsafe, or does not match the model."""


class ManifestError(EgocacheError):
    """Annotations or a manifest cannot be turned into clips."""


class ClipError(EgocacheError):
    """One clip cannot be extracted; the run records the reason and goes on."""


class DecodeError(ClipError):
    """A video cannot be decoded, or a clip's frames lie outside it."""


class IMUError(ClipError):
    """An IMU stream is missing, broken, or does not cover a clip's window."""


class AudioError(ClipError):
    """A video has no audio track, its track cannot be decoded, or it does not cover a clip's window."""


class DependencyError(EgocacheError):
    """An optional dependency (a pip extra, e.g. egocache[deploy]) that a command needs is not installed."""
