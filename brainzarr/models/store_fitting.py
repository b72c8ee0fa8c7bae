"""Store-aware fitting: fit a representation on a store's training voxels, write the result back.

:func:`fit_store` is the path every method takes:

1. fit on the ``split == "train"`` voxels (``split_random`` / ``split_blocked`` on request),
   streamed by the estimator;
2. one streamed pass, one task per row block of the store (locally or on a dask.distributed
   client): read the block, embed it, reconstruct it, write its rows of ``embedding``,
   ``reconstruction`` (with the store's gene chunking) and ``voxel_rmse`` — whole chunks, so no
   two tasks share one — and return its per-voxel squared errors (nothing is held whole);
3. the train and test RMSE follow from the per-voxel errors.

The result is written atomically under ``representations/<split>/<method>/k<dim>`` with
:func:`brainzarr.store.group_writer` (an interruption leaves the store readable and any
previous result intact) and opens with plain ``xarray.open_zarr(store, group=...)``:

* ``embedding (voxel, component)``, ``reconstruction (voxel, gene)`` (unless
  ``write_reconstruction=False``), ``voxel_rmse (voxel)`` (error map over genes);
* ``rmse (split)`` with ``split = ['train', 'test']``. (The voxel coordinate ``split`` of the
  store is therefore not repeated in results; ``split_random`` and ``split_blocked`` are, and
  attribute ``split`` names the scheme used.)
* the model's parameters as arrays ``param_*`` (:meth:`Representation.to_dataset`), so
  :func:`load_model` rebuilds the fitted estimator without pickles;
* attributes: method, dim, params, seed, split, n_train, n_test, fit_seconds,
  transform_seconds, brainzarr version, creation time.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import re
import shutil
import time
import warnings
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
import zarr

from .._deprecation import renamed_kwargs
from .._disk import require_free
from .._location import open_group, task_path, zarr_store
from .._optional import check_installed
from .._progress import job
from .._validation import SEED, SPLIT_SYNONYMS, did_you_mean, whole_number
from .._version import __version__
from .._zarr import checked_compressors, every_chunk, quiet_zarr
from ..exceptions import (
    CheckpointMismatchError,
    InputError,
    InputTypeError,
    MethodUnavailableError,
    ResultExistsError,
    ResultNotFoundError,
)
from ..options import set_options
from ..store import (
    VOXEL_COORDS,
    as_store,
    group_writer,
    list_groups,
    read_group,
    results_by_split,
    selection_of_store,
    store_lock,
)
from ..streaming import compute_tasks, expression_rows, reusing_buffers, rows_read
from . import METHODS, REQUIRES, check_method_names, get_model_class
from .base import row_sse

__all__ = [
    "fit_store",
    "check_fit",
    "check_methods",
    "load_model",
    "rmse_table",
    "result_group",
    "make_model",
    "RESULTS_PREFIX",
    "MethodUnavailableError",
]

log = logging.getLogger(__name__)

RESULTS_PREFIX = "representations"
#: what a decoder's reconstruction error measures (rmse_table's ``reading``)
READINGS = {"knn": "neighbourhood (kNN)", "mlp": "compression (MLP decoder)"}
#: where estimators that checkpoint (``checkpoint_dir`` parameter) keep them, inside the store;
#: a hidden folder, so it is never taken for a result group
CHECKPOINTS = ".checkpoints"
_SPLITS = ("train", "test")


def result_group(method: str, n_components: int, split: str = "random") -> str:
    """The group of a result: ``representations/<split>/<method>/k<n_components>``, so fits on the
    random and on the blocked split live side by side. Results of earlier versions sit at
    ``representations/<method>/k<n>``; :func:`brainzarr.read_group` still finds them, and reads
    the old path of a new store's result as its split's."""
    return f"{RESULTS_PREFIX}/{split}/{method}/k{as_n_components(n_components)}"


def selected_methods(methods) -> tuple[str, ...] | None:
    """A selection of methods as a tuple of names: None (all), a name or comma-separated names,
    or an iterable of names. ``m in "kpca"`` held for ``"pca"``: a string taken for a collection
    selected PCA's results too."""
    if methods is None:
        return None
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    return tuple(methods)


def selected_dims(dims) -> tuple[int, ...] | None:
    """A selection of dims as a tuple of ints: None (all), one dim, or an iterable of dims."""
    if dims is None:
        return None
    if isinstance(dims, str) or not np.iterable(dims):
        dims = [dims]
    return tuple(as_n_components(d, "dims") for d in dims)


