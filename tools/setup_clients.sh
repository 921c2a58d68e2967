#!/usr/bin/env bash
# One venv per trainer for tests/clients/ (docs/backends.md, "Real-client tests"): their pins cannot share one
# environment (LLaMA-Factory 0.9.5: transformers <= 5.6, TRL <= 0.24; verl 0.9.1: transformers >= 5.5.3, < 5.11;
# OpenRLHF 0.11.2: transformers == 5.15 and CUDA-only requirements). Each trainer is installed with --no-deps,
# then exactly the modules its dataset and reward paths import, pinned; CPU torch only, never a CUDA build.
# Idempotent: a venv whose pins and checkout are unchanged is kept. Needs only PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
ROOT=${SNSDATA_CLIENT_VENVS:-.venv-clients}
TORCH="torch==2.13.0"  # the CPU build, as tools/setup.sh installs it; an open range pulls a multi-GB CUDA build

# Trainer (installed --no-deps) and the modules its tested path imports. Left out on purpose: whatever only
# training, launching or logging needs (deepspeed, flash-attn, vllm, bitsandbytes, wandb, tensorboard, gradio,
# liger-kernel, ...), most of it CUDA-only.
VERL="verl==0.9.1"
VERL_MODULES=(
  transformers==5.10.4 tokenizers==0.22.2 datasets==5.2.0 pillow==13.0.0  # RLHFDataset, hf_tokenizer
  hydra-core==1.3.2 omegaconf==2.3.0                                       # composing ppo_trainer.yaml
  tensordict==0.10.0 ray==2.55.0 aiohttp==3.14.5 codetiming==1.4.0         # DataProto, the reward loop's imports
)
LLAMAFACTORY="llamafactory==0.9.5"
LLAMAFACTORY_MODULES=(
  transformers==5.6.0 tokenizers==0.22.2 datasets==4.0.0                   # get_dataset, load_tokenizer
  trl==0.24.0 peft==0.18.1 accelerate==1.11.0 omegaconf==2.3.0             # imported by llamafactory.model/hparams
)
OPENRLHF="openrlhf==0.11.2"
OPENRLHF_MODULES=(
  transformers==5.15.0 tokenizers==0.22.2 datasets==5.2.0 tqdm==4.70.1     # PromptDataset, get_tokenizer
  aiohttp==3.14.5                                                          # SingleTurnAgentExecutor's HTTP client
  sympy==1.14.0 pylatexenc==2.11                                           # openrlhf.utils imports math_utils
)
# Import stubs, for modules a tested path imports but never calls. Each is a package whose every attribute raises
# ImportError naming this script, so a call that does reach one fails loudly; it has no dist-info, so libraries
# that probe for it (transformers' is_*_available) see it as absent.
#   llamafactory torchaudio: llamafactory/data/mm_plugin.py imports it at module level to load audio inputs; no
#     torchaudio on PyPI is built for torch 2.13 (its releases pin one torch each), and text data never loads audio.
STUBS_LLAMAFACTORY=(torchaudio)

site_packages() { "$1/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
# pip's resolver reports every trainer requirement left out on purpose as "X requires Y, which is not installed";
# those lines are dropped (a version conflict with an installed module is still shown).
pip_in() {
  local venv=$1
  shift
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "$@" \
    2> >(grep -v -e ", which is not installed\.$" -e "^ERROR: pip's dependency resolver does not currently" >&2)
}

stub() {
  local venv=$1 module=$2 dir
  dir="$(site_packages "$venv")/$module"
  mkdir -p "$dir"
  "$venv/bin/python" - "$dir/__init__.py" "$module" <<'EOF'
import sys
path, module = sys.argv[1:]
open(path, "w").write(f'''"""Import stub written by tools/setup_clients.sh (which says why): {module} is imported, never called."""


def __getattr__(name: str) -> None:
    raise ImportError(f"{module}.{{name}}: {module} is an import stub in this venv (tools/setup_clients.sh)")
''')
EOF
}

# The base venv holds CPU torch once; every trainer venv starts as hard links to its site-packages, so torch is
# unpacked once and a trainer's own installs replace files without touching the base (pip unlinks before writing).
base_venv() {
  local venv=$ROOT/base
  if [ "$(cat "$venv/.setup" 2>/dev/null)" != "$TORCH" ]; then
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    pip_in "$venv" --upgrade pip setuptools wheel
    pip_in "$venv" "$TORCH" numpy
    echo "$TORCH" > "$venv/.setup"
  fi
}

# trainer_venv NAME TRAINER STUBS... -- MODULES...: make or keep $ROOT/NAME.
trainer_venv() {
  local name=$1 trainer=$2 venv=$ROOT/$1 stamp stubs=() modules
  shift 2
  while [ "$1" != "--" ]; do stubs+=("$1"); shift; done
  shift
  modules=("$@")
  stamp="$trainer ${modules[*]} stubs: ${stubs[*]:-} torch: $TORCH repo: $PWD"
  [ "$name" = verl ] && stamp="$stamp snsdata: $(sha256sum pyproject.toml | cut -c1-16)"
  if [ "$(cat "$venv/.setup" 2>/dev/null)" = "$stamp" ]; then
    echo "$venv: up to date"
    return
  fi
  rm -rf "$venv"
  "$PYTHON" -m venv --without-pip "$venv"
  cp -al "$(site_packages "$ROOT/base")/." "$(site_packages "$venv")/"
  pip_in "$venv" --no-deps "$trainer"
  # torch as a constraint too, so that no module's requirement can swap the CPU build for another
  pip_in "$venv" -c <(echo "$TORCH") "${modules[@]}"
  for module in "${stubs[@]}"; do stub "$venv" "$module"; done
  echo "$stamp" > "$venv/.setup"
  echo "$venv: $trainer"
}

mkdir -p "$ROOT"
base_venv
# verl imports the reward function from backends/verl.py, which scores with snsdata: the checkout goes in too,
# with its own requirements (resolved as tools/setup.sh resolves them, within the pins above).
trainer_venv verl "$VERL" -- "${VERL_MODULES[@]}" -e . --no-build-isolation
trainer_venv llamafactory "$LLAMAFACTORY" "${STUBS_LLAMAFACTORY[@]}" -- "${LLAMAFACTORY_MODULES[@]}"
trainer_venv openrlhf "$OPENRLHF" -- "${OPENRLHF_MODULES[@]}"
