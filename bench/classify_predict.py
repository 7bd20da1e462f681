"""charlm classify predict throughput: 10,000 texts batched (sorted by length, 256 at a time) against one
call per text, through the Python API, same model, same process. Usage:
    python bench/classify_predict.py MODEL TEXTS.tsv [--n 10000] [--threads 2]
"""
import argparse
import time

import charlm
from charlm import labeled

p = argparse.ArgumentParser()
p.add_argument("model")
p.add_argument("data")
p.add_argument("--n", type=int, default=10000)
p.add_argument("--threads", type=int, default=None)
a = p.parse_args()
clf = charlm.load(a.model)
texts = (labeled.read(a.data).texts * (a.n // 1000 + 1))[: a.n]
clf.predict(texts[:300], threads=a.threads)                              # compile
t = time.perf_counter()
batched = clf.predict(texts, threads=a.threads)
tb = time.perf_counter() - t
t = time.perf_counter()
single = [clf.predict([x], threads=a.threads)[0] for x in texts]
ts = time.perf_counter() - t
assert [b.label for b in batched] == [s.label for s in single]
print(f"{len(texts):,} texts: batched {tb:.2f} s ({len(texts) / tb:,.0f} texts/s), one call per text "
      f"{ts:.2f} s ({len(texts) / ts:,.0f} texts/s): {ts / tb:.1f}x")