def as_n_components(value, name: str = "n_components") -> int:
    """``value`` as a number of components: a whole number (``8``, ``np.int64(8)``, ``8.0``).

    ``int()`` took ``2.5`` as 2 and ``True`` as 1, fitting and reading another result than the
    one named, and said ``invalid literal for int()`` of ``"k8"``.
    """
    hint = ""
    if isinstance(value, str) and re.fullmatch(r"k\d+", value):
        hint = f" (k{value[1:]} in a group's name is n_components={value[1:]})"
    elif isinstance(value, str) and value in METHODS:
        hint = " (the method comes before n_components)"
    return whole_number(value, name, hint=hint)


def split_scheme(store, split: str | None = None) -> str:
    """The split scheme a fit uses: ``split``, else the store's (``provenance['split']['scheme']``)."""
    if split is None:
        return str(as_store(store).provenance.get("split", {}).get("scheme", "random"))
    return _checked_split(split)


def _checked_split(split: str) -> str:
    if split not in ("random", "blocked"):
        hint = did_you_mean(split, ("random", "blocked"), SPLIT_SYNONYMS)
        raise InputError(f"split must be 'random' or 'blocked', got {split!r}{hint}")
    return split


def model_class(method: str):
    """The estimator class of ``method``, with a clear error when it cannot be imported or a
    package its fit needs is not installed (checked without importing it)."""
    if not isinstance(method, str):
        raise InputTypeError(
            f"method is one name such as 'pca', got {type(method).__name__} {method!r}: fit one method per call"
        )
    check_installed(REQUIRES.get(method, ()), f"method {method!r}", error=MethodUnavailableError)
    try:
        return get_model_class(method)
    except ModuleNotFoundError as exc:
        module = f"brainzarr.models.{METHODS[method][0]}"
        if exc.name == module:
            raise MethodUnavailableError(
                f"method {method!r} is not available in this version of brainzarr ({module} does not exist yet)"
            ) from None
        raise MethodUnavailableError(
            f"method {method!r} needs the package {exc.name!r}: pip install 'brainzarr[models]'"
        ) from None
    except AttributeError:
        raise MethodUnavailableError(
            f"method {method!r} is not available in this version of brainzarr "
            f"(brainzarr.models.{METHODS[method][0]} has no {METHODS[method][1]})"
        ) from None


def check_methods(methods, purpose: str, *, also=()) -> None:
    """Before a job of several fits starts: an unknown method (a typo is the quicker fix); then
    every package that the fits of ``methods`` (and the job's other steps: ``also``, import
    names) need and that is missing, named in one error.

    Raises
    ------
    InputError, MissingDependencyError, MethodUnavailableError
    """
    check_method_names(methods)
    check_installed([*(module for method in methods for module in REQUIRES.get(method, ())), *also], purpose)
    for method in methods:
        model_class(method)


@renamed_kwargs(seed="random_state", dim="n_components")
def make_model(method: str, n_components: int, *, random_state: int = 0, **params):
    """An unfitted estimator of ``method`` with ``n_components``, seeded with ``random_state``.

    Raises
    ------
    InputError
        For a parameter the estimator does not take.
    """
    cls = model_class(method)
    names = set(cls._get_param_names())
    unknown = sorted(set(params) - names)
    if unknown:
        import difflib

        meant = [m for u in unknown for m in difflib.get_close_matches(u, sorted(names), n=1, cutoff=0.7)]
        hint = f" (did you mean {', '.join(meant)}?)" if meant else ""
        raise InputError(
            f"{method} does not take {', '.join(unknown)}{hint}; its parameters: {', '.join(sorted(names))}"
        )
    params = {name: _of_the_defaults_kind(method, cls, name, value) for name, value in params.items()}
    if "random_state" in names and "random_state" not in params:
        params["random_state"] = int(random_state)
    return cls(n_components=as_n_components(n_components), **params)


