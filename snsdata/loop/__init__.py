"""The training loop's data steps: diagnose a run, soft-label general prompts, make DPO pairs from errors.

RedOne 2.0: stage-1 rollouts -> `diagnose` (weak tasks, failure samples) -> `soft_label` (stage-1 answers to the
general prompts) -> `snsdata build --mixture stage2 --diagnosis F --soft-labels F`. RedOne: predictions of the SFT
model -> `extra_pairs` -> `snsdata build --mixture dpo --pairs F`. Walkthrough: docs/redone2_loop.md.
"""

from snsdata.loop.diagnose import WeakRules, diagnose, diagnose_frames, load_rules, write_diagnosis
from snsdata.loop.logs import LOG_SCHEMA, LogError, normalize_log, read_log
from snsdata.loop.pairs import annotation_pairs, extra_pairs, is_subjective, prediction_pairs, read_annotations
from snsdata.loop.report import html_page, write_html
from snsdata.loop.softlabel import GenerationSettings, generate_soft_labels, soft_label, soft_label_rows

__all__ = [
    "LOG_SCHEMA",
    "GenerationSettings",
    "LogError",
    "WeakRules",
    "annotation_pairs",
    "diagnose",
    "diagnose_frames",
    "extra_pairs",
    "generate_soft_labels",
    "html_page",
    "is_subjective",
    "load_rules",
    "normalize_log",
    "prediction_pairs",
    "read_annotations",
    "read_log",
    "soft_label",
    "soft_label_rows",
    "write_diagnosis",
    "write_html",
]
