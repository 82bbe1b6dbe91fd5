"""Tiny randomly initialized HF models for the hook tests: a Llama causal LM, a LLaVA and a Qwen2-VL."""

import torch
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlamaForCausalLM,
    LlavaConfig,
    LlavaForConditionalGeneration,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
)

TEXT = {
    "vocab_size": 160,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 512,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 0,
}


def tiny_llama(**overrides) -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(**{**TEXT, **overrides})).eval()


def tiny_llava() -> tuple[LlavaForConditionalGeneration, dict]:
    """The model and generate() inputs: one 32x32 image (16 patch tokens) and 8 text tokens."""
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=LlamaConfig(**TEXT),
        image_token_index=159,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config).eval()
    ids = torch.cat([torch.full((1, 16), 159), torch.randint(3, 100, (1, 8))], 1)
    return model, {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "pixel_values": torch.randn(1, 3, 32, 32),
    }


def tiny_qwen2_vl() -> tuple[Qwen2VLForConditionalGeneration, dict]:
    """The model and generate() inputs: one image of 4x4 patches (4 merged tokens) and 6 text tokens."""
    text = {**TEXT, "rope_scaling": {"type": "mrope", "mrope_section": [1, 1, 2]}}
    config = Qwen2VLConfig(
        text_config=text,
        vision_config={
            "depth": 2,
            "embed_dim": 32,
            "hidden_size": 32,
            "num_heads": 4,
            "mlp_ratio": 2,
            "patch_size": 4,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "in_channels": 3,
        },
        image_token_id=151,
        video_token_id=152,
        vision_start_token_id=153,
        vision_end_token_id=154,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration(config).eval()
    ids = torch.cat(
        [
            torch.tensor([[153]]),
            torch.full((1, 4), 151),
            torch.tensor([[154]]),
            torch.randint(3, 100, (1, 6)),
        ],
        1,
    )
    return model, {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "pixel_values": torch.randn(16, 3 * 2 * 4 * 4),
        "image_grid_thw": torch.tensor([[1, 4, 4]]),
    }


SEQ2SEQ_VOCAB = 128
SEQ2SEQ_LAYERS = {  # BART's and Whisper's encoder and decoder
    "d_model": 32,
    "encoder_layers": 1,
    "decoder_layers": 1,
    "encoder_attention_heads": 4,
    "decoder_attention_heads": 4,
    "encoder_ffn_dim": 64,
    "decoder_ffn_dim": 64,
}


def _encoder_inputs(low: int) -> dict:
    """A batch of 2 encoder inputs of 6 tokens, ids from ``low`` up."""
    ids = torch.randint(low, SEQ2SEQ_VOCAB, (2, 6))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def tiny_t5():
    """A T5 and generate() inputs: a batch of 2 encoder inputs of 6 tokens."""
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(
        vocab_size=SEQ2SEQ_VOCAB,
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=1,
        num_decoder_layers=1,
        num_heads=4,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    torch.manual_seed(0)
    return T5ForConditionalGeneration(config).eval(), _encoder_inputs(2)


def tiny_bart():
    """A BART and generate() inputs: a batch of 2 encoder inputs of 6 tokens."""
    from transformers import BartConfig, BartForConditionalGeneration

    config = BartConfig(
        vocab_size=SEQ2SEQ_VOCAB,
        **SEQ2SEQ_LAYERS,
        max_position_embeddings=64,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
        forced_bos_token_id=0,
        forced_eos_token_id=2,
    )
    torch.manual_seed(0)
    return BartForConditionalGeneration(config).eval(), _encoder_inputs(3)


WHISPER_EOS = 120  # also its pad, as in the real vocabulary


def tiny_whisper():
    """A multilingual-layout Whisper and generate() inputs: a batch of 2 short-form clips (8 mel bins x 32)."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    config = WhisperConfig(
        vocab_size=SEQ2SEQ_VOCAB,
        num_mel_bins=8,
        **SEQ2SEQ_LAYERS,
        max_source_positions=16,
        max_target_positions=64,
        pad_token_id=WHISPER_EOS,
        bos_token_id=WHISPER_EOS,
        eos_token_id=WHISPER_EOS,
        decoder_start_token_id=121,
        suppress_tokens=[],
        begin_suppress_tokens=[],
    )
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config).eval()
    generation = model.generation_config
    generation.decoder_start_token_id, generation.eos_token_id, generation.pad_token_id = (
        121,
        WHISPER_EOS,
        WHISPER_EOS,
    )
    generation.no_timestamps_token_id = 125
    generation.is_multilingual = True
    generation.lang_to_id = {"<|en|>": 122}
    generation.task_to_id = {"transcribe": 123, "translate": 124}
    return model, {"input_features": torch.randn(2, 8, 32)}


IMAGE_TOKEN, QUERY_TOKENS = 100, 4


def _tiny_vision() -> dict:
    return {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 4,
        "image_size": 30,
        "patch_size": 15,
    }


def _tiny_qformer() -> dict:
    return {
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "encoder_hidden_size": 32,
        "vocab_size": SEQ2SEQ_VOCAB,
        "max_position_embeddings": 64,
    }


def _tiny_opt() -> dict:
    return {
        "model_type": "opt",
        "vocab_size": SEQ2SEQ_VOCAB,
        "hidden_size": 32,
        "ffn_dim": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 4,
        "word_embed_proj_dim": 32,
        "max_position_embeddings": 64,
        "pad_token_id": 1,
        "bos_token_id": 2,
        "eos_token_id": 2,
    }


def _image_prompt(ids: list[int]) -> dict:
    input_ids = torch.tensor([ids] * 2)
    return {
        "pixel_values": torch.randn(2, 3, 30, 30),
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
    }


def tiny_blip2():
    """A BLIP-2 (OPT language model) and generate() inputs: 2 images, 4 query tokens + bos + 3 text tokens."""
    from transformers import Blip2Config, Blip2ForConditionalGeneration

    config = Blip2Config(
        vision_config=_tiny_vision(),
        qformer_config=_tiny_qformer(),
        text_config=_tiny_opt(),
        num_query_tokens=QUERY_TOKENS,
        image_token_index=IMAGE_TOKEN,
    )
    torch.manual_seed(0)
    model = Blip2ForConditionalGeneration(config).eval()
    return model, _image_prompt([IMAGE_TOKEN] * QUERY_TOKENS + [2, 10, 11, 12])


def tiny_instructblip():
    """An InstructBLIP (OPT language model) and generate() inputs, with the Q-former's own prompt."""
    from transformers import InstructBlipConfig, InstructBlipForConditionalGeneration

    config = InstructBlipConfig(
        vision_config=_tiny_vision(),
        qformer_config=_tiny_qformer(),
        text_config=_tiny_opt(),
        num_query_tokens=QUERY_TOKENS,
        image_token_index=IMAGE_TOKEN,
    )
    torch.manual_seed(0)
    model = InstructBlipForConditionalGeneration(config).eval()
    inputs = _image_prompt([IMAGE_TOKEN] * QUERY_TOKENS + [2, 10, 11, 12])
    query = torch.randint(3, SEQ2SEQ_VOCAB, (2, 5))
    return model, {**inputs, "qformer_input_ids": query, "qformer_attention_mask": torch.ones_like(query)}


def tiny_kosmos2():
    """A Kosmos-2 and generate() inputs: <s> <image> 4 image slots </image> 3 text tokens."""
    from transformers import Kosmos2Config, Kosmos2ForConditionalGeneration

    text = {
        "vocab_size": SEQ2SEQ_VOCAB,
        "embed_dim": 32,
        "layers": 1,
        "attention_heads": 4,
        "ffn_dim": 64,
        "max_position_embeddings": 64,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
    }
    config = Kosmos2Config(text_config=text, vision_config=_tiny_vision(), latent_query_num=QUERY_TOKENS)
    torch.manual_seed(0)
    model = Kosmos2ForConditionalGeneration(config).eval()
    inputs = _image_prompt([0, 90] + [IMAGE_TOKEN] * QUERY_TOKENS + [91, 10, 11, 12])
    slots = torch.tensor([[0, 0] + [1] * QUERY_TOKENS + [0, 0, 0, 0]] * 2).bool()
    return model, {**inputs, "image_embeds_position_mask": slots}