def _of_the_defaults_kind(method: str, cls, name: str, value):
    """``value`` for the parameter ``name``, refused when its default is a bool, an integer or a
    float and it is neither one nor None (a whole float given for an integer, e.g.
    ``cache_bytes=2e9``, is taken): the estimator would fail later, inside the fit, with a less
    plain message."""
    import inspect
    import numbers

    default = inspect.signature(cls.__init__).parameters[name].default
    if value is None:  # e.g. cache_bytes=None: no cache; the estimator says where None is no value
        return value
    if isinstance(default, bool):
        ok, kind = isinstance(value, bool), "true or false"
    elif isinstance(default, numbers.Integral):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        ok, kind = isinstance(value, numbers.Integral) and not isinstance(value, bool), "an integer"
    elif isinstance(default, numbers.Real):
        ok, kind = isinstance(value, numbers.Real) and not isinstance(value, bool), "a number"
    else:
        return value  # None, a string or a tuple: the estimator checks what it accepts
    if not ok:
        raise InputError(f"{method}'s {name} takes {kind} (default {default!r}), got {value!r}")
    return value


def _split_labels(ds: xr.Dataset, split: str | None) -> tuple[str, str, np.ndarray]:
    """(scheme, coordinate name, labels) of the split to use."""
    if split is None:
        scheme = ds.attrs.get("provenance", {}).get("split", {}).get("scheme", "random")
        return scheme, "split", np.asarray(ds["split"].values)
    split = _checked_split(split)
    return split, f"split_{split}", np.asarray(ds[f"split_{split}"].values)


def check_n_components(method: str, n_components: int, n_genes: int, where: str = "the store") -> None:
    """Refuse ``n_components`` above ``n_genes`` for a method whose components live among the
    genes (PCA, NMF), before anything is fitted."""
    if getattr(model_class(method), "components_within_features", False) and int(n_components) > n_genes:
        raise InputError(f"{method} with {n_components} components needs at least as many genes; {where} has {n_genes}")


def check_fit(
    store,
    method: str,
    n_components: int,
    *,
    overwrite: bool = False,
    params: dict | None = None,
    write_reconstruction: bool = True,
    split: str | None = None,
):
    """Everything a fit can check before it computes: the method and its parameters (its torch
    device among them), the number of components against the genes, writability, an existing
    result and the room on the disk for what it will write. Returns the model.

    Raises
    ------
    ResultExistsError, StoreReadOnlyError, InputError, MethodUnavailableError, InsufficientDiskError
    """
    store = as_store(store)
    model = make_model(method, n_components, **dict(params or {}))
    if "device" in model.get_params():  # CUDA asked for where there is none: before any method is fitted
        from .._torch import resolve_device

        resolve_device(model.get_params()["device"])
    check_n_components(method, n_components, int(store.dataset.sizes["gene"]))
    store.check_writable()
    group = result_group(method, n_components, split_scheme(store, split))
    if store.group_path(group).exists() and not overwrite:
        raise ResultExistsError(f"{group} exists in {store.path}", options={"overwrite": True})
    n_voxels = int(store.dataset.sizes["voxel"])
    estimate = n_voxels * (int(n_components) + 1) * 4  # embedding and per-voxel error, float32
    if not store.remote:  # object storage has no disk to fill
        if write_reconstruction:  # packed and compressed about as the expression is
            estimate += int(1.1 * _folder_bytes(store.path / "expression"))
        require_free(store.path, estimate, f"{group} of {store.path.name}")
    return model


def checkpoint_folder(store):
    """Where a store's estimators keep checkpoints: ``<store>/.checkpoints`` for a local store, a
    folder in the user's cache for one on object storage (torch writes local files)."""
    if not store.remote:
        return store.path / CHECKPOINTS
    import hashlib

    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "brainzarr" / "checkpoints"
    return cache / hashlib.sha1(str(store.path).encode()).hexdigest()[:16]


def _folder_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def _refuse_a_selection(ds: xr.Dataset, store, method: str, n_components: int) -> None:
    """A Dataset that is a selection of its store (``ds.isel(gene=...)``) was fitted as the
    whole store, the selection unseen."""
    shown = selection_of_store(ds, store)
    if shown is None:
        return
    estimator = get_model_class(method).__name__
    raise InputError(
        f"this Dataset is a selection of the store ({shown}), and a store's fit fits and writes the whole "
        f"store; fit the selection with an estimator, e.g. brainzarr.models.{estimator}"
        f"(n_components={n_components}).fit(ds.brain.expression('train')), or fit the store itself"
    )


