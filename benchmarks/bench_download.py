"""Download stage throughput against bare img2dataset on the same URL list with the same options.

N images (copies of the bundled sample under distinct names) are served on 127.0.0.1; bare `img2dataset.download`
fetches them, then fairsift's download stage (URL guard, img2dataset, conversion to the shards contract, atomic
Parquet write) does the same from a pairs/ table. Ratio = fairsift throughput / bare throughput (goal >= 0.95).
Both include img2dataset's process start-up, which dominates for small N.

Run: python benchmarks/bench_download.py [--n 2000] [--processes 1] [--threads 32] [--image-size 256] [--repeat 2]
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curate import tables  # noqa: E402
from curate.download.stage import download, img2dataset_arguments, output_to_log  # noqa: E402
from curate.net.loopback import LoopbackServer  # noqa: E402
from curate.options import DownloadOptions  # noqa: E402

SAMPLE_IMAGES = sorted((ROOT / "pipelines" / "sample" / "images").glob("*.jpg"))


def serve_folder(folder: Path, n: int) -> list[str]:
    """n distinct file names, hard links to the sample images where the file system allows (copies otherwise)."""
    names = []
    for i in range(n):
        source = SAMPLE_IMAGES[i % len(SAMPLE_IMAGES)]
        name = f"img_{i:06d}.jpg"
        try:
            os.link(source, folder / name)
        except OSError:
            shutil.copyfile(source, folder / name)
        names.append(name)
    return names


def bench(n: int, processes: int, threads: int, image_size: int, repeat: int = 2) -> dict:
    """Alternate bare and stage `repeat` times and keep each one's best time (the first run pays cold caches)."""
    import img2dataset

    options = DownloadOptions(image_size=image_size, processes=processes, threads=threads,
                              allow_private_network=True)
    bare_times, stage_times = [], []
    with tempfile.TemporaryDirectory(prefix="bench-download-") as tmp:
        tmp = Path(tmp)
        www = tmp / "www"
        www.mkdir()
        names = serve_folder(www, n)
        with LoopbackServer(www) as server:
            urls = [server.url(name) for name in names]
            captions = [f"sample image {i}" for i in range(n)]
            pairs = pa.table({"uid": [tables.compute_uid(u, c) for u, c in zip(urls, captions)], "url": urls,
                              "caption": captions})
            url_list = tmp / "urls.parquet"
            pq.write_table(pairs, url_list)
            bare_args = img2dataset_arguments(options, max(1, math.ceil(n / processes)))
            bare_args["save_additional_columns"] = ["uid"]

            for attempt in range(repeat):
                output = tmp / f"bare-{attempt}"
                start = time.perf_counter()
                with output_to_log(tmp / "bare.log"):
                    img2dataset.download(url_list=str(url_list), output_folder=str(output), **bare_args)
                bare_times.append(time.perf_counter() - start)
                status = pq.read_table(sorted(output.glob("*.parquet")), columns=["status"]).column("status")
                bare_ok = pc.sum(pc.equal(status, "success")).as_py()
                shutil.rmtree(output)

                run = tmp / f"run-{attempt}"
                tables.write_part(run, "pairs", 0, pairs)
                start = time.perf_counter()
                counts = download(run, options)
                stage_times.append(time.perf_counter() - start)
                stage_ok = counts["status"].get("success", 0)
                shutil.rmtree(run)
    bare_s, stage_s = min(bare_times), min(stage_times)
    return {"n": n, "processes": processes, "threads": threads, "image_size": image_size, "repeat": repeat,
            "bare_times": bare_times, "stage_times": stage_times,
            "bare_s": bare_s, "bare_success": bare_ok, "bare_img_per_s": bare_ok / bare_s,
            "stage_s": stage_s, "stage_success": stage_ok, "stage_img_per_s": stage_ok / stage_s,
            "ratio": (stage_ok / stage_s) / (bare_ok / bare_s) if bare_ok else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="images served and downloaded")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=2, help="alternating runs of each; the best time counts")
    args = parser.parse_args()
    r = bench(args.n, args.processes, args.threads, args.image_size, args.repeat)
    print(f"download of {r['n']} images ({r['processes']} process(es) x {r['threads']} threads, "
          f"{r['image_size']}px), loopback HTTP, best of {r['repeat']}")
    print("  runs (s): bare " + ", ".join(f"{t:.2f}" for t in r["bare_times"])
          + " | fairsift " + ", ".join(f"{t:.2f}" for t in r["stage_times"]))
    print(f"  bare img2dataset : {r['bare_s']:7.2f} s  {r['bare_img_per_s']:8.1f} img/s  ({r['bare_success']} ok)")
    print(f"  fairsift download: {r['stage_s']:7.2f} s  {r['stage_img_per_s']:8.1f} img/s  ({r['stage_success']} ok)")
    print(f"  ratio fairsift/bare: {r['ratio']:.3f}  (goal >= 0.95)")


if __name__ == "__main__":
    main()
