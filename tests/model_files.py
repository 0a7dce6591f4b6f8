"""Model files a team would bring, built in the test: torchvision state dicts and transformers folders.

Random weights throughout: nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch

from dataengine.vision import build_detector


def torchvision_state_dict(path: Path, *, arch: str, num_classes: int, seed: int = 0) -> Path:
    """``torch.save(model.state_dict())`` of ``arch`` with ``num_classes`` classes (background excluded)."""
    torch.manual_seed(seed)
    model = build_detector(arch, num_classes=num_classes, min_size=192, max_size=256)
    torch.save(model.state_dict(), path)
    return path


def tiny_owlv2_folder(folder: Path, *, seed: int = 0) -> Path:
    """A tiny, randomly initialised OWLv2 with its processor, written by ``save_pretrained``."""
    from transformers import (
        CLIPTokenizer,
        Owlv2Config,
        Owlv2ForObjectDetection,
        Owlv2ImageProcessor,
        Owlv2Processor,
    )

    vocab = _byte_vocab()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    special = {"bos_token_id": vocab["<|startoftext|>"], "eos_token_id": vocab["<|endoftext|>"]}
    config = Owlv2Config(
        text_config={
            "vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1,
            "num_attention_heads": 4, "max_position_embeddings": 16, "pad_token_id": special["eos_token_id"],
            **special,
        },
        vision_config={
            "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1, "num_attention_heads": 4,
            "image_size": 64, "patch_size": 16,
        },
        projection_dim=32,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = Owlv2ForObjectDetection(config)
    processor = Owlv2Processor(  # type: ignore[no-untyped-call]
        image_processor=Owlv2ImageProcessor(size={"height": 64, "width": 64}), tokenizer=tokenizer
    )
    processor.tokenizer.model_max_length = 16
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def tiny_grounding_dino_folder(folder: Path, *, seed: int = 0) -> Path:
    """A tiny, randomly initialised Grounding DINO (Swin + BERT) with its processor."""
    from transformers import (
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
    )

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "a", "person", "bed", "wheel", "##chair"]
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(words)})
    config = GroundingDinoConfig(
        backbone_config={
            "model_type": "swin", "embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1],
            "window_size": 4, "image_size": 64, "out_features": ["stage2", "stage3", "stage4"],
        },
        text_config={
            "model_type": "bert", "vocab_size": len(words), "hidden_size": 32, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 37, "max_position_embeddings": 64,
        },
        d_model=32, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=37, decoder_ffn_dim=37, num_queries=20, num_feature_levels=3, encoder_n_points=2,
        decoder_n_points=2, max_text_len=32,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = GroundingDinoForObjectDetection(config)
    image_processor = GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 96})
    model.save_pretrained(folder)
    processor = GroundingDinoProcessor(  # type: ignore[no-untyped-call]
        image_processor=image_processor, tokenizer=tokenizer
    )
    processor.save_pretrained(folder)
    return folder


def _byte_vocab() -> dict[str, int]:
    """CLIP's byte-level alphabet, each symbol alone and word-final, plus the two specials: no merges."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())  # type: ignore[no-untyped-call]
    tokens = [*symbols, *(s + "</w>" for s in symbols), "<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(tokens)}
