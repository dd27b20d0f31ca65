#!/usr/bin/env bash
# One-shot GPU check for a session lent a CUDA machine (see README, "Benchmarks"): training
# throughput of the original vs our network (eager, then compiled) with peak GPU memory, and
# embedding throughput. Each benchmark prints one JSON object; copies land in $OUT if set.
# Budget: well under 10 minutes on one H100/H200.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/wxembed-gpu}"
mkdir -p "$out"
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())"
timeout 240 python bench/bench_train.py --device cuda | tee "$out/train_eager.json"
timeout 300 python bench/bench_train.py --device cuda --compile | tee "$out/train_compiled.json"
timeout 180 python bench/bench_search.py --device cuda --skip-search | tee "$out/embed_cuda.json"
