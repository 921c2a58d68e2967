"""Pipeline steps (rule and fastText filters, dedup, decontamination) and the local runner; CPT preparation.

See docs/pipeline.md. The runner and the config are the entry points; each step also works alone on a
LazyFrame.
"""

from snsdata.pipeline.base import StepConfig, StepResult
from snsdata.pipeline.chunking import prepare_cpt
from snsdata.pipeline.config import REGISTRY, PipelineConfig, load_pipeline_config, parse_steps
from snsdata.pipeline.decontam import Decontamination, decontaminate
from snsdata.pipeline.dedup import Duplicates, NearParams, dedup_step, find_duplicates
from snsdata.pipeline.fasttext_filters import train_quality
from snsdata.pipeline.files import dedup_file, filter_file, train_quality_file
from snsdata.pipeline.runner import PipelineResult, StepCount, run_pipeline, run_pipeline_to_files

__all__ = [
    "REGISTRY",
    "Decontamination",
    "Duplicates",
    "NearParams",
    "PipelineConfig",
    "PipelineResult",
    "StepConfig",
    "StepCount",
    "StepResult",
    "decontaminate",
    "dedup_file",
    "dedup_step",
    "filter_file",
    "find_duplicates",
    "load_pipeline_config",
    "parse_steps",
    "prepare_cpt",
    "run_pipeline",
    "run_pipeline_to_files",
    "train_quality",
    "train_quality_file",
]
