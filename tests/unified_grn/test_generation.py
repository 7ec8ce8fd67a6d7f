"""model.generate on GRN-tiny: seeds, cache / CFG-batch equivalence, tasks, outputs, golden slice, bad input.

Golden slice: ``tests/unified_grn/golden/generate_tiny.json`` holds the codes and a pixel slice of
one fixed GRN-tiny run. After an intended change of the sampler's numbers, rewrite it with

    UNIFIED_GRN_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/unified_grn/test_generation.py -k golden

and say why in the commit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_models import build_tiny_grn

from tokenizers_visual.modeling_hbq import HBQCodes
from unified_grn.generation import GRNVideo
from unified_grn.generation_utils import resolve_visual_settings
from unified_grn.processing_grn import load_video
from unified_grn.refinement import RefinementConfig

GOLDEN = Path(__file__).parent / "golden" / "generate_tiny.json"
SMALL = dict(height=16, width=16, progress_bar=False)  # latent grid (1, 2, 2)


def tiny(variant: str = "bit", seed: int = 0):
    """GRN-tiny with fixed weights and a fixed (untrained) hbq-tiny visual tokenizer."""
    return build_tiny_grn(variant, seed)


@pytest.fixture(scope="module")
def model():
    return tiny()


def codes_of(out) -> torch.Tensor:
    return out.codes.bits


# ----------------------------------------------------------------------------- seeds
def test_seeded_generation_is_deterministic(model):
    a = model.generate("a red circle", num_steps=4, seed=3, output_type="codes", **SMALL)
    b = model.generate("a red circle", num_steps=4, seed=3, output_type="codes", **SMALL)
    c = model.generate("a red circle", num_steps=4, seed=4, output_type="codes", **SMALL)
    assert torch.equal(codes_of(a), codes_of(b))
    assert not torch.equal(codes_of(a), codes_of(c))


@pytest.mark.parametrize("variant", ["bit", "ind"])
def test_batch_with_per_sample_seeds_equals_one_by_one(variant):
    model = tiny(variant)
    prompts = ["two blue squares on the left", "", 3]  # different lengths, unconditional, class token
    # Explicit guidance and temperature: a lone class label would otherwise get the C2I defaults.
    kw = dict(num_steps=4, guidance_scale=3.0, temperature=1.1, guidance_interval=(0.3, 1.0))
    kw.update(output_type="codes", **SMALL)
    seeds = [11, 12, 13, 14, 15, 16]
    batch = model.generate(prompts, seed=seeds, num_images_per_prompt=2, **kw)
    for i, seed in enumerate(seeds):
        one = model.generate(prompts[i // 2], seed=[seed], **kw)
        assert torch.equal(codes_of(batch)[i], codes_of(one)[0]), f"sample {i}"
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    by_gen = model.generate(prompts, generator=gens, num_images_per_prompt=2, **kw)
    assert torch.equal(codes_of(by_gen), codes_of(batch))
    offset = model.generate(prompts, seed=11, num_images_per_prompt=2, **kw)  # sample i gets 11 + i
    assert torch.equal(codes_of(offset), codes_of(batch))


# ----------------------------------------------------------------------------- equivalent paths
def test_prefix_cache_and_batched_cfg_give_the_same_codes(model):
    prompts = ["a green triangle", "hi"]
    kw = dict(num_steps=5, guidance_scale=2.0, guidance_interval=(0.2, 1.0), seed=[5, 6], output_type="codes")
    ref = model.generate(prompts, **kw, **SMALL)
    no_cache = model.generate(prompts, use_prefix_cache=False, **kw, **SMALL)
    two_pass = model.generate(prompts, cfg_batched=False, **kw, **SMALL)
    assert torch.equal(codes_of(ref), codes_of(no_cache))
    assert torch.equal(codes_of(ref), codes_of(two_pass))
    torch.testing.assert_close(ref.stats.entropy, two_pass.stats.entropy, atol=1e-5, rtol=1e-5)


def test_prompt_is_encoded_once_and_cond_uncond_share_one_call(model, monkeypatch):
    calls = {"encode": 0, "block": 0}
    encode, block = model.encode_prompt, model.visual_logits_from_cache

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(model, "encode_prompt", counted("encode", encode))
    monkeypatch.setattr(model, "visual_logits_from_cache", counted("block", block))
    model.generate(["red", "blue"], num_steps=4, guidance_scale=2.0, seed=0, output_type="codes", **SMALL)
    assert calls == {"encode": 1, "block": 4}
    calls.update(encode=0, block=0)
    model.generate(["red"], num_steps=4, guidance_scale=2.0, seed=0, use_prefix_cache=False, **SMALL)
    assert calls == {"encode": 4, "block": 4}


# ----------------------------------------------------------------------------- schedules and tasks
def test_entropy_schedule_keeps_steps_within_bounds(model):
    out = model.generate(
        ["a", "a much longer prompt"], schedule="entropy", num_steps=7, min_steps=4, seed=0,
        refinement_config=RefinementConfig(warmup_steps=2), output_type="codes", **SMALL,
    )  # fmt: skip
    assert ((out.stats.steps_used >= 4) & (out.stats.steps_used <= 7)).all()
    assert not out.stats.decision_entropy.isnan().any()
    fast = model.generate(
        "a", schedule="entropy", max_steps=7, min_steps=4, seed=0, output_type="codes",
        refinement_config=RefinementConfig(warmup_steps=2, entropy_k=0.0, entropy_b=-100.0), **SMALL,
    )  # fmt: skip
    assert fast.stats.steps_used.tolist() == [4]  # k H + b clipped to T_min


def test_task_defaults_checkpoint_values_and_explicit_arguments():
    model = tiny()

    def resolved(modality="image", prompts=("x",), image=None, **args):
        base = dict(height=None, width=None, num_frames=None, num_steps=None, max_steps=None, min_steps=None)
        base.update(guidance_scale=None, guidance_interval=None, temperature=None, schedule=None)
        base.update(selection=None, refine_mode=None, refinement_config=None)
        return resolve_visual_settings(model, modality, list(prompts), image, "pil", {**base, **args})

    def triple(s):
        return s.refinement.guidance_scale, s.refinement.temperature, s.refinement.guidance_interval

    assert triple(resolved()) == (3.0, 1.1, (0.0, 1.0))  # T2I
    assert triple(resolved("video")) == (4.0, 1.0, (0.0, 1.0))  # T2V
    c2i = resolved(prompts=(3, 4))
    assert c2i.task == "c2i" and triple(c2i) == (2.35, 1.31, (0.44, 1.0))
    assert resolved("video").num_frames == 9 and resolved().refinement.num_steps == 50
    model.generation_config.temperature = 0.7  # the checkpoint's own choice beats the task default
    assert triple(resolved()) == (3.0, 0.7, (0.0, 1.0))
    assert triple(resolved(temperature=0.9, guidance_scale=1.5)) == (1.5, 0.9, (0.0, 1.0))


def test_class_to_image_uses_the_cfg_interval():
    model = tiny()
    out = model.generate(class_label=[1, 7], num_steps=6, seed=0, output_type="np", **SMALL)
    assert out.images.shape == (2, 16, 16, 3) and out.images.dtype == np.uint8
    on = out.stats.guidance[0].tolist()  # nominal kept fraction of the input must pass 0.44 first
    assert on[0] is False and on[-1] is True
    cls = model.generate(class_label=1, num_steps=6, seed=0, output_type="codes", **SMALL)
    other = model.generate(class_label=2, num_steps=6, seed=0, output_type="codes", **SMALL)
    assert torch.equal(codes_of(cls)[0], codes_of(out)[0])
    assert not torch.equal(codes_of(cls), codes_of(other))


def test_image_to_video_keeps_the_first_frame(model):
    g = torch.Generator().manual_seed(0)
    first = HBQCodes.from_bits(torch.randint(0, 2, (1, 1, 2, 2, 16, 4), generator=g, dtype=torch.uint8))
    out = model.generate(
        ["moving right", "moving up"], "video", image=first, num_frames=9, num_steps=4, seed=1,
        output_type="codes", **SMALL,
    )  # fmt: skip
    assert out.codes.grid == (3, 2, 2)
    assert torch.equal(codes_of(out)[:, :1], first.bits.expand(2, -1, -1, -1, -1, -1))
    pil = Image.new("RGB", (20, 16), (200, 30, 30))  # resized / cropped to 16x16 by the processor
    video = model.generate("moving right", "video", image=pil, num_frames=5, num_steps=3, seed=1, **SMALL)
    pixels = model.processor.preprocess_images(pil, 16, 16)
    assert torch.equal(video.codes.bits[:, :1], model.visual_tokenizer.encode(pixels).bits)


def test_video_output_saves_to_mp4_and_gif(model, tmp_path):
    out = model.generate("a square moving left", "video", num_frames=5, num_steps=3, seed=0, **SMALL)
    (video,) = out.videos
    assert isinstance(video, GRNVideo) and len(video) == 5 and video[0].size == (16, 16)
    assert video.numpy().shape == (5, 16, 16, 3)
    for name in ("clip.mp4", "clip.gif"):
        path = video.save(tmp_path / name)
        assert load_video(path).shape == (5, 16, 16, 3)


def test_output_types(model):
    kw = dict(num_steps=3, seed=0, **SMALL)
    pil = model.generate(["a", "b"], **kw)
    assert len(pil.images) == 2 and all(isinstance(im, Image.Image) for im in pil.images)
    pt = model.generate(["a", "b"], output_type="pt", **kw)
    assert pt.images.shape == (2, 3, 16, 16) and 0.0 <= pt.images.min() and pt.images.max() <= 1.0
    np_ = model.generate(["a", "b"], output_type="np", **kw)
    assert np.array_equal(np_.images[0], np.asarray(pil.images[0]))
    codes = model.generate(["a", "b"], output_type="codes", **kw)
    assert codes.images is None and codes.videos is None and torch.equal(codes_of(codes), codes_of(pil))
    vid = model.generate("a", "video", num_frames=5, output_type="np", **kw)
    assert vid.videos.shape == (1, 5, 16, 16, 3) and vid.images is None


def test_empty_prompt_string_is_unconditional(model):
    a = model.generate("", num_steps=3, seed=2, output_type="codes", **SMALL)
    b = model.generate(None, num_steps=3, seed=2, output_type="codes", **SMALL)
    assert torch.equal(codes_of(a), codes_of(b))


def test_ablation_modes_pass_through_to_the_sampler(model):
    kw = dict(num_steps=4, seed=0, output_type="codes", selection="confidence", refine_mode="mask", **SMALL)
    a, b = model.generate("a", **kw), model.generate("a", **kw)
    assert torch.equal(codes_of(a), codes_of(b))
    kept = a.stats.kept_fraction[0]
    assert (kept[1:] >= kept[:-1]).all() and kept[-1] == 1.0


def test_progress_bar_goes_to_stderr_and_nothing_is_printed(model, capfd):
    model.generate("a", num_steps=2, seed=0, output_type="codes", **SMALL)  # progress_bar=False
    assert capfd.readouterr() == ("", "")
    model.generate("a", num_steps=2, seed=0, output_type="codes", **{**SMALL, "progress_bar": True})
    out, err = capfd.readouterr()
    assert out == "" and "GRN refinement" in err


# ----------------------------------------------------------------------------- text
def test_text_generation_returns_strings_and_only_text_ids(monkeypatch):
    model = tiny()
    vocab = model.vocab

    def favour_padding_rows(module, args, output):  # make the padded (non-text) rows the likeliest
        output[..., vocab.num_text_ids :] += 1e4
        return output

    model.lm_head.register_forward_hook(favour_padding_rows)
    greedy = model.generate(["hello", "a longer prompt"], "text", max_new_tokens=6, do_sample=False)
    assert all(isinstance(t, str) for t in greedy.text) and len(greedy.text) == 2
    assert greedy.sequences.shape[1] <= 6 and int(greedy.sequences.max()) < vocab.num_text_ids
    sampled = model.generate(["hello", "hi"], "text", max_new_tokens=6, seed=[1, 2])
    again = model.generate("hi", "text", max_new_tokens=6, seed=[2])
    assert int(sampled.sequences.max()) < vocab.num_text_ids
    assert sampled.text[1] == again.text[0]  # per-sample seeds: batch == one by one


# ----------------------------------------------------------------------------- golden slice
def test_golden_slice():
    """Fixed weights, seed and settings; codes must match exactly and pixels to 1e-3 (decoder float math)."""
    model = tiny()
    out = model.generate(
        ["a red circle above a blue square", 2], num_steps=5, seed=1234, guidance_interval=(0.2, 1.0),
        output_type="pt", **{**SMALL, "height": 24, "width": 16},
    )  # fmt: skip
    got = {
        "indices": out.codes.indices[:, 0, :, :, :4].flatten().tolist(),  # (2, 3, 2, 4) of (2, 1, 3, 2, 16)
        "pixels": out.images[:, 0, 8:11, 5:8].flatten().tolist(),  # (2, 3, 3) of (2, 3, 24, 16)
        "entropy": out.stats.entropy[0].tolist(),
    }
    if os.environ.get("UNIFIED_GRN_REGEN_GOLDEN") == "1":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        lines = ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in got.items())
        GOLDEN.write_text("{\n" + lines + "\n}\n")
        pytest.skip(f"regenerated {GOLDEN}")
    want = json.loads(GOLDEN.read_text())
    assert got["indices"] == want["indices"]
    np.testing.assert_allclose(got["pixels"], want["pixels"], atol=1e-3)
    np.testing.assert_allclose(got["entropy"], want["entropy"], atol=1e-4)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(modality="audio"), r"Unknown modality 'audio'; expected one of \('image', 'video', 'text'\)"),
        (dict(height=20), r"nearest valid heights: 16 or 24"),
        (dict(height=0), r"height must be a positive multiple"),
        (dict(width=30), r"nearest valid widths: 24 or 32"),
        (dict(modality="video", num_frames=6), r"nearest valid counts: 5 or 9"),
        (dict(num_frames=5), r"needs modality='video'"),
        (dict(height=64), r"max_latent_grid"),
        (dict(guidance_interval=(0.5, 1.2)), r"0 <= lo <= hi <= 1"),
        (dict(guidance_interval=(0.8, 0.2)), r"0 <= lo <= hi <= 1"),
        (dict(num_steps=0), r"num_steps must be an int >= 1"),
        (dict(schedule="entropy", num_steps=10), r"min_steps \(T_min=20\) must not exceed"),
        (dict(output_type="jpeg"), r"output_type 'jpeg'"),
        (dict(seed=1, generator=torch.Generator()), r"either seed= or generator="),
        (dict(seed=[1, 2]), r"one per sample"),
        (dict(image=Image.new("RGB", (16, 16))), r"use modality='video'"),
        (dict(modality="video", image="frame.png"), r"image must be a PIL image"),
        (dict(modality="video", image=torch.zeros(1, 3, 5, 16, 16)), r"image must be a PIL image"),
        (dict(modality="video", image=Image.new("RGB", (16, 16)), num_frames=1), r"num_frames > 1"),
        (dict(prompt=[]), r"empty list"),
        (dict(prompt=1.5), r"prompt must be"),
        (dict(prompt="x", class_label=3), r"either prompt= or class_label="),
    ],
)
def test_bad_input_gives_clear_errors(model, kwargs, message):
    kwargs = {"prompt": "x", "num_steps": 2, **SMALL, **kwargs}
    with pytest.raises(ValueError, match=message):
        model.generate(**kwargs)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(num_inference_steps=2), r"\['num_inference_steps'\] \(did you mean 'num_inference_steps' -> 'num_steps'\?\)"),
        (dict(guidance=2.0), r"did you mean 'guidance' -> 'guidance_scale'"),
        (dict(cfg=2.0, num_samples=2), r"'cfg' -> 'guidance_scale', 'num_samples' -> 'num_images_per_prompt'"),
        (dict(top_k=5), r"unexpected arguments \['top_k'\]; it takes: prompt, modality, height"),
    ],
)  # fmt: skip
def test_unknown_visual_arguments_name_the_intended_one(model, kwargs, message):
    with pytest.raises(TypeError, match=message) as info:
        model.generate("x", num_steps=2, **SMALL, **kwargs)
    # the valid list is the signature's visual arguments: no text-only or internal names
    valid = str(info.value).split("it takes: ")[1]
    assert "num_steps" in valid and "max_new_tokens" not in valid and "text_kwargs" not in valid
