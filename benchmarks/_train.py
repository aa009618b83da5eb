"""What the training benchmarks share for ``--device cuda``: the GPU-sized model, peak memory and MFU.

GPU mode is bf16 with a batch and length that fill a GPU. Weights cannot travel to a lent GPU, so
without ``--model-dir`` the model is a Llama of SmolLM2-135M's shape with random weights (speed and
memory only) and the tests' tiny tokenizer (its ids fit any vocabulary). MFU is 6·N·tokens/s over
the H200's dense bf16 peak, 989 TFLOP/s (N = the model's parameters; a DPO step's reference forward
pass is not counted, so DPO's MFU reads low).
"""

from __future__ import annotations

from pathlib import Path

H200_PEAK_FLOPS = 989e12
GPU_SIZES = {"batch": 8, "max_length": 1024, "precision": "bf16"}


def require_cuda() -> None:
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("--device cuda needs a CUDA GPU, and this machine has none.")


def build_gpu_model(work: Path) -> Path:
    """A SmolLM2-135M-shaped Llama (30 layers, hidden 576, 9 heads / 3 KV heads, vocab 49,152, tied)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.tiny_models import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    config = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    path = work / "smollm2-shape"
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def parameters(model_dir: Path) -> int:
    """The model's parameter count, from its config on the meta device (no memory)."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(model_dir)))
    model.tie_weights()  # from_config on the meta device leaves tied embeddings untied: counted twice
    return model.num_parameters()


def reset_peak(cuda: bool) -> None:
    if cuda:
        import torch

        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_mb(cuda: bool) -> float:
    if not cuda:
        return 0.0
    import torch

    return torch.cuda.max_memory_allocated() / 2**20


def mfu(n_params: int, tokens_per_s: float) -> float:
    return 6 * n_params * tokens_per_s / H200_PEAK_FLOPS