@renamed_kwargs(seed="random_state", dim="n_components")
def fit_store(
    store,
    method: str,
    n_components: int,
    *,
    overwrite: bool = False,
    random_state: int = 0,
    split: str | None = None,
    write_reconstruction: bool = True,
    progress: bool | None = None,
    client=None,
    **params,
) -> xr.Dataset:
    """Fit ``method`` with ``n_components`` on a store's training voxels and write the result.

    Parameters
    ----------
    store : str, Path, Store or Dataset
        A brainzarr store, or the Dataset :func:`brainzarr.open_store` gave (a selection of it
        is refused: the fit reads and writes the whole store).
    method : str
        'pca', 'kpca', 'nmf', 'tsne', 'umap' or 'ae' (see :data:`brainzarr.models.METHODS`).
    n_components : int
        Number of components (the result's ``k<n_components>``).
    overwrite : bool
        Replace an existing result of this method and number of components.
    random_state : int
        Seeds the estimator; recorded (attribute ``seed``).
    split : {'random', 'blocked'}, optional
        Which train/test split to use (default: the store's ``split``); recorded.
    write_reconstruction : bool
        Write ``reconstruction (voxel, gene)`` (as large as ``expression``); the RMSE is computed
        either way.
    progress : bool, optional
        Progress bars for this call (as :func:`brainzarr.set_options`).
    client : distributed.Client, optional
        Run the streamed passes on this cluster for this call (as :func:`brainzarr.set_options`).
    **params
        Estimator parameters (e.g. ``n_power_iter`` for PCA, ``max_epochs`` for NMF).
        Estimators that take ``checkpoint_dir`` get ``<store>/.checkpoints/<split>/<method>/k<n>``
        unless given (removed once the result is written, so an interrupted fit resumes and a
        finished one does not; a checkpoint there from an interrupted fit with other data or
        settings is discarded with a warning).

    Returns
    -------
    xarray.Dataset
        The written result group, opened lazily.

    Raises
    ------
    ResultExistsError
        The result exists and ``overwrite`` is false (checked before fitting, as are the
        parameters, the number of components and whether the store is writable).

    Notes
    -----
    ``dim=`` and ``seed=`` (now ``n_components`` and ``random_state``) still work for this
    release, with a FutureWarning.
    """
    given = store
    store = as_store(store)
    n_components, random_state = as_n_components(n_components), whole_number(random_state, "random_state", hint=SEED)
    if isinstance(given, xr.Dataset):
        _refuse_a_selection(given, store, method, n_components)
    options = {k: v for k, v in (("progress", progress), ("client", client)) if v is not None}
    # reusing_buffers: the reader's blocks serve every pass of the fit and its write, then go
    with set_options(**options), store_lock(store.path, exclusive=False, what="fitted"), reusing_buffers():
        return _fit_store(
            store,
            method,
            n_components,
            overwrite,
            random_state,
            split,
            write_reconstruction,
            params,
        )


