#!/usr/bin/env python3
"""The side-by-side baseline for `pentimento bench`.

Runs `pentimento bench --json` first, then builds the same networks (the configs in
assets/bench) with random weights in diffusers / PyTorch and times the same figures, with the
same shapes, dtype and device, in the same run; prints both and the ratio pentimento / PyTorch
(below 1: pentimento is faster).
"""

import argparse
import json
import pathlib
import resource
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "assets" / "bench"
PROMPT = "a photograph of an astronaut riding a horse, highly detailed"
NEGATIVE = "blurry, low quality"
FIGURES = [
    "text-encode",
    "unet-step",
    "vae-decode",
    "vae-encode",
    "taesd-decode",
    "txt2img",
]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--pentimento", default=str(ROOT / "target" / "release" / "pentimento"))
    p.add_argument("--arch", choices=["sd15", "sd21"], default="sd15")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--dtype", choices=["f32", "f16"], default=None)
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--only", default=",".join(FIGURES))
    p.add_argument("--skip-pentimento", action="store_true", help="time PyTorch only")
    p.add_argument("--json-out", help="write both reports and the ratios here")
    return p.parse_args()


def run_pentimento(a, only):
    cmd = [
        a.pentimento, "bench", "--json", "--arch", a.arch, "--device", a.device,
        "--iters", str(a.iters), "--steps", str(a.steps), "--only", ",".join(only),
    ]
    if a.dtype:
        cmd += ["--dtype", a.dtype]
    if a.size:
        cmd += ["--size", str(a.size)]
    print("running:", " ".join(cmd), file=sys.stderr)
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE)
    return json.loads(out.stdout)


def torch_baseline(a, only):
    import torch
    from diffusers import (AutoencoderKL, AutoencoderTiny, EulerDiscreteScheduler,
                           StableDiffusionPipeline, UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizerFast

    device = torch.device(a.device)
    dtype = {"f32": torch.float32, "f16": torch.float16}[a.dtype or ("f32" if a.device == "cpu" else "f16")]
    size = a.size or (512 if a.arch == "sd15" else 768)
    load = lambda name: json.loads((CONFIGS / name).read_text())

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def timed(fn, iters, warm_up=True):
        if warm_up:
            fn()
            sync()
        runs = []
        for _ in range(max(1, iters)):
            t = time.perf_counter()
            fn()
            sync()
            runs.append(time.perf_counter() - t)
        return runs

    print(f"building {a.arch} in diffusers with random weights", file=sys.stderr)
    unet = UNet2DConditionModel.from_config(load(f"{a.arch}-unet.json")).to(device, dtype).eval()
    vae = AutoencoderKL.from_config(load("vae.json")).to(device, dtype).eval()
    text_cfg = {k: v for k, v in load(f"{a.arch}-text_encoder.json").items() if k != "architectures"}
    text = CLIPTextModel(CLIPTextConfig(**text_cfg)).to(device, dtype).eval()
    tokenizer = CLIPTokenizerFast(
        tokenizer_file=str(ROOT / "assets" / "clip-tokenizer.json"),
        bos_token="<|startoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>",
        pad_token="<|endoftext|>" if a.arch == "sd15" else "!", model_max_length=77,
    )
    weights = sum(p.numel() * p.element_size() for m in (unet, vae, text) for p in m.parameters())
    latent = size // 8
    gen = torch.Generator().manual_seed(1)
    timings = {}
    with torch.inference_mode():
        def encode():
            ids = [tokenizer(t, padding="max_length", max_length=77, truncation=True,
                             return_tensors="pt").input_ids.to(device) for t in (NEGATIVE, PROMPT)]
            return torch.cat([text(i)[0] for i in ids])

        context = encode()
        if "text-encode" in only:
            timings["text-encode"] = timed(encode, a.iters)
        if "unet-step" in only:
            x = torch.randn(1, 4, latent, latent, generator=gen).to(device, dtype)
            t = torch.full((2,), 500.0, device=device)

            def step():
                out = unet(torch.cat([x, x]), t, encoder_hidden_states=context).sample
                u, c = out.chunk(2)
                return u + 7.5 * (c - u)

            timings["unet-step"] = timed(step, a.iters)
        if "vae-decode" in only:
            z = torch.randn(1, 4, latent, latent, generator=gen).to(device, dtype)
            timings["vae-decode"] = timed(lambda: vae.decode(z).sample, a.iters)
        if "vae-encode" in only:
            img = torch.randn(1, 3, size, size, generator=gen).clamp(-1, 1).to(device, dtype)
            timings["vae-encode"] = timed(lambda: vae.encode(img).latent_dist.mean, a.iters)
        if "taesd-decode" in only:
            taesd = AutoencoderTiny().to(device, torch.float32).eval()
            z = torch.randn(1, 4, latent, latent, generator=gen).to(device)
            timings["taesd-decode"] = timed(lambda: taesd.decode(z).sample, a.iters)
        if "txt2img" in only:
            pipe = StableDiffusionPipeline(
                vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet,
                scheduler=EulerDiscreteScheduler(prediction_type="epsilon" if a.arch == "sd15" else "v_prediction"),
                safety_checker=None, feature_extractor=None, requires_safety_checker=False,
            )
            pipe.set_progress_bar_config(disable=True)
            run = lambda: pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=a.steps,
                               height=size, width=size, guidance_scale=7.5, output_type="np")
            timings["txt2img"] = timed(run, 1, warm_up=False)
    peak = (torch.cuda.max_memory_allocated() if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {
        "torch": torch.__version__, "threads": torch.get_num_threads(), "size": size,
        "dtype": str(dtype).replace("torch.", ""), "weights_bytes": weights, "peak_bytes": peak,
        "timings": {k: {"median_seconds": statistics.median(v), "runs": v} for k, v in timings.items()},
    }


def main():
    a = parse_args()
    only = [f for f in a.only.split(",") if f]
    unknown = set(only) - set(FIGURES)
    if unknown:
        sys.exit(f"unknown figures: {', '.join(sorted(unknown))}")
    ours = None if a.skip_pentimento else run_pentimento(a, only)
    theirs = torch_baseline(a, only)
    print(f"\n{a.arch} {theirs['size']}x{theirs['size']} {a.device} {theirs['dtype']}, "
          f"PyTorch {theirs['torch']} ({theirs['threads']} threads)")
    print(f"{'figure':14} {'pentimento':>12} {'PyTorch':>12} {'ratio':>7}")
    ratios = {}
    for f in only:
        t = theirs["timings"].get(f, {}).get("median_seconds")
        o = None
        if ours:
            o = next((x["median_seconds"] for x in ours["timings"] if x["figure"] == f), None)
        r = o / t if (o and t) else None
        ratios[f] = r
        fmt = lambda v: f"{v:12.3f}" if v is not None else f"{'-':>12}"
        print(f"{f:14} {fmt(o)} {fmt(t)} {('%7.2f' % r) if r else '      -'}")
    gib = lambda b: f"{b / 2**30:.2f} GiB" if b else "-"
    print(f"peak memory: pentimento {gib(ours and ours.get('peak_rss_bytes'))}, "
          f"PyTorch {gib(theirs['peak_bytes'])}")
    if a.json_out:
        pathlib.Path(a.json_out).write_text(json.dumps(
            {"pentimento": ours, "pytorch": theirs, "ratios": ratios}, indent=2))


if __name__ == "__main__":
    main()
