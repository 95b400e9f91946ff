#!/usr/bin/env python3
"""Generates the benchmark tree: FILES files spread evenly over 1,000 folders
(10 top folders x 100 subfolders), sizes uniform in 0..16 KiB, deterministic seed.

usage: gen.py ROOT [FILES] [SEED]      (python3 stdlib only)
"""
import os
import random
import sys

TOP, SUB = 10, 100  # 1,000 leaf folders
MAX_SIZE = 16 * 1024


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    root = sys.argv[1]
    files = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 20240601
    rng = random.Random(seed)
    # One deterministic random pool; each file is a slice at a random offset,
    # so contents differ between files (no accidental rename/dedup matches).
    pool = rng.randbytes(4 * 1024 * 1024)
    folders = TOP * SUB
    per, extra = divmod(files, folders)
    total_bytes = 0
    n = 0
    for t in range(TOP):
        for s in range(SUB):
            d = os.path.join(root, f"d{t:02d}", f"s{s:02d}")
            os.makedirs(d, exist_ok=True)
            count = per + (1 if t * SUB + s < extra else 0)
            for i in range(count):
                size = rng.randint(0, MAX_SIZE)
                off = rng.randrange(0, len(pool) - MAX_SIZE)
                with open(os.path.join(d, f"f{i:04d}.bin"), "wb") as f:
                    f.write(pool[off:off + size])
                total_bytes += size
                n += 1
    print(f"generated {n} files in {folders} folders, {total_bytes / 1e6:.1f} MB, seed {seed}")


if __name__ == "__main__":
    main()