def _fit_store(store, method, dim, overwrite, seed, split, write_reconstruction, params):
    scheme = split_scheme(store, split)
    group = result_group(method, dim, scheme)
    ds = store.dataset
    names = set(model_class(method)._get_param_names())
    checkpoints = checkpoint_folder(store) / scheme / method / f"k{dim}"
    if "second_decoder" in names and "second_decoder" not in params:
        params["second_decoder"] = "mlp"  # both readings of t-SNE's and UMAP's error, unless told not to
    if "checkpoint_dir" in names and params.get("checkpoint_dir") is None:
        params["checkpoint_dir"] = str(checkpoints)  # an interrupted fit resumes when run again
    model = check_fit(
        store,
        method,
        dim,
        overwrite=overwrite,
        params={**params, "random_state": seed},
        write_reconstruction=write_reconstruction,
        split=scheme,
    )
    scheme, split_coord, labels = _split_labels(ds, split)
    # which split each voxel is in, as small integers: the labels are strings (20-24 bytes a voxel)
    in_split = np.full(labels.shape, -1, dtype=np.int8)
    for code, name in enumerate(_SPLITS):
        in_split[labels == name] = code
    del labels
    train = in_split == _SPLITS.index("train")
    if not train.any():
        raise InputError(f"the store has no training voxels in {split_coord}")
    X = expression_rows(store)  # whole-row blocks, one read each

    n_voxels = int(ds.sizes["voxel"])
    del ds
    _forget_coordinates(store)
    read_before = rows_read(store.path / "expression")
    with job(f"{method} k{dim}", unit="block"):
        start = time.perf_counter()
        rows = expression_rows(store, mask=train)
        try:
            model.fit(rows)
        except CheckpointMismatchError as exc:
            if params.get("checkpoint_dir") != str(checkpoints):
                raise  # the caller's own folder: theirs to clear
            # brainzarr's folder for this method/dim, left by an interrupted fit of other settings
            warnings.warn(
                f"discarding a checkpoint of an interrupted {method} k{dim} fit with other data or "
                f"settings ({exc}); starting afresh",
                stacklevel=3,
            )
            shutil.rmtree(checkpoints, ignore_errors=True)
            model.fit(rows)
        fit_seconds = time.perf_counter() - start
        read_fit = rows_read(store.path / "expression")

        start = time.perf_counter()
        rec_layout = store.layout.for_reconstruction()
        ds = store.dataset
        template = _result_template(ds, model, write_reconstruction, rec_layout, store.chunks)
        attrs = {
            **template.attrs,
            "method": method,
            "dim": dim,
            "seed": seed,
            "split": scheme,
            "split_coordinate": split_coord,
            "n_train": int(train.sum()),
            "n_test": int((in_split == _SPLITS.index("test")).sum()),
            "fit_seconds": round(fit_seconds, 3),
            "brainzarr_version": __version__,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }
        encoding = {
            name: {"chunks": tuple(c[0] for c in var.chunks), "compressors": checked_compressors()}
            for name, var in template.data_vars.items()
            if var.chunks is not None
        }
        if write_reconstruction:  # packed as the expression is
            encoding["reconstruction"] = rec_layout.encoding(store.chunks, ds.sizes["gene"])
        with group_writer(store, group, overwrite=overwrite) as scratch, quiet_zarr(), warnings.catch_warnings():
            warnings.simplefilter("ignore", zarr.errors.UnstableSpecificationWarning)  # string coordinates
            warnings.filterwarnings("ignore", message=".*without any _FillValue")  # every chunk is written
            # metadata, coordinates and parameters now; the voxel arrays are filled by the pass below
            template.to_zarr(
                zarr_store(scratch, read_only=False, strict=False),
                mode="w",
                compute=False,
                consolidated=False,
                zarr_format=3,
                encoding=encoding,
            )
            del template, ds
            _forget_coordinates(store)
            tasks = _write_tasks(X, model, scratch, rec_layout if write_reconstruction else None)
            parts = compute_tasks(tasks, desc=f"writing {method} k{dim}")
            sse = np.concatenate([p[0] for p in parts])

            def per_split(errors):
                return [
                    float(np.sqrt(errors[in_split == code].sum() / max((in_split == code).sum() * X.shape[1], 1)))
                    for code in range(len(_SPLITS))
                ]

            rmse = per_split(sse)
            readings = {}
            if getattr(model, "second_decoder_", None) is not None:  # the other decoder's reading
                readings = {model.decoder: rmse, model.second_decoder: per_split(np.concatenate([p[1] for p in parts]))}
                attrs.update(decoder=model.decoder, second_decoder=model.second_decoder)
            attrs["transform_seconds"] = round(time.perf_counter() - start, 3)
            # passes over the store (in this process: a cluster's workers read on their own)
            attrs["passes_fit"] = round((read_fit - read_before) / n_voxels, 2)
            attrs["passes_write"] = round((rows_read(store.path / "expression") - read_fit) / n_voxels, 2)
            log.info(
                "%s k%d: the fit read the store %.1f times, the write pass %.1f",
                method, dim, attrs["passes_fit"], attrs["passes_write"],
            )  # fmt: skip
            extra = {}
            if readings:
                extra["rmse_by_decoder"] = (("decoder", "split"), np.asarray(list(readings.values())))
            coords = {"split": list(_SPLITS), **({"decoder": list(readings)} if readings else {})}
            xr.Dataset({"rmse": ("split", np.asarray(rmse)), **extra}, coords=coords).to_zarr(
                zarr_store(scratch, read_only=False, strict=False), mode="a", consolidated=False, zarr_format=3
            )
            open_group(scratch, mode="r+").attrs.update(attrs)
    if params.get("checkpoint_dir") == str(checkpoints):  # the result is written: the next fit starts afresh
        _remove_checkpoints(checkpoints, checkpoint_folder(store))
    return read_group(store, group)


