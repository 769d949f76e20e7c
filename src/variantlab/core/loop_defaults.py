"""The fine-tuning loop's defaults, shared by the config (``variants.finetune.FinetuneVariant``) and the loop
(``core.training.LoopSettings``) so the two cannot drift apart. No imports: the loop and the benchmarks run
where pydantic is not installed (the GPU check's machine)."""


class LOOP_DEFAULTS:
    epochs: int = 1
    batch_size: int = 32
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    grad_accum: int = 1
    patience: int = 1
    bf16: bool = True
    compile: bool = False
    checkpoint_every: int = 0
    max_steps: int | None = None
    fsdp: bool = False
