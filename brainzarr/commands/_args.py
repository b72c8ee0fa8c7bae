"""What the commands share: argparse ``type=`` validators, the cluster options and the client.

Validators raise :class:`argparse.ArgumentTypeError`, so argparse reports a bad value as one
line naming the flag (``argument --dims: ...``) before anything runs.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re

from .._validation import did_you_mean
from ..exceptions import ClusterError, InputError, StoreExistsError

__all__ = [
    "positive_int",
    "nonnegative_int",
    "positive_float",
    "fraction",
    "folds",
    "finite_or_nan",
    "int_list",
    "name_list",
    "chunk_shape",
    "add_output_argument",
    "mark_output",
    "refuse_outputs_in_a_store",
    "refuse_existing",
    "refuse_writing_over_inputs",
    "add_grid_arguments",
    "grid_resolution",
    "add_cluster_arguments",
    "dask_client",
    "add_storage_arguments",
    "store_path",
]


def _number(cast, ok, what: str):
    """An argparse type: ``cast(text)`` that passes ``ok``, else one line saying what was expected."""

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = what.replace(" ", "_")
    return parse


positive_int = _number(int, lambda v: v >= 1, "a positive integer")
folds = _number(int, lambda v: v >= 2, "an integer >= 2 (cross-validation folds)")
nonnegative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _number(float, lambda v: v > 0, "a positive number")
fraction = _number(float, lambda v: 0 < v < 1, "a number between 0 and 1 (exclusive)")
finite_or_nan = _number(float, lambda v: not math.isinf(v), "a number or nan")


def add_output_argument(p, *, dest: str, help: str, writes_a_store: bool = False, **kwargs):
    """The output option, spelt alike by every command: ``-o``, ``--out`` or ``--output``;
    marked as an output (:func:`mark_output`)."""
    action = p.add_argument("-o", "--out", "--output", dest=dest, help=help, **kwargs)
    mark_output(p, dest, writes_a_store=writes_a_store)
    return action


def mark_output(p, dest: str, *, writes_a_store: bool = False) -> None:
    """Register the argument ``dest`` of parser ``p`` as a path the command writes, which
    :func:`refuse_outputs_in_a_store` checks before the command runs; ``writes_a_store``: the
    path is a store the command builds (or resumes), which may exist but not lie in another."""
    p.set_defaults(_outputs={**(p.get_default("_outputs") or {}), dest: writes_a_store})


def refuse_outputs_in_a_store(args) -> None:
    """Stop before anything is written when an output of the command lies inside a brainzarr
    store (or is one, unless the command writes a store); see
    :func:`brainzarr.store.refuse_output_in_a_store`."""
    from ..store import refuse_output_in_a_store

    for dest, writes_a_store in (getattr(args, "_outputs", None) or {}).items():
        if getattr(args, dest, None) is not None:
            refuse_output_in_a_store(getattr(args, dest), may_be_a_store=writes_a_store)


def refuse_existing(*paths, overwrite: bool) -> None:
    """Stop before anything is written when one of a command's output files (None: not asked
    for) exists and ``--overwrite`` was not given."""
    for path in paths:
        if path is not None and os.path.exists(path) and not overwrite:
            raise StoreExistsError(f"{path} exists", options={"overwrite": True})


def refuse_writing_over_inputs(outputs, inputs: dict) -> None:
    """Stop before anything is written when one of a command's output files (None: not asked
    for) is one of its input files, ``{"the atlas": path}``: ``--overwrite`` replaces outputs,
    never a file the command reads."""
    read = {os.path.realpath(path): (role, path) for role, path in inputs.items() if path and os.path.isfile(path)}
    for path in outputs:
        if path is not None and os.path.realpath(path) in read:
            role, source = read[os.path.realpath(path)]
            same = "" if str(source) == str(path) else f" ({source})"
            raise InputError(f"{path} is {role}{same}, which this command reads: name the output otherwise")


RESOLUTION_HELP = "grid spacing in mm of the MNI152 brain mask (default 8; a --mask has its own grid)"


def add_grid_arguments(p) -> None:
    """``--resolution`` and ``--mask``: the grid of a store to build or render."""
    p.add_argument("--resolution", type=positive_int, help=RESOLUTION_HELP)
    p.add_argument(
        "--mask",
        help="a mask NIfTI in MNI space: its non-zero voxels, on its own grid, instead of the MNI152 brain mask",
    )


def grid_resolution(args) -> int:
    """``--resolution`` (8 unless given); refused beside a ``--mask`` of another voxel size, which
    it would not change: a mask's own voxels are the grid."""
    if args.mask is None or args.resolution is None:
        return 8 if args.resolution is None else args.resolution
    import numpy as np

    from .._volumes import load_volume

    try:
        zooms = load_volume(args.mask).header.get_zooms()[:3]
    except (OSError, ValueError):
        return args.resolution  # the build names what is wrong with the mask
    if not np.allclose(zooms, args.resolution, atol=1e-3):
        size = " x ".join(f"{z:g}" for z in zooms)
        raise InputError(
            f"--mask {args.mask} has its own grid ({size} mm voxels), which --resolution {args.resolution} does "
            f"not change: resample the mask to {args.resolution} mm first, or leave --resolution out"
        )
    return args.resolution