def _remove_checkpoints(folder: Path, root: Path) -> None:
    """Remove a fit's checkpoint folder, then the folders above it up to ``root`` that it leaves
    empty: inside a store, a folder that is no Zarr node makes plain zarr and xarray warn on
    every opening of the store."""
    shutil.rmtree(folder, ignore_errors=True)
    for parent in folder.parents:
        if not parent.is_relative_to(root):
            break
        try:
            parent.rmdir()  # only when empty: another fit's checkpoint stays
        except OSError:
            break


def _forget_coordinates(store) -> None:
    """Let the store's cached Dataset go, and with it the voxel coordinates it holds in memory
    (~110 bytes a voxel: 0.2 GB at 1 mm, nearly a 4,096-row block of all genes). Neither the
    fit nor the write pass needs them; the Dataset opens again (under a second at 1 mm) to lay
    out the result."""
    store.__dict__.pop("dataset", None)


def _result_template(ds: xr.Dataset, model, write_reconstruction: bool, rec_layout, chunks) -> xr.Dataset:
    """The result's layout: voxel arrays as unfilled dask placeholders with the store's row
    chunks (the reconstruction in whole shards, as it is written), coordinates and the model's
    parameter arrays."""
    n, d = ds.sizes["voxel"], ds.sizes["gene"]
    row_chunk, gene_chunk = chunks
    rows = tuple(min(row_chunk, n - a) for a in range(0, n, row_chunk))
    shards = rec_layout.shards((row_chunk, gene_chunk), d)
    gene_chunk = shards[1] if shards else gene_chunk
    k = int(model._embedding_width())
    # variables, not DataArrays: a DataArray would bring every voxel coordinate along, 'split' too
    coords = {c: ds[c].variable for c in ("voxel",) + VOXEL_COORDS if c in ds.coords and c != "split"}
    coords["gene"] = ds["gene"].variable
    data = {
        "embedding": (("voxel", "component"), da.empty((n, k), chunks=(rows, k), dtype=np.float32)),
        "voxel_rmse": (("voxel",), da.empty(n, chunks=(rows,), dtype=np.float32)),
    }
    if write_reconstruction:
        data["reconstruction"] = (("voxel", "gene"), da.empty((n, d), chunks=(rows, gene_chunk), dtype=np.float32))
    out = xr.Dataset(data, coords={**coords, "component": np.arange(1, k + 1)})
    params = model.to_dataset()
    clash = [dim for dim in params.dims if dim in out.dims and params.sizes[dim] != out.sizes[dim]]
    if clash:
        raise InputError(
            f"{type(model).__name__}'s parameter arrays use dims {clash} with other sizes "
            "than the result's; rename them"
        )
    out = xr.merge([out, params], combine_attrs="override")
    out.attrs = dict(params.attrs)
    if "affine" not in out["i"].attrs:
        out["i"].attrs.update({key: ds.attrs[key] for key in ("affine", "grid_shape", "space", "resolution_mm")})
    return out


def _write_tasks(X, model, scratch: Path, rec_layout) -> list:
    """One task per row block of the store: read it, embed, reconstruct, write its rows of every
    voxel array (whole chunks: the arrays share the store's row chunks) and return its per-voxel
    squared errors. One pass; memory of a task is a few row blocks."""
    blocks = X.rechunk({1: -1}).to_delayed().ravel().tolist()
    bounds = np.cumsum((0,) + X.chunks[0])
    shared_model = dask.delayed(model, traverse=False)  # one copy per worker, not one per task
    write = dask.delayed(_write_block, pure=False)
    return [
        write(shared_model, block, task_path(scratch), int(a), int(b), rec_layout)
        for block, a, b in zip(blocks, bounds[:-1], bounds[1:])
    ]


def _write_block(model, X, scratch, a: int, b: int, rec_layout):
    X = np.asarray(X, dtype=np.float32)
    Z = np.asarray(model.transform(X), dtype=np.float32)
    R = np.asarray(model.inverse_transform(Z), dtype=np.float32)
    sse = row_sse(R, X)
    second = getattr(model, "second_decoder_", None)
    sse2 = None if second is None else row_sse(model.inverse_transform_second(Z), X)
    with quiet_zarr():
        group = open_group(scratch, mode="r+")
        every_chunk(group["embedding"])[a:b] = Z
        every_chunk(group["voxel_rmse"])[a:b] = np.sqrt(sse / X.shape[1]).astype(np.float32)
        if rec_layout is not None:
            every_chunk(group["reconstruction"])[a:b] = rec_layout.pack(R)
    return sse, sse2


