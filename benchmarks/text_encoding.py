"""Text encoding of a 2,000-pair vocabulary: truncated vs full (77-token) context, cache hit vs miss.

    python benchmarks/text_encoding.py                 # ViT-L-14 text tower, random weights, CPU
    python benchmarks/text_encoding.py --quick         # tiny backbone, seconds

Prints ratios measured in one run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from _common import median_time, synthetic_vocabulary_text  # noqa: E402
from czsl_models.backbones import load_backbone_uncached  # noqa: E402
from czsl_models.models.prompts import PromptEncoder  # noqa: E402
from czsl_models.inputs.vocab import Vocabulary  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="random:ViT-L-14-quickgelu")
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny backbone (seconds)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    backbone = load_backbone_uncached("tiny" if args.quick else args.backbone, "cpu")
    vocab = Vocabulary.build(*synthetic_vocabulary_text(args.pairs), max_pairs=10 * args.pairs)
    prompts = [f"a photo of {s} {o}" for s, o in vocab.pair_names()]
    encoder = PromptEncoder(backbone, learnable=False)
    token_ids = backbone.tokenizer(prompts)

    @torch.no_grad()
    def full_context():
        for start in range(0, len(token_ids), 500):
            backbone.model.encode_text(token_ids[start:start + 500])

    @torch.no_grad()
    def truncated_miss():
        backbone.text_cache.clear()
        encoder.encode(vocab, "pair")

    @torch.no_grad()
    def cached_hit():
        encoder.encode(vocab, "pair")

    full = median_time(full_context, repeats=args.repeats, warmup=0)
    truncated = median_time(truncated_miss, repeats=args.repeats, warmup=1)
    encoder.encode(vocab, "pair")
    hit = median_time(cached_hit, repeats=20, warmup=1)
    longest = int(token_ids.argmax(-1).max()) + 1
    print(f"backbone {backbone.name}, {vocab.num_pairs} pairs, longest prompt {longest} tokens of {backbone.context_length}, "
          f"{torch.get_num_threads()} CPU threads")
    print(f"{'full context (77 tokens)':<30} {full:9.3f} s")
    print(f"{'truncated context, cache miss':<30} {truncated:9.3f} s   full/truncated = {full / truncated:6.1f}x")
    print(f"{'cache hit':<30} {hit * 1e3:9.3f} ms  miss/hit       = {truncated / hit:8.0f}x")


if __name__ == "__main__":
    main()
