"""`variantlab profile gpu` adds the gpu profile's LLM variants under variants: (where dvc.yaml sees them) and
`variantlab profile cpu` takes them out again, leaving params.yaml byte for byte as it was."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import REPO
from variantlab.commands.profile import switch_profile
from variantlab.config import load_params
from variantlab.errors import ConfigError


def test_switching_profiles_adds_and_removes_the_profile_variants(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)
    original = params.read_bytes()
    cpu = load_params(params)
    assert not any(name.startswith("smollm2") for name in cpu.variants)  # the default run keeps its variants

    said = switch_profile(params, "gpu")
    assert "variants added: smollm2-zero-shot, smollm2-few-shot, smollm2-lora" in said
    gpu = load_params(params)
    assert gpu.profile == "gpu" and {"smollm2-zero-shot", "smollm2-few-shot", "smollm2-lora"} <= set(gpu.variants)
    assert gpu.variants["smollm2-lora"].device == "cuda"  # the profile's fine-tuning settings apply to them too
    assert "# The one knob file" in params.read_text()  # comments stay

    assert "removed: smollm2-zero-shot, smollm2-few-shot, smollm2-lora" in switch_profile(params, "cpu")
    assert params.read_bytes() == original


def test_a_profile_whose_variants_are_missing_says_how_to_switch(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text((REPO / "params.yaml").read_text().replace("profile: cpu", "profile: gpu", 1))
    with pytest.raises(ConfigError, match="run `variantlab profile gpu` to switch profiles"):
        load_params(params)
    with pytest.raises(ConfigError, match="unknown profile 'tpu'"):
        switch_profile(params, "tpu")
