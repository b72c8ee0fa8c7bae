"""Where a store lives: a local folder, or a URL on object storage (``s3://``, ``gs://``, ``az://``,
``memory://``, any fsspec protocol).

Local stores are :class:`pathlib.Path`; remote ones are :class:`upath.UPath` (fsspec underneath),
which carry their ``storage_options`` (credentials, ``endpoint_url``) and answer the same path
calls (``/``, ``exists``, ``read_text``...). Credentials come the standard way: the AWS
environment variables and config files, or ``storage_options``.

On object storage there is no rename and no file lock: result groups are written to a scratch
prefix and copied into place with a completion mark (:func:`brainzarr.store.group_writer`), and
one writer at a time is the user's to arrange.
"""

from __future__ import annotations

from pathlib import Path

from .exceptions import InputError, StoreError

__all__ = ["location", "user_path", "is_remote", "zarr_store", "open_group", "storage_options_of", "StoreLocationError"]


class StoreLocationError(StoreError):
    """A store URL that cannot be reached: no such bucket, bad credentials, unknown protocol."""


def user_path(path) -> Path:
    """A local path a user gave, with ``~`` expanded (``~/maps/pet.nii.gz``) as nibabel, xarray and
    pandas expand it; unexpanded, a writer made a folder named ``~`` in the working directory."""
    return (path if isinstance(path, Path) else Path(str(path))).expanduser()


def task_path(path):
    """``path`` as a task carries it to a worker: a local path made absolute (a worker of a
    cluster runs in a working directory of its own, where a relative path names another
    folder, or none), a URL as it is."""
    return path if is_remote(path) else user_path(path).absolute()


def is_remote(path) -> bool:
    """Whether ``path`` is a URL of an fsspec filesystem other than the local one."""
    text = str(path)
    if "://" not in text:
        return False
    return not text.startswith(("file://", "local://"))


def location(path, storage_options: dict | None = None):
    """A :class:`~pathlib.Path` for a local path, a :class:`upath.UPath` for a URL (a
    :class:`brainzarr.Store` gives its own)."""
    if type(path).__name__ == "Store" and hasattr(path, "attrs"):
        return path.path
    if type(path).__name__ == "Dataset" and hasattr(path, "encoding"):
        return _dataset_store(path, storage_options)
    if hasattr(path, "storage_options") and hasattr(path, "fs") and not storage_options:
        return path  # a UPath already
    if isinstance(path, Path) and not storage_options:
        return path.expanduser()
    text = str(path)
    if not is_remote(text):
        if storage_options:  # a URL's scheme left out: the store was written here, the options unused
            raise InputError(
                f"{text} is a local path, and storage options ({', '.join(map(str, storage_options))}) are for a "
                "store at a URL, such as s3://bucket/brain.zarr"
            )
        return user_path(text.removeprefix("file://"))
    try:
        from upath import UPath
    except ImportError:  # pragma: no cover - an install without the cloud extra
        raise StoreLocationError(f"{text} is on object storage, which needs: pip install 'brainzarr[cloud]'") from None
    try:
        return UPath(text, **(storage_options or {}))
    except (ImportError, ValueError) as exc:
        raise StoreLocationError(f"cannot open {text}: {exc}") from None


#: why a Dataset has no store, in the messages of whatever looks for one
NO_STORE = (
    "it was not opened with brainzarr.open_store, or an xarray operation that keeps no encoding "
    "(.where, arithmetic, merge) made it"
)


#: where :func:`brainzarr.open_store` keeps a Dataset's store, in its encoding
STORE_KEY = "brainzarr_store"


def dataset_store(ds):
    """The path of the store a Dataset from :func:`brainzarr.open_store` was opened from (kept
    in its encoding), or None."""
    return ds.encoding.get(STORE_KEY)


def _dataset_store(ds, storage_options):
    """A Dataset's store, given where a store goes: ``fit_store(ds, "pca", 8)``. Without one,
    the Dataset's text would be taken for a file name."""
    from .exceptions import InputTypeError

    path = dataset_store(ds)
    if path is None:
        raise InputTypeError(
            f"a store is a path (or a Dataset from brainzarr.open_store); this Dataset has none: {NO_STORE}"
        )
    return location(path, storage_options)


def storage_options_of(path) -> dict:
    return dict(getattr(path, "storage_options", {}) or {})


def open_group(path, mode: str = "r"):
    """A zarr group of a store location. Writers see the nodes themselves, never the consolidated
    metadata (which brainzarr refreshes after each write)."""
    import zarr

    from ._zarr import quiet_zarr

    with quiet_zarr():
        return zarr.open_group(
            zarr_store(path, read_only=mode == "r", strict=False),
            mode=mode,
            zarr_format=3,
            use_consolidated=None if mode == "r" else False,
        )


def zarr_store(path, *, read_only: bool = True, strict: bool = True):
    """The zarr store object of a store location (strict: missing/damaged chunks raise)."""
    from ._zarr import StrictFsspecStore, StrictLocalStore

    if not is_remote(path):
        from zarr.storage import LocalStore

        cls = StrictLocalStore if strict else LocalStore
        return cls(task_path(str(path)), read_only=read_only)  # absolute: its arrays are read by workers too
    url = str(path)
    options = storage_options_of(path)
    if strict:
        return StrictFsspecStore.from_url(url, storage_options=options, read_only=read_only)
    from zarr.storage import FsspecStore

    return FsspecStore.from_url(url, storage_options=options, read_only=read_only)
