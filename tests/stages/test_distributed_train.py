"""Distributed training on CPU (gloo): two DDP processes of the training loop agree on every weight, and
`processes: 2` runs the train stage as two DDP processes of which rank 0 alone logs and writes."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch

from tests.helpers import run, tiny_project
from tests.unit.test_training import build, encoded
from variantlab.core.training import LoopSettings, train_classifier


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ddp_worker(rank: int, port: int, model_dir: str, sha: str, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        model, tok = build((Path(model_dir), sha))
        settings = LoopSettings(epochs=2, batch_size=8, lr=1e-3, seed=0, patience=5)
        state = train_classifier(model, encoded(tok, 64, 0), encoded(tok, 20, 1), settings, pad_id=0)
        flat = torch.cat([p.detach().flatten() for p in model.parameters()])
        torch.save(
            {"checksum": flat.double().sum().item(), "first": flat[:50].clone(), "steps": state.step},
            Path(out) / f"rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def test_two_process_ddp_ranks_agree(tiny_bert: tuple[Path, str], tmp_path: Path) -> None:
    torch.multiprocessing.spawn(
        _ddp_worker, args=(_free_port(), str(tiny_bert[0]), tiny_bert[1], str(tmp_path)), nprocs=2, join=True
    )
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0]["steps"] == ranks[1]["steps"] == 2 * 4  # 64 examples / 8 per batch / 2 ranks, 2 epochs
    assert ranks[0]["checksum"] == ranks[1]["checksum"]
    torch.testing.assert_close(ranks[0]["first"], ranks[1]["first"], rtol=0, atol=0)
    model, _ = build(tiny_bert)
    untrained = torch.cat([p.detach().flatten() for p in model.parameters()])[:50]
    assert not torch.equal(untrained, ranks[0]["first"])  # the ranks agree on trained weights, not on a no-op


def _ddp_decoder_worker(rank: int, port: int, model_dir: str, out: str, fsdp: bool) -> None:
    """LoRA on a tiny Llama's sequence-classification head, as the lora kind trains a decoder; with ``fsdp`` the
    whole model trains sharded over the two processes (FSDP2), and its gathered weights are compared."""
    import numpy as np
    import torch.distributed as dist

    from variantlab.core.classifier import add_lora
    from variantlab.core.decoder import DecoderClassifier, load_sequence_classifier, load_tokenizer
    from variantlab.core.training import Encoded

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        tokenizer = load_tokenizer(model_dir)
        torch.manual_seed(0)
        network = load_sequence_classifier(
            model_dir, num_labels=3, problem_type="single_label_classification", pad_token_id=tokenizer.pad_token_id
        )
        if not fsdp:
            network = add_lora(
                network, rank=2, alpha=4, dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="SEQ_CLS"
            )
        model = DecoderClassifier(network)
        words = ["great", "awful", "plain"]
        texts = [f"the film was {words[i % 3]} {'one two' * (i % 4)}" for i in range(32)]
        data = Encoded(tokenizer(texts)["input_ids"], np.arange(32) % 3)
        settings = LoopSettings(epochs=1, batch_size=4, lr=1e-2, seed=0, patience=5, fsdp=fsdp)
        state = train_classifier(model, data, data, settings, pad_id=tokenizer.pad_token_id)
        if fsdp:
            from variantlab.core.training import full_state_dict

            weights = full_state_dict(model)  # gathered on rank 0 only (CPU offload)
            assert not any(type(w).__name__ == "DTensor" for w in weights.values())
            flat = torch.cat([w.flatten() for w in weights.values()]) if rank == 0 else torch.zeros(1)
        else:
            flat = torch.cat([p.detach().flatten() for p in model.parameters() if p.requires_grad])
        torch.save({"checksum": flat.double().sum().item(), "steps": state.step}, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("fsdp", [False, True], ids=["ddp-lora", "fsdp-full"])
def test_two_processes_agree_on_a_trained_decoder(tmp_path: Path, fsdp: bool) -> None:
    from tests.helpers import make_tiny_decoder

    make_tiny_decoder(tmp_path / "llm")
    torch.multiprocessing.spawn(
        _ddp_decoder_worker, args=(_free_port(), str(tmp_path / "llm"), str(tmp_path), fsdp), nprocs=2, join=True
    )
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0]["steps"] == ranks[1]["steps"] == 4  # 32 texts / 4 per batch / 2 ranks
    if not fsdp:
        assert ranks[0]["checksum"] == ranks[1]["checksum"]
        return
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    untrained = AutoModelForSequenceClassification.from_pretrained(tmp_path / "llm", num_labels=3)
    before = sum(p.detach().double().sum().item() for p in untrained.parameters())
    assert ranks[0]["checksum"] != pytest.approx(before, abs=1e-3)  # the gathered weights were trained


@pytest.mark.slow  # 40-90 s of training: make test-slow (CI runs it)
@pytest.mark.parametrize("sharding", ["ddp", "fsdp"])
def test_train_stage_under_torchrun_with_two_processes(
    tiny_bert: tuple[Path, str], tmp_path: Path, sharding: str
) -> None:
    full = {"kind": "full", "model": "tiny", "max_length": 16, "batch_size": 8, "epochs": 2, "lr": 3e-3}
    full |= {"processes": 2, "sharding": sharding}
    project = tiny_project(tmp_path / "p", *tiny_bert, extra={"variants": {"tiny-full": full}})
    prepared = run(project, "-m", "dvc", "repro", "prepare")
    assert prepared.returncode == 0, prepared.stderr[-2000:]
    done = run(project, "-m", "dvc", "repro", "train@tiny-full", timeout=600)  # `processes: 2` -> torchrun
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((project / "metrics/train/tiny-full.json").read_text())
    assert record["world_size"] == 2 and record["kind"] == "full"
    assert record["val_macro_f1"] > 0.5, record
    assert (project / "models/tiny-full/MLmodel").is_file()
    count = (
        "import mlflow, sys; mlflow.set_tracking_uri(sys.argv[1]); print(len(mlflow.search_runs("
        "search_all_experiments=True, output_format='list', filter_string=\"tags.variant = 'tiny-full'\")))"
    )
    assert run(project, "-c", count, f"sqlite:///{project / 'mlflow.db'}").stdout.strip() == "1"  # rank 0 only
