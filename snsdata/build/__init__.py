"""Stage builders: a mixture plus a data root become a build directory (docs/build.md, docs/CONVENTIONS.md).

The functions other parts call: `build` (what `snsdata build` runs), `prepare` + `soft_label_prompts` (the
prompts whose stage-1 answers stage 2 needs), `prompt_hash` (the key a soft-label file may use), `read_pairs`
(extra DPO pairs), `write_report`.
"""

from snsdata.build.builder import (
    BuildError,
    BuildResult,
    Prepared,
    RolloutInput,
    build,
    prepare,
    soft_label_prompts,
)
from snsdata.build.formats import COLUMNS, PAIR_COLUMNS, prompt_hash
from snsdata.build.inputs import InputFileError, read_diagnosis, read_pairs, read_soft_labels
from snsdata.build.report import write_report

__all__ = [
    "COLUMNS",
    "PAIR_COLUMNS",
    "BuildError",
    "BuildResult",
    "InputFileError",
    "Prepared",
    "RolloutInput",
    "build",
    "prepare",
    "prompt_hash",
    "read_diagnosis",
    "read_pairs",
    "read_soft_labels",
    "soft_label_prompts",
    "write_report",
]
