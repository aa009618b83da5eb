"""The training loader's dtype plan, checked on a CPU without bitsandbytes kernels: with QLoRA only the linear
layers of the blocks are 4-bit, and every other weight (embeddings, norms, the LM or score head, so the
logits too) stays in the run's half precision; nothing is left in fp32."""

from __future__ import annotations

import pytest
import torch
from accelerate import init_empty_weights
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

from pipelines.train.modeling import dtype_plan, load_plan, prepare_quantized
from pipelines.train.params import PeftSpec, TrainingParams

BLOCK_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def meta_model(path, cls=AutoModelForCausalLM, **overrides):
    with init_empty_weights():
        return cls.from_config(AutoConfig.from_pretrained(str(path), **overrides))


@pytest.mark.parametrize("precision, half", [("bf16", "bfloat16"), ("fp16", "float16")])
def test_qlora_quantizes_the_block_linears_and_keeps_everything_else_in_half_precision(tiny_model_dir, precision,
                                                                                        half):
    plan = load_plan(PeftSpec(method="qlora"), precision, device_index=0)
    kwargs = plan.kwargs()
    quant = kwargs["quantization_config"]
    assert kwargs["dtype"] == getattr(torch, half) and kwargs["device_map"] == {"": 0}
    assert quant.load_in_4bit and quant.bnb_4bit_quant_type == "nf4" and quant.bnb_4bit_use_double_quant
    assert quant.bnb_4bit_compute_dtype == getattr(torch, half)          # compute in the run's precision
    layers = dtype_plan(meta_model(tiny_model_dir), plan)
    assert layers and "float32" not in layers.values()
    for name, stored in layers.items():
        in_block_linear = any(f".{linear}.weight" in name for linear in BLOCK_LINEARS)
        assert stored == ("nf4" if in_block_linear else half), name
    assert layers["model.embed_tokens.weight"] == layers["lm_head.weight"] == half
    assert layers["model.norm.weight"] == layers["model.layers.0.input_layernorm.weight"] == half


def test_a_qlora_reward_model_keeps_its_score_head_in_half_precision(tiny_model_dir):
    layers = dtype_plan(meta_model(tiny_model_dir, AutoModelForSequenceClassification, num_labels=1),
                        load_plan(PeftSpec(method="qlora"), "bf16", device_index=0))
    assert layers["score.weight"] == "bfloat16" and layers["model.layers.1.mlp.down_proj.weight"] == "nf4"
    assert "float32" not in layers.values()


def test_lora_and_full_plans_load_plain_weights(tiny_model_dir):
    model = meta_model(tiny_model_dir)
    assert set(dtype_plan(model, load_plan(PeftSpec(method="lora"), "bf16"))) == {n for n, _ in model.named_parameters()}
    assert set(dtype_plan(model, load_plan(PeftSpec(method="lora"), "bf16")).values()) == {"bfloat16"}
    assert set(dtype_plan(model, load_plan(PeftSpec(method="full"), "bf16")).values()) == {"float32"}  # master weights
    assert load_plan(PeftSpec(method="lora"), "bf16").kwargs() == {"dtype": torch.bfloat16}


def test_preparing_a_quantized_base_leaves_its_half_precision_weights_alone(tiny_model_dir):
    """PEFT's prepare_model_for_kbit_training casts every non-4-bit weight to fp32 (the QLoRA memory peak);
    the studio's preparation only freezes the base and lets gradients reach the adapters."""
    from peft import prepare_model_for_kbit_training

    upcast = prepare_model_for_kbit_training(AutoModelForCausalLM.from_pretrained(str(tiny_model_dir),
                                                                                  dtype=torch.bfloat16))
    assert upcast.model.embed_tokens.weight.dtype == upcast.lm_head.weight.dtype == torch.float32   # what it did
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.bfloat16)
    prepared = prepare_quantized(model, TrainingParams(gradient_checkpointing=True))
    assert {p.dtype for p in prepared.parameters()} == {torch.bfloat16}
    assert not any(p.requires_grad for p in prepared.parameters())
    hidden = prepared.get_input_embeddings()(torch.tensor([[1, 2, 3]]))
    assert hidden.requires_grad and hidden.dtype == torch.bfloat16      # gradients flow from the first block
