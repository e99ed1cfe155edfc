"""What `hpstudy list` says: the studies, datasets and architectures; one study's keys.

Plain strings; the CLI prints them. Without `--study` nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from hpstudy.spec.study_file import StudyConfig


def catalogue() -> str:
    """Every study `--study NAME` finds, every dataset and every built-in architecture."""
    from hpstudy.data import DATASETS
    from hpstudy.models import MODELS
    from hpstudy.spec.finding import list_studies

    lines = ["Studies (hpstudy optimize --study NAME):"]
    lines += [f"  {name:<24} {description}" for name, description in list_studies()]
    lines += ["", "Datasets ([data] name; or your own function as 'package.module:name'):"]
    lines += [f"  {name:<24} {spec.description}" for name, spec in DATASETS.items()]
    lines += ["", "Architectures ([model] architecture; or your own network as "
              "'package.module:Name'):"]
    for name, arch in MODELS.items():
        lines += [f"  {name:<24} width: {arch.width}", f"  {'':<24} depth: {arch.depth}",
                  f"  {'':<24} model keys ([model], or searched in [search]): "
                  f"{', '.join(arch.takes()) or 'none'}"]
    lines += ["", "The keys one study's dataset and network take: hpstudy list --study NAME"]
    return "\n".join(lines)


def study_keys(config: StudyConfig) -> str:
    """The [data] and [model] keys of the study's dataset and network, with its values."""
    from hpstudy.data import dataset
    from hpstudy.models import architecture

    arch = architecture(config.model.architecture)
    lines = [f"Study '{config.name}' ({config.path}): {config.description}"]
    for section, name, options, chosen in (
            ("data", config.data.name, dataset(config.data.name).options, config.data.options),
            ("model", config.model.architecture, arch.options, config.model.options)):
        lines += ["", f"[{section}] {name}:"]
        lines += [f"  {f.name:<20} {_hint(f.type):<28} this study: {getattr(chosen, f.name)!r}"
                  for f in dataclasses.fields(options)]
    shape = [k for k in ("width", "depth", "dropout") if k in arch.uses]
    if shape:
        lines.append(f"  {', '.join(shape)}: hpstudy's own keys, set or searched in [search]")
    lines += ["", "Searched: " + (", ".join(sorted(config.searched())) or "nothing")]
    return "\n".join(lines)


def _hint(hint: Any) -> str:
    """A key's type as a reader writes it: int, float, 'relu' | 'tanh', ..."""
    if typing.get_origin(hint) is Literal:
        return " | ".join(map(repr, typing.get_args(hint)))
    return getattr(hint, "__name__", str(hint))
