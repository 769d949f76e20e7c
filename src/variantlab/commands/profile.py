"""``variantlab profile [name]``: switch params.yaml's profile, adding the variants the new profile declares to
``variants:`` and taking out those only the old one declared. dvc.yaml runs one train and evaluate stage per
entry of ``variants:``, so a profile's variants must be written there, not only overlaid when params are read.
The file is edited as text, so its comments and layout stay, and checked before it is replaced.
"""

from __future__ import annotations

import re
from pathlib import Path

from variantlab.console import info
from variantlab.errors import ConfigError


def switch_profile(params_file: Path, name: str | None) -> str:
    """Switch to ``name`` (None: report the current one); returns what changed, in one line."""
    import yaml

    from variantlab.config import parse_params

    text = params_file.read_text(encoding="utf-8")
    data = yaml.safe_load(text) or {}
    profiles = data.get("profiles") or {}
    current = data.get("profile", "cpu")
    if name is None:
        return f"profile: {current} (declared: {', '.join(sorted(profiles)) or 'none'})"
    if name not in profiles and name != "cpu":
        raise ConfigError(f"unknown profile '{name}' (declared: {', '.join(sorted(profiles)) or 'none'})")
    declared = {key for profile in profiles.values() for key in ((profile or {}).get("variants") or {})}
    wanted = dict(((profiles.get(name) or {}).get("variants")) or {})
    variants = data.get("variants") or {}
    removed = [key for key in variants if key in declared and key not in wanted]
    added = [key for key in wanted if key not in variants]
    lines = text.splitlines(keepends=True)
    for key in removed:
        lines = _without_entry(lines, key)
    if added:
        block = yaml.safe_dump({key: wanted[key] for key in added}, sort_keys=False, width=110)
        entries = [f"  {line}\n" if line else "\n" for line in block.splitlines()]
        at = _end_of_section(lines, "variants")
        lines[at:at] = [
            f"  # added by `variantlab profile {name}` (declared under profiles.{name}.variants)\n",
            *entries,
        ]
    text = "".join(lines)
    text, swapped = re.subn(r"(?m)^profile:[ \t]*[^\s#]+", f"profile: {name}", text, count=1)
    if not swapped:
        text = f"profile: {name}\n" + text
    parse_params(yaml.safe_load(text), file=str(params_file))  # a profile that does not parse changes nothing
    tmp = params_file.with_suffix(".yaml.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(params_file)
    return (
        f"profile: {current} -> {name}; variants added: {', '.join(added) or 'none'}; "
        f"removed: {', '.join(removed) or 'none'}"
    )


def _end_of_section(lines: list[str], key: str) -> int:
    """The line after a top-level section's last non-blank line."""
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{key}:"))
    end = start + 1
    while end < len(lines) and not re.match(r"[^\s#]", lines[end]):
        end += 1
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    return end


def _without_entry(lines: list[str], key: str) -> list[str]:
    """The lines without ``variants.<key>`` (and the comment line ``variantlab profile`` wrote before it)."""
    start = next(i for i, line in enumerate(lines) if line.startswith("variants:"))
    first = next(i for i in range(start + 1, len(lines)) if re.match(rf"  {re.escape(key)}:", lines[i]))
    last = first + 1
    while last < len(lines) and (lines[last].startswith("   ") or not lines[last].strip()):
        last += 1
    while last > first + 1 and not lines[last - 1].strip():  # the blank lines after it stay
        last -= 1
    if first > 0 and lines[first - 1].lstrip().startswith("# added by `variantlab profile"):
        first -= 1
    return lines[:first] + lines[last:]


def main(params_file: Path, name: str | None) -> int:
    info(switch_profile(params_file, name))
    return 0