def read_result(store, method: str, n_components: int, split: str | None = None) -> xr.Dataset:
    """The result of ``method`` at ``n_components`` fitted on ``split`` (default the store's).

    Raises
    ------
    ResultNotFoundError
        The store holds no such result (the message lists those it holds).
    """
    store = as_store(store)
    scheme = split_scheme(store, split)
    n_components = as_n_components(n_components)
    group = result_group(method, n_components, scheme)
    try:
        return read_group(store, group)
    except KeyError:
        pass
    held = results_by_split(list_groups(store, RESULTS_PREFIX))
    if method not in METHODS and str(method).lower() in METHODS:
        todo = f" (method names are lower case: {str(method).lower()})"
    else:
        on = "" if split is None else f", split={scheme!r}"
        todo = f": fit it first (fit_store(store, {method!r}, {int(n_components)}{on}))"
    raise ResultNotFoundError(
        f"{store.path.name} holds no {method} k{int(n_components)} fitted on the {scheme} split{todo}; "
        f"it holds {' | '.join(held) if held else 'no result'}"
    )


def load_model(store, method: str, n_components: int, split: str | None = None):
    """The fitted estimator of a result (on ``split``, default the store's), rebuilt from its arrays."""
    result = read_result(store, method, n_components, split)
    model = model_class(method).from_dataset(result)
    if "gene" in result.coords:
        model.genes_ = result["gene"].values
        model.feature_dim_ = "gene"
    return model


def rmse_table(store, *, methods=None, dims=None) -> pd.DataFrame:
    """Train and test RMSE of every result in the store (optionally of some methods and dims).

    Columns: method, dim, split (the scheme), reading, train_rmse, test_rmse, fit_seconds,
    transform_seconds; sorted by method (in :data:`~brainzarr.models.METHODS` order) and dim.

    ``reading`` says what the error measures. For t-SNE and UMAP, which have no inverse of their
    own, there are two rows when both decoders were fitted: ``neighbourhood (kNN)``, the error
    of averaging the nearest training voxels in the embedding (how well it keeps
    neighbourhoods: nearly flat in the dimension), and ``compression (MLP decoder)``, the
    error of a network that sees the k coordinates alone (how much k numbers carry). Other
    methods have one row, ``reconstruction``.
    """
    store = as_store(store)
    methods, dims = selected_methods(methods), selected_dims(dims)
    rows, held = [], set()
    for group in list_groups(store, RESULTS_PREFIX):
        with quiet_zarr():
            node = open_group(store.path / group, mode="r")
            attrs = dict(node.attrs)
            if "rmse" not in node or "method" not in attrs:
                continue
            held.add(attrs["method"])
            splits = np.asarray(node["split"][:]).astype(str)
            readings = {None: dict(zip(splits, np.asarray(node["rmse"][:], dtype=float)))}
            if "rmse_by_decoder" in node:
                decoders = np.asarray(node["decoder"][:]).astype(str)
                values = np.asarray(node["rmse_by_decoder"][:], dtype=float)
                readings = {d: dict(zip(splits, values[i])) for i, d in enumerate(decoders)}
        if (methods is not None and attrs["method"] not in methods) or (dims is not None and attrs["dim"] not in dims):
            continue
        for decoder, rmse in readings.items():
            rows.append(
                {
                    "method": attrs["method"],
                    "dim": int(attrs["dim"]),
                    "split": attrs.get("split"),
                    "reading": READINGS.get(decoder, "reconstruction"),
                    "train_rmse": rmse["train"],
                    "test_rmse": rmse["test"],
                    "fit_seconds": attrs.get("fit_seconds"),
                    "transform_seconds": attrs.get("transform_seconds"),
                }
            )
    check_method_names([m for m in methods or () if m not in held])  # a typo, not a fit not made yet
    columns = ["method", "dim", "split", "reading", "train_rmse", "test_rmse", "fit_seconds", "transform_seconds"]
    table = pd.DataFrame(rows, columns=columns)
    order = {m: i for i, m in enumerate(METHODS)}
    return (
        table.assign(_order=table["method"].map(lambda m: order.get(m, len(order))))
        .sort_values(["_order", "dim"])
        .drop(columns="_order")
        .reset_index(drop=True)
    )
