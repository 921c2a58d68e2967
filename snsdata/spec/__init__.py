"""Task specs: the data model everything in snsdata stands on. Imports nothing else of snsdata."""

from snsdata.spec.loader import (
    SpecError,
    SpecIssue,
    discover_spec_files,
    load_spec,
    load_spec_files,
    specs_root,
    templates_root,
)
from snsdata.spec.mixture import Mixture, list_mixtures, load_mixture
from snsdata.spec.models import CAPABILITIES, TaskSpec
from snsdata.spec.reward import REWARD_TYPES, RewardSpec
from snsdata.spec.searchpath import configure, load_catalogue, resolve_specs, search_path

__all__ = [
    "CAPABILITIES",
    "REWARD_TYPES",
    "Mixture",
    "RewardSpec",
    "SpecError",
    "SpecIssue",
    "TaskSpec",
    "configure",
    "discover_spec_files",
    "list_mixtures",
    "load_catalogue",
    "load_mixture",
    "load_spec",
    "load_spec_files",
    "resolve_specs",
    "search_path",
    "specs_root",
    "templates_root",
]
