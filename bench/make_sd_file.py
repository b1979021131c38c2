"""Writes a full-size SD 1.5 (or 2.1) single file with random weights, in the original (LDM)
layout AUTOMATIC1111 users keep, fp16 by default: the file `pentimento bench --model` and
`bench/compare_sdcpp.sh`-style side-by-side runs load, where no real checkpoint can be downloaded.
The architectures are assets/bench's JSON configs.

    python bench/make_sd_file.py OUT.safetensors [--arch sd15|sd21] [--dtype f16|f32]
"""
import argparse
import json
import os
import sys
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "fixtures" / "extra"))
from make_extra import clip_to_openclip, inner, unet_to_ldm, vae_to_ldm  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--arch", choices=["sd15", "sd21"], default="sd15")
    ap.add_argument("--dtype", choices=["f16", "f32"], default="f16")
    a = ap.parse_args()
    torch.manual_seed(0)
    load = lambda name: json.loads((ROOT / "assets" / "bench" / name).read_text())
    unet = UNet2DConditionModel.from_config(load(f"{a.arch}-unet.json")).eval()
    vae = AutoencoderKL.from_config(load("vae.json")).eval()
    text_cfg = {k: v for k, v in load(f"{a.arch}-text_encoder.json").items() if k != "architectures"}
    text = CLIPTextModel(CLIPTextConfig(**text_cfg)).eval()
    ckpt = {}
    ckpt.update(unet_to_ldm(unet.state_dict(), unet.config))
    ckpt.update(vae_to_ldm(vae.state_dict(), len(vae.config.block_out_channels)))
    if a.arch == "sd15":
        prefix = "cond_stage_model.transformer.text_model."
        for k, v in inner(text).state_dict().items():
            ckpt[prefix + k] = v
    else:
        extra_layer = inner(CLIPTextModel(CLIPTextConfig(**text_cfg))).encoder.layers[0]
        ckpt.update(clip_to_openclip(text, extra_layer))
    dtype = torch.float16 if a.dtype == "f16" else torch.float32
    ckpt = {k: v.detach().to(dtype).contiguous() for k, v in ckpt.items()}
    save_file(ckpt, a.out)
    print(f"{a.out}: {os.path.getsize(a.out) / 2**30:.2f} GiB, {len(ckpt)} tensors")


if __name__ == "__main__":
    main()
