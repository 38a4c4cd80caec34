"""Score stage throughput: the tensor path against the PIL + DataLoader path, on the same shards, in the same run.

    python benchmarks/bench_score.py --device cpu --model tiny-test --rows 2000
    python benchmarks/bench_score.py --device cpu --model ViT-B-32 --random-weights --rows 256 --batch-size 64
    python benchmarks/bench_score.py --device cuda --model ViT-B-32 --checkpoint open_clip_model.safetensors \
        --rows 100000 --batch-size 512 --workers 12 --pil-workers 16

Both sides run the score stage's own per-part function (`curate.score.part.score_part`) over every part of a run's
Parquet shards (256-px JPEGs: the bundled sample photos re-encoded at 256 x 256, each made unique, or `--run RUN`
for a real run), after the model is loaded once as an engine worker would (load time printed apart): read Parquet,
decode, preprocess, tokenize, encode, write signals/clip and signals/embeddings. The baseline is `decode: pil`:
PIL decode + open_clip's transform + tokenization in `--pil-workers` DataLoader processes. Also printed: the model
alone on ready tensors (the ceiling), the tensor path's decode + preprocess alone, the tokenizer alone, and the
largest score difference between the two paths.

`--random-weights` (benchmarks and tests only) scores with a seeded random-init copy of the architecture, written
to a temporary checkpoint: the speed is the architecture's, the scores mean nothing. No weights are downloaded.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from curate import tables  # noqa: E402
from curate.layout import TABLE_PATHS  # noqa: E402
from curate.parts import plan_tasks  # noqa: E402
from curate.schemas import SHARDS  # noqa: E402
from curate.score.clip_model import model_identity  # noqa: E402
from curate.score.encode import encode_pairs  # noqa: E402
from curate.score.part import ScorerSpec, load_scorer, score_part  # noqa: E402
from curate.score.pil_path import cpu_threads_beside_workers  # noqa: E402
from curate.score.stage import default_pretrained  # noqa: E402
from tests.tiny_clip import sample_pairs, shards_table  # noqa: E402


def _jpeg_256(data: bytes) -> bytes:
    """The photo resized and centre-cropped to 256 x 256 (what `download --image-size 256` leaves), quality 95."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    scale = 256 / min(image.size)
    image = image.resize((max(256, round(image.width * scale)), max(256, round(image.height * scale))), Image.BICUBIC)
    left, top = (image.width - 256) // 2, (image.height - 256) // 2
    buf = io.BytesIO()
    image.crop((left, top, left + 256, top + 256)).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def _with_comment(jpeg: bytes, index: int) -> bytes:
    """A JPEG comment segment with the row number, so that no two rows share bytes (as in a real crawl; Parquet
    would otherwise dictionary-encode the repeats)."""
    comment = f"row {index}".encode()
    return jpeg[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + jpeg[2:]


def synthetic_run(run: Path, rows: int, rows_per_part: int) -> None:
    photos = [(_jpeg_256(data), caption) for data, caption in sample_pairs()]
    template = shards_table(photos[:1]).to_pylist()[0]
    for k, start in enumerate(range(0, rows, rows_per_part)):  # part by part: 10^5 rows need not fit in memory
        out = []
        for i in range(start, min(start + rows_per_part, rows)):
            data, caption = photos[i % len(photos)]
            out.append({**template, "uid": f"{i:032x}", "url": f"http://bench.test/{i}.jpg", "caption": caption,
                        "image": _with_comment(data, i)})
        tables.write_part(run, "shards", k, pa.Table.from_pylist(out, schema=SHARDS))


def random_weights_checkpoint(model: str, folder: Path) -> Path:
    import open_clip
    from safetensors.torch import save_file

    import curate.score.clip_model  # noqa: F401  (registers tiny-test)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = open_clip.create_model(model, pretrained=None)
    path = folder / f"{model}-random-init.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children (DataLoader workers are reaped at the end of each part)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_path(run: Path, spec: ScorerSpec, repeat: int) -> tuple[list[tuple[float, float]], float, np.ndarray, object]:
    """((wall, CPU) seconds of each round, model load seconds, scores, scorer) for one decode path."""
    load_s, scorer = timed(load_scorer, spec)
    shards = tables.list_parts(run, "shards")
    items = [(p.name, [f"{TABLE_PATHS['shards']}/{p.name}"],
              [f"{TABLE_PATHS['clip']}/{p.name}", f"{TABLE_PATHS['embeddings']}/{p.name}"]) for p in shards]
    todo, _ = plan_tasks("score", run, items, {"bench": spec.decode})
    score_part(todo[0], scorer)  # warm-up: kernels, allocator, tokenizer processes
    rounds = []
    for _ in range(repeat):
        shutil.rmtree(run / "signals", ignore_errors=True)
        sync(scorer.loaded.device)
        start, cpu = time.perf_counter(), cpu_seconds()
        for task in todo:
            score_part(task, scorer)
        sync(scorer.loaded.device)
        rounds.append((time.perf_counter() - start, cpu_seconds() - cpu))
    scores = tables.read_table(run, "clip", ["clip_score"]).column("clip_score").to_numpy(zero_copy_only=False)
    return rounds, load_s, scores, scorer


def model_alone(scorer, batch_size: int, min_seconds: float = 3.0) -> float:
    """pairs/s of encode_pairs on tensors already on the device (the ceiling of any input pipeline), over at least
    3 batches and `min_seconds`."""
    loaded = scorer.loaded
    height, width = scorer.tensor_path.preprocess.size
    pixels = torch.randn(batch_size, 3, height, width, device=loaded.device)
    tokens = loaded.tokenizer(["a photo of a cat on a sofa next to a window"] * batch_size)
    with cpu_threads_beside_workers(loaded, scorer.spec.workers):  # the model's threads while scoring
        encode_pairs(loaded, pixels, tokens).wait()
        sync(loaded.device)
        start, batches, pending = time.perf_counter(), 0, []
        while batches < 3 or time.perf_counter() - start < min_seconds:
            pending.append(encode_pairs(loaded, pixels, tokens))
            batches += 1
            if len(pending) > 2:
                pending.pop(0).wait()
        for p in pending:
            p.wait()
        sync(loaded.device)
    return batches * batch_size / (time.perf_counter() - start)


def decode_alone(run: Path, scorer) -> float:
    """pairs/s of a path's read + decode + preprocess + tokenization, without the model."""
    n, start = 0, time.perf_counter()
    for path in tables.list_parts(run, "shards"):
        for prepared in scorer.batches(path):
            scorer.tokenizer.result(prepared.tokens, prepared.raw.captions)
            if prepared.ready is not None:
                prepared.ready.synchronize()
            n += len(prepared.raw)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--device", default="auto", help="cpu | cuda | auto")
    parser.add_argument("--model", default="tiny-test", help="open_clip architecture, hf-hub:..., or tiny-test")
    parser.add_argument("--pretrained", default=None, help="open_clip pretrained tag (weights must be cached)")
    parser.add_argument("--checkpoint", default=None, help="local checkpoint file")
    parser.add_argument("--random-weights", action="store_true",
                        help="benchmarks only: a seeded random-init copy of --model (no weights needed)")
    parser.add_argument("--precision", default="auto", help="auto | fp32 | fp16 | bf16")
    parser.add_argument("--rows", type=int, default=2000, help="pairs in the synthetic run (sample photos repeated)")
    parser.add_argument("--rows-per-part", type=int, default=10_000)
    parser.add_argument("--run", type=Path, default=None, help="score this run's shards instead (copied first)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2, help="tensor path: CPU JPEG decode threads")
    parser.add_argument("--pil-workers", type=int, default=None, help="PIL path: DataLoader processes (default --workers)")
    parser.add_argument("--tokenize-workers", type=int, default=None, help="tensor path: tokenizer processes")
    parser.add_argument("--nvjpeg-share", type=float, default=0.3, help="CUDA: share of each batch decoded by nvJPEG")
    parser.add_argument("--repeat", type=int, default=2, help="timed rounds per path; the best is reported")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="bench-score-") as tmp:
        tmp = Path(tmp)
        checkpoint = args.checkpoint
        if args.random_weights:
            checkpoint = str(random_weights_checkpoint(args.model, tmp))
        pretrained = args.pretrained if args.pretrained is not None else default_pretrained(args.model, checkpoint)
        identity = model_identity(args.model, pretrained, checkpoint)
        run = tmp / "run"
        if args.run:
            shutil.copytree(args.run / "shards", run / "shards")
        else:
            synthetic_run(run, args.rows, args.rows_per_part)
        rows = sum(pq.read_metadata(p).num_rows for p in tables.list_parts(run, "shards"))

        common = dict(model=args.model, pretrained=identity.pretrained, checkpoint=identity.checkpoint,
                      model_id=identity.model_id, weights_sha256=identity.weights_sha256, device=args.device,
                      precision=args.precision, batch_size=args.batch_size)
        tensor_spec = ScorerSpec(**common, decode="tensor", workers=args.workers,
                                 tokenize_workers=args.tokenize_workers, nvjpeg_share=args.nvjpeg_share)
        pil_spec = ScorerSpec(**common, decode="pil", workers=args.pil_workers if args.pil_workers is not None
                              else args.workers)

        pil_rounds, pil_load, pil_scores, pil_scorer = run_path(run, pil_spec, args.repeat)
        pil_decode_rate = decode_alone(run, pil_scorer)
        pil_scorer.close()
        del pil_scorer
        ours_rounds, ours_load, ours_scores, scorer = run_path(run, tensor_spec, args.repeat)
        loaded = scorer.loaded
        ceiling = model_alone(scorer, args.batch_size)
        decode_rate = decode_alone(run, scorer)
        captions = tables.read_table(run, "shards", ["caption"]).column("caption").to_pylist()[:5000]
        tok_s, _ = timed(loaded.tokenizer, captions)
        gpu = torch.cuda.get_device_name(loaded.device) if loaded.device.type == "cuda" else "none"
        print(f"model {loaded.model_id} on {loaded.device} ({loaded.precision}; GPU: {gpu}); "
              f"torch threads {torch.get_num_threads()}; CPU cores {os.cpu_count()}")
        print(f"{rows:,} pairs of 256-px JPEGs in {len(tables.list_parts(run, 'shards'))} parts; batch {args.batch_size}; "
              f"tensor path: {args.workers} decode threads, {scorer.tokenizer.processes} tokenizer processes, "
              f"nvjpeg share {tensor_spec.nvjpeg_share if loaded.device.type == 'cuda' else 0}; "
              f"PIL path: {pil_spec.workers} DataLoader workers")
        print(f"model load (once per worker, not in the rates): tensor {ours_load:.1f}s, pil {pil_load:.1f}s")
        print(f"model alone, tensors on the device:  {ceiling:10,.0f} pairs/s")
        print(f"input pipeline alone (read, decode, preprocess, tokenize; no model): tensor path {decode_rate:,.0f} "
              f"pairs/s, PIL path {pil_decode_rate:,.0f} pairs/s, ratio {decode_rate / pil_decode_rate:.2f}")
        print(f"tokenizer alone, one process:        {len(captions) / tok_s:10,.0f} captions/s")
        pil_rate, ours_rate = rows / min(w for w, _ in pil_rounds), rows / min(w for w, _ in ours_rounds)
        pil_cpu, ours_cpu = (1000 * min(c for _, c in r) / rows for r in (pil_rounds, ours_rounds))
        for label, rate, cpu, rounds_ in (("PIL + DataLoader path (baseline):", pil_rate, pil_cpu, pil_rounds),
                                          ("tensor path (fairsift default):  ", ours_rate, ours_cpu, ours_rounds)):
            print(f"{label}    {rate:10,.1f} pairs/s, {cpu:6.2f} CPU s per 1000 pairs  "
                  f"(rounds: {', '.join(f'{w:.2f}s wall / {c:.2f}s CPU' for w, c in rounds_)})")
        print(f"ratio tensor / PIL: {ours_rate / pil_rate:.2f} in pairs/s, {pil_cpu / ours_cpu:.2f} in pairs per CPU "
              f"second;   tensor path / model alone: {ours_rate / ceiling:.2f}")
        diff = np.nanmax(np.abs(ours_scores - pil_scores))
        print(f"max |score difference| tensor vs PIL path: {diff:.2e} (test tolerance 1e-3)")
        scorer.close()


if __name__ == "__main__":
    main()
