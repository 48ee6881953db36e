#!/usr/bin/env bash
# The GPU figures of benchmarks/README.md in one pass, for a lent GPU machine that
# cannot reach a package index (its image has torch, transformers and peft).
#
# Prepare here (the machine it runs on gets the working tree plus the carried paths):
#   .whl/        wheels of what the image lacks, for its Python (3.12 there), e.g.
#                pip download --no-deps --only-binary=:all: --python-version 3.12 \
#                  --implementation cp --platform manylinux_2_28_x86_64 \
#                  --platform manylinux_2_17_x86_64 -d .whl tensordict==0.14.3 \
#                  torchrl==0.14.1 hoptorch pyvers orjson importlib_metadata \
#                  hydra-core==1.3.8 omegaconf==2.3.1 cattrs trl==1.16.0 datasets \
#                  dill multiprocess gguf
#                plus a wheel of antlr4-python3-runtime==4.9.3 (`pip wheel`; sdist
#                only). Its transformers was 5.17 on 2026-12-04: the plugin's
#                fine-tuning needs 5.25, so carry transformers 5.25 with
#                huggingface_hub 2.4 and their new dependencies for the fine-tune
#                figures (the generation figures ran on 5.17).
#   .devcarry/   data/graph_isomorphism/eru10000 (nip datasets generate ...), and
#                smollm2-config/ (config and tokenizer files of the converted
#                SmolLM2-135M-Instruct; the weights are too large to carry, so the
#                model is rebuilt there with random weights: the same architecture,
#                hence the same cost per token)
# Then, there:  bash benchmarks/gpu_figures.sh   (results and logs under $OUT)
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu-figures}
mkdir -p "$OUT"
stage() { echo "=== $(date +%T) $*"; }

stage "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
nproc

stage "install"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile \
    --target /tmp/site . plugins/nip-plugin-ppo plugins/nip-plugin-graph-isomorphism \
    plugins/nip-plugin-transformers || exit 1
export PATH=/tmp/site/bin:$PATH
python3 -c "import torch, transformers, peft, tensordict, torchrl, trl, nip_core
print('torch', torch.__version__, 'transformers', transformers.__version__,
      'peft', peft.__version__, 'trl', trl.__version__, 'cuda', torch.cuda.is_available())" \
    | tee "$OUT/versions.txt"

stage "graph isomorphism at ppo_gi on cuda"
timeout 150 python3 benchmarks/training_speed.py --device cuda --threads 4 \
    --protocols nip debate --settings ppo_gi --iterations 3 \
    --data-dir .devcarry/data --json "$OUT/gi_ppo_gi.json"

stage "graph isomorphism at 16x the ppo_gi batch on cuda"
timeout 150 python3 benchmarks/training_speed.py --device cuda --threads 4 \
    --protocols nip debate --settings ppo_gi --iterations 3 \
    --data-dir .devcarry/data --json "$OUT/gi_16x.json" \
    --override rl.frames_per_batch=32768 rl.minibatch_size=4096

stage "graph isomorphism at ppo_gi on cuda, loss compiled (run.compile_loss)"
timeout 150 python3 benchmarks/training_speed.py --device cuda --threads 4 \
    --protocols nip --settings ppo_gi --iterations 3 --compile-loss \
    --data-dir .devcarry/data --json "$OUT/gi_ppo_gi_compiled.json"

stage "transformers backend on cuda (SmolLM2-135M architecture, random weights)"
python3 - <<'EOF'
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

source = ".devcarry/smollm2-config"
torch.manual_seed(0)
model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(source))
model.save_pretrained("/tmp/smollm2-random")
AutoTokenizer.from_pretrained(source).save_pretrained("/tmp/smollm2-random")
print("parameters", sum(p.numel() for p in model.parameters()))
EOF
timeout 170 python3 benchmarks/transformers_backend.py --device cuda \
    --model /tmp/smollm2-random --batch-sizes 1 8 32 64 --examples 64 \
    --train-batch-size 8 --json "$OUT/transformers.json"
stage "done"
