"""Store layouts side by side: bytes and files on disk, write rate, full-pass read rate (warm and
cold page cache) against the codec's own decode rate, one gene's whole-brain map.

    python scripts/bench_store.py                       # 4 mm, all genes, nearest and idw
    python scripts/bench_store.py --resolution 8 --genes 2000 --layouts today,uint16-zstd-shards

Each assignment's store is built once in today's layout (float32, zstd, one file per chunk, no
checksum); its values are then written in every other layout from memory (the write rate is
that of packing, compressing and writing, not of the build's computation). A *pass* reads
every row block x all genes through brainzarr's reader (float32 out), as every fit does. The
same chunk bytes, already in memory, are then decoded in a 2-thread pool into reused chunk-sized
buffers, with no file reads and no block to fill, three ways:

* *zstd alone*: the decompressor only (checksums stripped, not checked);
* *codec chain*: the layout's codecs, each at its fastest: the crc32c checked, then zstd/blosc;
* *decode alone*: the chunk bytes to the values the array holds: the codec chain, then for a
  packed array the CF ``scale_factor``/``add_offset`` to float32 (what xarray's decoding and
  brainzarr's reader return); the same as the codec chain for a float32 array.

The pass's ratio to *decode alone* is what the pass adds to the decoding it cannot avoid (file
reads, scheduling, placing rows in the block); its ratios to the faster two show what the
checksum and the float32 output cost. *Cold* passes first drop the store's pages from the page
cache (posix_fadvise DONTNEED), so they read the disk; the disk's own sequential rate is
measured beside them on the same files.

Prints a Markdown table and writes JSON next to it (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

LAYOUTS = {
    # name: (Layout fields); "today" is the layout of stores built before this release
    "today": dict(dtype="float32", compressor="zstd", shard_genes=None, checksum=False),
    "float32-zstd-crc": dict(dtype="float32", compressor="zstd", shard_genes=None, checksum=True),
    "float32-zstd-shards": dict(dtype="float32", compressor="zstd", shard_genes=2048, checksum=True),
    "uint16-zstd": dict(dtype="uint16", compressor="zstd", shard_genes=None, checksum=True),
    "uint16-zstd-shards": dict(dtype="uint16", compressor="zstd", shard_genes=2048, checksum=True),
    "uint16-zstd1-shards": dict(dtype="uint16", compressor="zstd-1", shard_genes=2048, checksum=True),
    "uint16-zstd9-shards": dict(dtype="uint16", compressor="zstd-9", shard_genes=2048, checksum=True),
    "uint16-blosczstd-shuffle-shards": dict(
        dtype="uint16", compressor="blosc-zstd-shuffle", shard_genes=2048, checksum=True
    ),
    "uint16-lz4-shards": dict(dtype="uint16", compressor="blosc-lz4", shard_genes=2048, checksum=True),
    "uint16-lz4-shuffle-shards": dict(dtype="uint16", compressor="blosc-lz4-shuffle", shard_genes=2048, checksum=True),
    "uint16-raw-shards": dict(dtype="uint16", compressor="none", shard_genes=2048, checksum=True),
}


def _files(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()]


def _drop_cache(path: Path) -> None:
    """Evict a folder's files from the page cache (no root needed for clean pages)."""
    for f in _files(path):
        fd = os.open(f, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _disk_rate(path: Path) -> float:
    """GB/s of reading the folder's files sequentially, cold."""
    _drop_cache(path)
    total, t0 = 0, time.perf_counter()
    buf = bytearray(16 << 20)
    for f in sorted(_files(path / "expression")):
        with open(f, "rb", buffering=0) as fh:
            while n := fh.readinto(buf):
                total += n
    return total / (time.perf_counter() - t0) / 1e9


def _write(values: np.ndarray, path: Path, spec: dict, chunks) -> float:
    """Write ``values`` as a brainzarr expression array in ``spec``'s layout; seconds."""
    import zarr

    from brainzarr._zarr import every_chunk
    from brainzarr.layout import Layout

    layout = Layout(**spec)
    n, g = values.shape
    shards = layout.shards(chunks, g)
    attrs = {"scale_factor": layout.scale_factor, "add_offset": layout.add_offset} if layout.packed else {}
    if path.exists():
        shutil.rmtree(path)
    t0 = time.perf_counter()
    z = zarr.create_array(
        str(path / "expression"),
        shape=(n, g),
        chunks=chunks,
        shards=shards,
        dtype=layout.dtype,
        fill_value=0 if layout.packed else np.nan,
        compressors=layout.compressors(),
        attributes=attrs,
        dimension_names=("voxel", "gene"),
        zarr_format=3,
    )
    z = every_chunk(z)  # as brainzarr's build writes: a packed array's missing chunk reads as damage
    step = layout.write_step(chunks, g)

    def block(a):
        b = min(a + chunks[0], n)
        for g0 in range(0, g, step):
            z[a:b, g0 : g0 + step] = layout.pack(values[a:b, g0 : g0 + step])

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(block, range(0, n, chunks[0])))
    return time.perf_counter() - t0


