"""Score stage throughput against a bare open_clip loop on the same pairs.

    python benchmarks/bench_score.py --model tiny-test --device cpu --n 2000 --batch-size 256 --workers 2
    python benchmarks/bench_score.py --model ViT-B-32 --checkpoint open_clip_model.safetensors --device cuda

Both sides start from the same run folder (N pairs of sample JPEGs in RUN/shards/) and include model loading:
the bare loop reads the images, decodes them with PIL, preprocesses, tokenizes and encodes in the main process, one
batch after another; fairsift's score stage does the same work with decoding in DataLoader workers and writes its
two tables. Prints pairs/s of each and the ratio (goal: fairsift >= 0.90 x bare).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from curate import tables  # noqa: E402
from curate.score.clip_model import encode_images, encode_tokens, load_clip  # noqa: E402
from curate.options import ScoreOptions  # noqa: E402
from curate.score.stage import default_pretrained, score  # noqa: E402
from tests.tiny_clip import sample_pairs, write_sample_shards  # noqa: E402


def bare_open_clip(run: Path, args) -> np.ndarray:
    """The baseline: everything in the main process, batch by batch, no output written."""
    loaded = load_clip(args.model, pretrained=args.pretrained, checkpoint=args.checkpoint, device=args.device)
    shards = tables.read_table(run, "shards", ["image", "caption"])
    images, captions = shards.column("image").to_pylist(), shards.column("caption").to_pylist()
    scores = []
    for start in range(0, len(images), args.batch_size):
        pixels = torch.stack([loaded.preprocess(Image.open(io.BytesIO(b))) for b in images[start:start + args.batch_size]])
        tokens = loaded.tokenizer(captions[start:start + args.batch_size])
        scores.append((encode_images(loaded, pixels) * encode_tokens(loaded, tokens)).sum(axis=1))
    return np.concatenate(scores)


def fairsift_score(run: Path, args) -> np.ndarray:
    shutil.rmtree(run / "signals", ignore_errors=True)
    opts = ScoreOptions(model=args.model, pretrained=args.pretrained, checkpoint=args.checkpoint, device=args.device,
                        batch_size=args.batch_size, workers=args.workers)
    score(run, opts)
    return tables.read_table(run, "clip", ["clip_score"]).column("clip_score").to_numpy()


def timed(fn, *a) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    out = fn(*a)
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="cpu | cuda | auto")
    parser.add_argument("--model", default="tiny-test")
    parser.add_argument("--pretrained", default=None)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--n", type=int, default=2000, help="pairs (sample images repeated)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rows-per-part", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds; the best of each side is reported")
    parser.add_argument("--threads", type=int, default=None, help="torch threads in the main process (default: torch's)")
    args = parser.parse_args()
    if args.pretrained is None:
        args.pretrained = default_pretrained(args.model, args.checkpoint)
    if args.threads:
        torch.set_num_threads(args.threads)

    sample = sample_pairs()
    pairs = [sample[i % len(sample)] for i in range(args.n)]
    with tempfile.TemporaryDirectory(prefix="bench-score-") as tmp:
        run = Path(tmp) / "run"
        write_sample_shards(run, pairs, rows_per_part=args.rows_per_part)
        loaded = load_clip(args.model, pretrained=args.pretrained, checkpoint=args.checkpoint, device=args.device)
        captions = [c for _, c in pairs]
        tok_s, _ = timed(loaded.tokenizer, captions)
        print(f"model {loaded.model_id} on {loaded.device} ({loaded.precision}); torch threads {torch.get_num_threads()}; "
              f"{args.n} pairs, batch {args.batch_size}, workers {args.workers}")
        print(f"tokenizer alone: {args.n / tok_s:,.0f} captions/s (score tokenizes inside its dataset: in the workers when --workers > 0)")

        bare_times, ours_times = [], []
        for _ in range(args.repeat):  # alternate the two so that a noisy neighbour hurts both alike
            t, bare = timed(bare_open_clip, run, args)
            bare_times.append(t)
            t, ours = timed(fairsift_score, run, args)
            ours_times.append(t)
        bare_rate, ours_rate = args.n / min(bare_times), args.n / min(ours_times)
        print(f"bare open_clip loop: {bare_rate:,.1f} pairs/s  (rounds: {', '.join(f'{t:.2f}s' for t in bare_times)})")
        print(f"fairsift score:      {ours_rate:,.1f} pairs/s  (rounds: {', '.join(f'{t:.2f}s' for t in ours_times)})")
        print(f"ratio fairsift / bare: {ours_rate / bare_rate:.2f}  (goal >= 0.90)")
        print(f"max |score difference|: {np.abs(bare - ours).max():.2e}")


if __name__ == "__main__":
    main()
