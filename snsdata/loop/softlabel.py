"""Soft labels: the stage-1 model's own answers to the general-data prompts of stage 2.

RedOne 2.0 fine-tunes the weak tasks together with a small share of general data whose targets are what the
stage-1 model itself answers, so targeted SFT does not drag the model off its own distribution. This module asks
the build for those prompts, generates the answers in batches, and appends them to a JSONL file that `snsdata build
--mixture stage2 --soft-labels FILE` reads.

The file is written one batch at a time (flush + fsync) and keyed by prompt hash, so an interrupted run resumes
where it stopped and never generates a prompt twice; a torn last line (a kill mid-write) is cut off before
appending.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from snsdata.spec import TaskSpec
from snsdata.spec.errors import InvalidInput
from snsdata.spec.jsonl import iter_lines

SOFT_LABEL_SCHEMA = "snsdata.soft_labels/1"

Message = dict[str, str]


@dataclass(frozen=True)
class GenerationSettings:
    """Everything that changes what the model answers; stored with every row as provenance."""

    max_new_tokens: int = 512
    temperature: float = 0.0
    """0 = greedy: the stage-1 model's most likely answer, the natural soft label."""
    top_p: float = 1.0
    seed: int = 0
    batch_size: int = 8


class Generator(Protocol):
    """Answers a batch of chat prompts; `truncated` is True where the answer hit max_new_tokens."""

    engine: str

    def generate(self, prompts: Sequence[list[Message]], seed: int) -> list[tuple[str, bool]]: ...


def model_fingerprint(model_path: str | Path) -> str:
    """Hash of the model's config and weight-file names and sizes: cheap, and changes when the checkpoint does."""
    root = Path(model_path)
    digest = hashlib.sha256()
    for name in ("config.json", "generation_config.json"):
        if (root / name).is_file():
            digest.update((root / name).read_bytes())
    for path in sorted(root.glob("*.safetensors")) + sorted(root.glob("*.bin")):
        digest.update(f"{path.name}:{path.stat().st_size}".encode())
    return digest.hexdigest()[:16]