def int_list(text: str) -> list[int]:
    """'2,4,8' -> [2, 4, 8] (positive, comma-separated)."""
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected comma-separated positive integers, got nothing")
    return [positive_int(t) for t in items]


def name_list(text: str) -> list[str]:
    """'pca,nmf' -> ['pca', 'nmf']."""
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected comma-separated names, got nothing")
    return items


def chunk_shape(text: str) -> tuple[int, int]:
    """'4096,128' -> (4096, 128): voxels, genes."""
    parts = [t.strip() for t in str(text).split(",")]
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected two positive integers voxels,genes, got {text!r}")
    try:
        return positive_int(parts[0]), positive_int(parts[1])
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected two positive integers voxels,genes, got {text!r}") from None


def device_name(text: str) -> str:
    """A torch device as ``--device`` takes it: auto (CUDA when available), cpu, cuda or cuda:N
    (a GPU of several)."""
    from .._torch import DEVICE_SYNONYMS, DEVICES  # torch itself is not imported

    if text in DEVICES or re.fullmatch(r"cuda:\d+", text):
        return text
    hint = did_you_mean(text, DEVICES, DEVICE_SYNONYMS)
    raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {text!r}{hint}")


def storage_option(text: str) -> tuple[str, object]:
    """'endpoint_url=http://...' -> ('endpoint_url', 'http://...'); values read as JSON when they parse."""
    import json

    key, sep, value = str(text).partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return key.strip(), parsed


def add_storage_arguments(p) -> None:
    """``--storage-option KEY=VALUE`` for stores at URLs (s3://, gs://, az://, memory://)."""
    p.add_argument(
        "--storage-option",
        type=storage_option,
        action="append",
        metavar="KEY=VALUE",
        help="an fsspec option of a store at a URL, e.g. endpoint_url=http://127.0.0.1:9000 (repeatable); "
        "credentials otherwise come from the environment (AWS_ACCESS_KEY_ID, ...)",
    )


def add_store_argument(p, what: str = "a brainzarr store") -> None:
    """The positional ``store``: a folder or a URL."""
    p.add_argument("store", help=f"{what}: a folder, or a URL such as s3://bucket/brain.zarr")


def store_path(args, attr: str = "store"):
    """The store argument as a location carrying the --storage-option values."""
    from .._location import location

    return location(getattr(args, attr), dict(getattr(args, "storage_option", None) or []))


def add_cluster_arguments(p) -> None:
    """``--workers N`` (a local dask.distributed cluster) or ``--scheduler ADDRESS``."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--workers", type=positive_int, help="run on a local dask.distributed cluster of N process workers")
    g.add_argument("--scheduler", metavar="ADDRESS", help="address of a running dask.distributed scheduler")


@contextlib.contextmanager
def dask_client(args):
    """The client asked for (``--workers``/``--scheduler``), set as brainzarr's for the block; else None."""
    from ..options import set_options

    workers, address = getattr(args, "workers", None), getattr(args, "scheduler", None)
    if not workers and not address:
        yield None
        return
    import dask
    from distributed import Client, LocalCluster

    # set_as_default=False: a Client that fails to connect stays dask's default client and
    # scheduler for the rest of the process; this one is made the default for the block only
    if address:
        try:
            client = Client(address, timeout="10s", set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ClusterError(f"cannot reach the dask scheduler at {address} ({exc})") from None
        except ValueError as exc:  # not an address: 'localhost' without its port
            raise ClusterError(
                f"--scheduler {address}: {exc}; give the address the scheduler prints, e.g. tcp://127.0.0.1:8786"
            ) from None
    else:
        client = Client(
            LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None),
            set_as_default=False,
        )
    try:
        with set_options(client=client), client.as_current(), dask.config.set(scheduler=client):
            yield client
    finally:
        cluster = client.cluster if not address else None
        client.close()
        if cluster is not None:
            cluster.close()