def _pass(array_dir: Path, n: int, rows: int, cold: bool) -> float:
    """Seconds of one full pass (every row block x all genes, float32 out) through brainzarr's reader."""
    from brainzarr.streaming import RowBlockReader

    if cold:
        _drop_cache(array_dir)
    reader = RowBlockReader(array_dir)
    t0 = time.perf_counter()
    for a in range(0, n, rows):
        reader(a, min(a + rows, n))
    return time.perf_counter() - t0


def _project_pass(store: Path) -> float:
    """Seconds of a pass the way fits stream: expression_rows + the prefetching block stream."""
    from brainzarr.streaming import expression_rows, stream_blocks

    X = expression_rows(store)
    t0 = time.perf_counter()
    for _ in stream_blocks(X):
        pass
    return time.perf_counter() - t0


def _encoded_chunks(array_dir: Path):
    """The encoded inner chunks (bytes, with their checksum where the layout has one) and the
    direct reader's description of the layout (codec, crc, packing, chunk shape)."""
    import zarr

    from brainzarr.streaming.reader import _direct_layout

    z = zarr.open_array(str(array_dir), mode="r")
    layout = _direct_layout(z)
    out = []
    for i in range(-(-z.shape[0] // layout.shard_rows)):
        for s in range(-(-z.shape[1] // layout.shard_cols)):
            for _, raw in layout._inner_chunks(i, s):
                out.append(np.frombuffer(bytes(raw), dtype=np.uint8))
    return out, layout


def _decode_alone(array_dir: Path, stage: str) -> float:
    """Seconds to decode every chunk's bytes (in memory) in a 2-thread pool into reused chunk
    buffers: ``stage`` "zstd" (decompression only), "codec" (the crc32c checked, then
    decompression) or "values" (the codec chain, then the CF unpacking to float32)."""
    import threading

    from brainzarr._zarr import verify_crc32c
    from brainzarr.streaming.unpack import unpack_chunks

    chunks, layout = _encoded_chunks(array_dir)
    shape = (layout.rows, layout.cols)
    rows = np.arange(layout.rows, dtype=np.int64)
    c0s = np.zeros(1, dtype=np.int64)
    local = threading.local()

    def decode(raw):
        buf = getattr(local, "buf", None)
        if buf is None:
            buf = local.buf = np.empty(shape, dtype=layout.dtype)
            local.values = np.empty(shape, dtype=np.float32)
        if layout.crc:
            raw = verify_crc32c(raw, "bench", 0) if stage != "zstd" else raw[:-4]
        if layout.codec is not None:
            layout.codec.decode(raw, out=buf.reshape(-1))
        else:
            buf.reshape(-1).view(np.uint8)[: len(raw)] = raw
        if stage == "values" and layout.packing is not None:
            unpack_chunks(buf[None], local.values, c0s, *layout.packing, 0, layout.rows, rows)

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(decode, chunks[:8]))  # warm up (and compile the unpacking)
        t0 = time.perf_counter()
        list(pool.map(decode, chunks))
        return time.perf_counter() - t0


def _memcpy(n: int, g: int, rows: int) -> float:
    """Seconds to write a pass's float32 output (every row block copied into a reused block) in
    2 threads: the machine's own bound for any pass that delivers float32."""
    src = np.random.default_rng(0).random((rows, g), dtype=np.float32)
    dst = np.empty_like(src)
    half = rows // 2

    def copy(part):
        dst[part] = src[part]

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(copy, [slice(0, half), slice(half, rows)]))
        t0 = time.perf_counter()
        for _ in range(-(-n // rows)):
            list(pool.map(copy, [slice(0, half), slice(half, rows)]))
        return time.perf_counter() - t0


def _gene_map(store: Path, genes: list[int]) -> float:
    """Median seconds to read one gene's whole-brain map through open_store (xarray/dask)."""
    import brainzarr

    ds = brainzarr.open_store(store)
    times = []
    for g in genes:
        t0 = time.perf_counter()
        _ = ds["expression"].isel(gene=g).values
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _as_store(store: Path, layout_dir: Path, spec: dict) -> Path:
    """A full store for the gene-map read: the built store's metadata with this layout's array."""
    import zarr

    target = layout_dir.parent / (layout_dir.name + ".zarr")
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(store, target, ignore=shutil.ignore_patterns("expression"))
    shutil.copytree(layout_dir / "expression", target / "expression")
    root = zarr.open_group(str(target), mode="r+")
    prov = dict(root.attrs["provenance"])
    prov["layout"] = spec
    root.attrs["provenance"] = prov
    return target


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolution", type=int, default=4)
    p.add_argument("--genes", default="all", help="'all' or a number")
    p.add_argument("--assignments", default="nearest,idw")
    p.add_argument("--layouts", default=",".join(LAYOUTS))
    p.add_argument("--chunks", default="4096,128")
    p.add_argument("--repeats", type=int, default=2, help="warm passes per layout (the fastest is kept)")
    p.add_argument("--no-cold", action="store_true", help="skip the cold-cache passes")
    p.add_argument("--work", default="store/bench-store", help="where the stores go (removed after)")
    p.add_argument("--out", default="bench-out/bench_store.json")
    args = p.parse_args(argv)

    import brainzarr
    from brainzarr.layout import Layout
    from brainzarr.streaming import reusing_buffers

    genes = None if args.genes == "all" else int(args.genes)
    chunks = tuple(int(c) for c in args.chunks.split(","))
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows_out = []
    for assignment in args.assignments.split(","):
        base = work / f"r{args.resolution}-{assignment}.zarr"
        t0 = time.perf_counter()
        if not base.exists():
            brainzarr.build_store(
                base,
                resolution=args.resolution,
                genes=genes,
                assignment=assignment,
                random_state=0,
                chunks=chunks,
                layout=Layout(**LAYOUTS["today"]),
                progress=False,
            )
        build_s = time.perf_counter() - t0
        values = brainzarr.open_store(base)["expression"].values
        n, g = values.shape
        gene_sample = list(np.linspace(0, g - 1, 7).astype(int))
        memcpy_gbps = values.nbytes / 1e9 / min(_memcpy(n, g, chunks[0]) for _ in range(3))
        print(f"# memcpy of a pass's float32 output, 2 threads: {memcpy_gbps:.2f} GB/s")
        size = values.nbytes / 1e9
        print(f"# {assignment}: {n:,} voxels x {g:,} genes ({size:.2f} GB float32), build {build_s:.0f} s")
        for name in args.layouts.split(","):
            spec = LAYOUTS[name]
            layout_dir = work / f"{base.stem}-{name}"
            write_s = _write(values, layout_dir, spec, chunks)
            array_dir = layout_dir / "expression"
            files = _files(array_dir)
            nbytes = sum(f.stat().st_size for f in files)
            full = _as_store(base, layout_dir, Layout(**spec).to_attrs())
            with reusing_buffers():  # as inside a fit: passes after the first reuse the output blocks
                warm = min(_pass(array_dir, n, chunks[0], cold=False) for _ in range(args.repeats))
                # the fastest of the repeats, as the warm pass: the first stream over a store pays
                # one-off costs (measured: 2.4 GB/s once, then 8.2, on a 4 mm packed store)
                project = min(_project_pass(full) for _ in range(args.repeats))
                cold = None if args.no_cold else _pass(array_dir, n, chunks[0], cold=True)
            disk = None if args.no_cold else _disk_rate(layout_dir)
            alone = {
                stage: min(_decode_alone(array_dir, stage) for _ in range(args.repeats))
                for stage in ("zstd", "codec", "values")
            }
            gene_s = _gene_map(full, gene_sample)
            gb = values.nbytes / 1e9  # float32-equivalent GB per pass
            row = {
                "assignment": assignment,
                "layout": name,
                "disk_mb": nbytes / 1e6,
                "ratio": values.nbytes / nbytes,
                "files": len(files),
                "write_gbps": gb / write_s,
                "pass_gbps": gb / warm,
                "project_pass_gbps": gb / project,
                "zstd_gbps": gb / alone["zstd"],
                "codec_gbps": gb / alone["codec"],
                "decode_gbps": gb / alone["values"],
                "pass_vs_decode": alone["values"] / warm,
                "pass_vs_codec": alone["codec"] / warm,
                "pass_vs_zstd": alone["zstd"] / warm,
                "cold_pass_gbps": None if cold is None else gb / cold,
                "disk_gbps": disk,
                "gene_map_s": gene_s,
                "memcpy_gbps": memcpy_gbps,
                "pass_vs_memcpy": (gb / warm) / memcpy_gbps,
            }
            rows_out.append(row)
            cold_txt = "-" if cold is None else f"{row['cold_pass_gbps']:.2f} (disk {disk:.2f})"
            print(
                f"{assignment:8s} {name:32s} {row['disk_mb']:9.0f} MB {row['ratio']:5.2f}x {len(files):6d} files  "
                f"write {row['write_gbps']:.2f}  pass {row['pass_gbps']:.2f} "
                f"(fit path {row['project_pass_gbps']:.2f})  "
                f"zstd {row['zstd_gbps']:.2f}  codec {row['codec_gbps']:.2f}  decode {row['decode_gbps']:.2f}  "
                f"pass/decode {row['pass_vs_decode']:.2f}  cold {cold_txt}  "
                f"gene map {gene_s * 1e3:.0f} ms",
                flush=True,
            )
            shutil.rmtree(layout_dir)
            shutil.rmtree(full)
    table = [
        f"*{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores ({platform.machine()}), "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM; rates in GB/s of float32 "
        "values delivered (a pass = every row block x all genes)*",
        "",
        "| assignment | layout | disk MB | ratio | files | write GB/s | pass GB/s (warm) | fit-path pass | "
        "zstd alone | codec chain | decode alone | pass / decode | pass / codec | pass / zstd | pass / memcpy | "
        "cold pass (disk) | one gene map ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows_out:
        cold = "-" if r["cold_pass_gbps"] is None else f"{r['cold_pass_gbps']:.2f} ({r['disk_gbps']:.2f})"
        table.append(
            f"| {r['assignment']} | {r['layout']} | {r['disk_mb']:,.0f} | {r['ratio']:.2f}x | {r['files']:,} | "
            f"{r['write_gbps']:.2f} | {r['pass_gbps']:.2f} | {r['project_pass_gbps']:.2f} | {r['zstd_gbps']:.2f} | "
            f"{r['codec_gbps']:.2f} | {r['decode_gbps']:.2f} | {r['pass_vs_decode']:.2f} | {r['pass_vs_codec']:.2f} | "
            f"{r['pass_vs_zstd']:.2f} | {r['pass_vs_memcpy']:.2f} | {cold} | {r['gene_map_s'] * 1e3:.0f} |"
        )
    print("\n".join(table))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows_out, "table": table}, indent=1))


if __name__ == "__main__":
    main()