class TransformersGenerator:
    """Batched `generate` with the tokenizer's chat template; left padding so every answer starts aligned."""

    engine = "transformers"

    def __init__(self, model_path: str | Path, settings: GenerationSettings):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.settings = settings
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        if self.tokenizer.chat_template is None:
            raise ValueError(f"{model_path}: the tokenizer has no chat template; soft labels need the model's own "
                             "chat format")
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype).to(device).eval()
        self.device = device
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos if eos is not None
                                                               else self.tokenizer.eos_token_id])

    def generate(self, prompts: Sequence[list[Message]], seed: int) -> list[tuple[str, bool]]:
        import torch

        texts = [self.tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
        batch = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        sample = self.settings.temperature > 0
        options: dict[str, Any] = {"do_sample": sample, "max_new_tokens": self.settings.max_new_tokens,
                                   "pad_token_id": self.tokenizer.pad_token_id}
        if sample:
            options |= {"temperature": self.settings.temperature, "top_p": self.settings.top_p}
        else:
            options |= {"temperature": None, "top_p": None, "top_k": None}
        torch.manual_seed(seed)
        with torch.no_grad():
            output = self.model.generate(**batch, **options)
        answers = []
        for ids in output[:, batch["input_ids"].shape[1]:].tolist():
            stopped = any(token in self.eos_ids for token in ids)
            answers.append((self.tokenizer.decode(ids, skip_special_tokens=True).strip(), not stopped))
        return answers


class VllmGenerator:
    """vLLM's offline `LLM.chat`, used when vLLM is installed and a GPU is present (much faster than HF)."""

    engine = "vllm"

    def __init__(self, model_path: str | Path, settings: GenerationSettings):
        from vllm import LLM

        self.settings = settings
        self.llm = LLM(model=str(model_path), seed=settings.seed)

    def generate(self, prompts: Sequence[list[Message]], seed: int) -> list[tuple[str, bool]]:
        from vllm import SamplingParams

        params = SamplingParams(temperature=self.settings.temperature, top_p=self.settings.top_p,
                                max_tokens=self.settings.max_new_tokens, seed=seed)
        outputs = self.llm.chat([list(p) for p in prompts], params, use_tqdm=False)
        return [(o.outputs[0].text.strip(), o.outputs[0].finish_reason == "length") for o in outputs]


def default_engine() -> str:
    """`vllm` when it is importable and a GPU is present, else `transformers`."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return "transformers"
    import torch

    return "vllm" if torch.cuda.is_available() else "transformers"


def load_generator(model_path: str | Path, settings: GenerationSettings, engine: str = "auto") -> Generator:
    engine = default_engine() if engine == "auto" else engine
    if engine == "vllm":
        return VllmGenerator(model_path, settings)
    if engine == "transformers":
        return TransformersGenerator(model_path, settings)
    raise ValueError(f"engine must be auto, transformers or vllm, got {engine!r}")


def soft_label_rows(path: str | Path, repair: bool = False) -> list[dict[str, Any]]:
    """The complete rows of a soft-label file; a torn last line is skipped (and cut from the file if `repair`)."""
    path = Path(path)
    if not path.is_file():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    rows = []
    for line in iter_lines(data[:end].splitlines(keepends=True)):
        if line.error is not None:
            raise InvalidInput(f"{path}:{line.number}: {line.error}; the file is damaged beyond a torn last line")
        rows.append(line.value)
    if repair and end < len(data):
        with path.open("r+b") as handle:
            handle.truncate(end)
            handle.flush()
            os.fsync(handle.fileno())
    return rows


def _batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _batch_seed(seed: int, hashes: Sequence[str]) -> int:
    """A batch's sampling seed from the run seed and its first prompt: the same batch samples the same after a
    resume."""
    return int(hashlib.sha256(f"{seed}:{hashes[0]}".encode()).hexdigest()[:8], 16)


@dataclass(frozen=True)
class SoftLabelRun:
    """What one call did: rows already present, rows written now, and how many answers hit the token limit."""

    path: Path
    prompts: int
    already_done: int
    generated: int
    truncated: int


def generate_soft_labels(
    prompts: pl.DataFrame,
    out: str | Path,
    generator: Generator,
    provenance: dict[str, Any],
    settings: GenerationSettings,
    *,
    stop_after_batches: int | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> SoftLabelRun:
    """Answer every prompt (`task_id, record_id, prompt_hash, prompt`) whose hash `out` lacks, one batch at a time.

    Prompts shared by several records are generated once; each record gets its row. `provenance` (model,
    fingerprint, settings) is written with every row and must match what an existing file holds, so one file never
    mixes models. `stop_after_batches` ends the run early (a deliberate interruption); `on_batch(done, total)`
    reports progress.
    """
    out = Path(out)
    existing = soft_label_rows(out, repair=True)
    for row in existing[:1]:
        theirs = {key: row.get(key) for key in provenance}
        if theirs != provenance:
            raise ValueError(f"{out} holds soft labels from different settings ({theirs}); resume with the same "
                             f"model and settings or write to a new --out ({provenance})")
    done = {row["prompt_hash"] for row in existing}
    todo = prompts.filter(~pl.col("prompt_hash").is_in(list(done)))
    unique = todo.unique("prompt_hash", keep="first", maintain_order=True)
    # Similar lengths batch together (less padding); the hash breaks ties so the order is deterministic.
    unique = unique.with_columns(_len=pl.col("prompt").map_elements(
        lambda p: sum(len(m["content"]) for m in p), return_dtype=pl.Int64)).sort("_len", "prompt_hash")
    records_by_hash = todo.group_by("prompt_hash").agg("task_id", "record_id")
    owners = {row["prompt_hash"]: list(zip(row["task_id"], row["record_id"], strict=True))
              for row in records_by_hash.to_dicts()}
    out.parent.mkdir(parents=True, exist_ok=True)
    generated = truncated = 0
    batches = list(_batches(unique.select("prompt_hash", "prompt").to_dicts(), settings.batch_size))
    with out.open("a", encoding="utf-8") as handle:
        for number, batch in enumerate(batches):
            if stop_after_batches is not None and number >= stop_after_batches:
                break
            hashes = [item["prompt_hash"] for item in batch]
            answers = generator.generate([item["prompt"] for item in batch], _batch_seed(settings.seed, hashes))
            lines = []
            for prompt_id, (completion, cut) in zip(hashes, answers, strict=True):
                truncated += cut
                for task_id, record_id in owners[prompt_id]:
                    lines.append(json.dumps({"record_id": record_id, "prompt_hash": prompt_id, "task_id": task_id,
                                             "completion": completion, "truncated": cut, **provenance},
                                            ensure_ascii=False) + "\n")
                    generated += 1
            handle.write("".join(lines))
            handle.flush()
            os.fsync(handle.fileno())
            if on_batch is not None:
                on_batch(number + 1, len(batches))
    return SoftLabelRun(out, prompts.height, prompts.height - todo.height, generated, truncated)


def provenance_of(model_path: str | Path, settings: GenerationSettings, engine: str, mixture: str) -> dict[str, Any]:
    """The fields written with every soft-label row (what produced it, so a build can say so in its manifest)."""
    return {
        "schema": SOFT_LABEL_SCHEMA,
        "model": str(model_path),
        "model_fingerprint": model_fingerprint(model_path),
        "engine": engine,
        "mixture": mixture,
        "generation": {k: v for k, v in asdict(settings).items() if k != "batch_size"},
    }


def soft_label(
    model_path: str | Path,
    mixture: str | Path = "stage2",
    out: str | Path = "soft_labels.jsonl",
    *,
    data_root: str | Path | None = None,
    diagnosis: str | Path | None = None,
    max_per_task: int | None = None,
    settings: GenerationSettings | None = None,
    engine: str = "auto",
    max_batches: int | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    catalogue: Mapping[str, TaskSpec] | None = None,
) -> SoftLabelRun:
    """Soft labels for every general-data prompt of a mixture's `target: soft_label` components.

    The prompts come from the build itself (`snsdata.build.prepare` + `soft_label_prompts`) with the same
    data root, diagnosis and per-task read limit the stage-2 build will use, so every prompt hash matches a row
    of that build. `max_batches` generates at most that many batches now (the rest on the next call); `catalogue`
    replaces the search path's specs (e.g. a build's frozen ones).
    """
    from snsdata.build import prepare, soft_label_prompts

    settings = settings or GenerationSettings()
    prepared = prepare(mixture, data_root=data_root, diagnosis=diagnosis, max_per_task=max_per_task,
                       catalogue=dict(catalogue) if catalogue is not None else None)
    prompts = soft_label_prompts(prepared)
    if prompts.is_empty():
        raise ValueError(f"{prepared.mixture.name} has no train rows in a `target: soft_label` component under "
                         f"this data root: nothing to label")
    generator = load_generator(model_path, settings, engine)
    provenance = provenance_of(model_path, settings, generator.engine, prepared.mixture.name)
    return generate_soft_labels(prompts, out, generator, provenance, settings, stop_after_batches=max_batches,
                                on_batch=on_batch)
