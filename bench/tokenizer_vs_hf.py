#!/usr/bin/env python3
"""peft.cpp's tokenizer vs Hugging Face `tokenizers` (PyPI, pinned in tests/requirements.txt),
single thread, on the same ~10 MB of mixed English / Chinese / code lines, in one invocation.

  python3 bench/tokenizer_vs_hf.py [--bench build/bench/bench_tokenizer] [--model DIR] [--mb 10]

Runs bench_tokenizer once to write the text (--dump) and time our encode, then times HF on the
same lines two ways: Tokenizer.encode per line, and encode_batch over all lines (with
TOKENIZERS_PARALLELISM=false and RAYON_NUM_THREADS=1, so one thread). Checks that both produce
the same ids (a checksum over all lines), and prints one JSON line with the ratios
ours / HF (> 1 means peft.cpp is faster)."""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ['TOKENIZERS_PARALLELISM'] = 'false'
os.environ['RAYON_NUM_THREADS'] = '1'
os.environ['RAYON_RS_NUM_CPUS'] = '1'

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def find_bench():
    hits = sorted(glob.glob(os.path.join(ROOT, 'build*', 'bench', 'bench_tokenizer')), key=os.path.getmtime)
    if not hits:
        sys.exit('bench_tokenizer not found: build it (ninja bench_tokenizer) or pass --bench')
    return hits[-1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--bench', default=None)
    ap.add_argument('--model', default=os.path.join(ROOT, '..', 'shared', 'assets', 'tokenizers', 'qwen2.5'))
    ap.add_argument('--mb', default='10')
    ap.add_argument('--repeat', type=int, default=3)
    args = ap.parse_args()
    try:
        import tokenizers
        from tokenizers import Tokenizer
    except ImportError:
        print('tokenizers is not installed (pip install -r tests/requirements.txt)', file=sys.stderr)
        return 77
    bench = args.bench or find_bench()
    with tempfile.TemporaryDirectory() as tmp:
        text_path = os.path.join(tmp, 'text.txt')
        ours = json.loads(subprocess.run(
            [bench, '--model', args.model, '--mb', args.mb, '--repeat', str(args.repeat), '--dump', text_path],
            check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        with open(text_path, encoding='utf-8', newline='') as f:
            lines = f.read().split('\n')[:-1]
    nbytes = sum(len(l.encode('utf-8')) for l in lines)
    assert nbytes == ours['bytes'], (nbytes, ours['bytes'])
    tok = Tokenizer.from_file(os.path.join(args.model, 'tokenizer.json'))

    def checksum(encodings):
        c, n = 0, 0
        for e in encodings:
            for i in e.ids:
                c = (c * 31 + i) & 0xFFFFFFFFFFFFFFFF
            n += len(e.ids)
        return c, n

    best_line, best_batch, encs = 1e30, 1e30, None
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        encs = [tok.encode(l, add_special_tokens=False) for l in lines]
        best_line = min(best_line, time.perf_counter() - t0)
    c_line, n_line = checksum(encs)
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        encs = tok.encode_batch(lines, add_special_tokens=False)
        best_batch = min(best_batch, time.perf_counter() - t0)
    c_batch, _ = checksum(encs)
    same = str(c_line) == ours['checksum'] and str(c_batch) == ours['checksum'] and n_line == ours['tokens']
    hf_line = nbytes / 1e6 / best_line
    hf_batch = nbytes / 1e6 / best_batch
    result = {
        'bench': 'tokenizer_vs_hf', 'model': ours['model'], 'bytes': nbytes, 'lines': len(lines),
        'tokens': ours['tokens'], 'same_ids': same,
        'peft_mb_per_s': round(ours['mb_per_s'], 3),
        'hf_encode_mb_per_s': round(hf_line, 3), 'hf_encode_batch_mb_per_s': round(hf_batch, 3),
        'ratio_vs_hf_encode': round(ours['mb_per_s'] / hf_line, 3),
        'ratio_vs_hf_encode_batch': round(ours['mb_per_s'] / hf_batch, 3),
        'ratio_vs_best_hf': round(ours['mb_per_s'] / max(hf_line, hf_batch), 3),
        'hf_tokenizers_version': tokenizers.__version__, 'threads': 1,
    }
    print(json.dumps(result))
    return 0 if same else 1


if __name__ == '__main__':
    sys.exit(main())
