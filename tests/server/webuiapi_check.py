"""Drives `pentimento serve` with webuiapi, the PyPI client for AUTOMATIC1111's API (written by
nobody here), on 127.0.0.1: txt2img, img2img with a mask, progress during a job, interrupt, the
model list and a switch, png-info. Images must equal what `pentimento generate` makes for the
same parameters, bit for bit.

    pip install webuiapi
    python tests/server/webuiapi_check.py target/debug/pentimento

Exit status 0 when every check holds; each failure is printed.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import webuiapi
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures")


def start(binary, models_dir, model, controlnet_dir):
    proc = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:0", "--model", model, "--model-dir", models_dir,
         "--controlnet-dir", controlnet_dir],
        stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    for line in proc.stderr:
        m = re.search(r"http://([0-9.]+):(\d+)", line)
        if m:
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            return proc, m.group(1), int(m.group(2))
        if time.time() > deadline:
            break
    proc.kill()
    raise SystemExit("the server did not start")


def generate(binary, out, *args):
    subprocess.run([binary, "generate", *args, "--out", out], check=True, capture_output=True)
    return Image.open(out).convert("RGB") if os.path.exists(out) else None


def main():
    binary = os.path.abspath(sys.argv[1])
    work = tempfile.mkdtemp(prefix="pentimento-webuiapi-")
    models = os.path.join(work, "models")
    os.makedirs(models)
    for f in ["tiny-sd15.safetensors", os.path.join("extra", "tiny-sd2.safetensors")]:
        shutil.copy(os.path.join(FIXTURES, f), models)
    model = os.path.join(models, "tiny-sd15.safetensors")
    controlnets = os.path.join(work, "ControlNet")
    os.makedirs(controlnets)
    controlnet = os.path.join(controlnets, "control_tiny_canny.safetensors")
    shutil.copy(os.path.join(FIXTURES, "extra", "controlnet", "tiny-cn-b.safetensors"), controlnet)
    proc, host, port = start(binary, models, model, controlnets)
    failures = []

    def check(what, ok):
        print(("ok   " if ok else "FAIL ") + what)
        if not ok:
            failures.append(what)

    try:
        api = webuiapi.WebUIApi(host=host, port=port, sampler="Euler a", steps=3)
        # txt2img: webuiapi sends its own defaults (eta 1, scheduler "automatic", …).
        r = api.txt2img(prompt="a heron", negative_prompt="blurry", seed=5, cfg_scale=6.5,
                        width=64, height=64, sampler_name="DPM++ 2M", scheduler="Karras",
                        steps=3, batch_size=2)
        check("txt2img returns two images", len(r.images) == 2)
        check("info lists the seeds", r.info.get("all_seeds") == [5, 6])
        # A batch of two writes cli-1.png and cli-2.png.
        generate(binary, os.path.join(work, "cli.png"), "--model", model,
                 "--prompt", "a heron", "--negative-prompt", "blurry", "--seed", "5",
                 "--steps", "3", "--cfg", "6.5", "--width", "64", "--height", "64",
                 "--sampler", "DPM++ 2M Karras", "--batch-size", "2")
        same = all(
            r.images[i].convert("RGB").tobytes()
            == Image.open(os.path.join(work, f"cli-{i + 1}.png")).convert("RGB").tobytes()
            for i in range(2))
        check("txt2img equals generate bit for bit", same)
        # img2img with a mask.
        image = Image.open(os.path.join(FIXTURES, "extra", "inpaint-96x128-image.png"))
        mask = Image.open(os.path.join(FIXTURES, "extra", "inpaint-96x128-mask.png"))
        r = api.img2img(images=[image], mask_image=mask, prompt="a boat", seed=9, steps=4,
                        cfg_scale=7.5, width=96, height=128, sampler_name="Euler",
                        mask_blur=4, inpainting_fill=1, inpaint_full_res=False,
                        denoising_strength=0.8)
        want = generate(binary, os.path.join(work, "cli-inpaint.png"), "--model", model,
                        "--prompt", "a boat", "--seed", "9", "--steps", "4", "--cfg", "7.5",
                        "--width", "96", "--height", "128", "--sampler", "Euler",
                        "--init-image", os.path.join(FIXTURES, "extra", "inpaint-96x128-image.png"),
                        "--mask", os.path.join(FIXTURES, "extra", "inpaint-96x128-mask.png"),
                        "--mask-blur", "4", "--masked-content", "original", "--strength", "0.8")
        check("img2img with a mask equals generate bit for bit",
              r.images[0].convert("RGB").tobytes() == want.tobytes())
        # Progress during a long job, then interrupt.
        done = {}
        t = threading.Thread(target=lambda: done.update(
            r=api.txt2img(prompt="x", seed=1, steps=150, width=256, height=256)))
        t.start()
        seen = None
        deadline = time.time() + 60
        while time.time() < deadline:
            p = api.get_progress()
            if p["state"]["sampling_step"] > 0:
                seen = p
                break
            time.sleep(0.05)
        check("progress reports the running job",
              seen is not None and seen["progress"] > 0 and seen["state"]["sampling_steps"] == 150)
        api.interrupt()
        t.join(60)
        check("interrupt ends the job", not t.is_alive() and done.get("r") is not None
              and len(done["r"].images) == 0)
        # A ControlNet unit as webuiapi sends it (alwayson_scripts.ControlNet).
        hint = os.path.join(FIXTURES, "tiny-sd15-img2img.3-image.png")
        unit = webuiapi.ControlNetUnit(image=Image.open(hint), module="canny",
                                       model="control_tiny_canny", weight=0.8, threshold_a=60,
                                       threshold_b=140, guidance_start=0.1, guidance_end=0.9,
                                       control_mode=2)
        r = api.txt2img(prompt="a castle", seed=9, steps=3, cfg_scale=7, width=64, height=64,
                        sampler_name="Euler", controlnet_units=[unit])
        want = generate(binary, os.path.join(work, "cli-controlnet.png"), "--model", model,
                        "--prompt", "a castle", "--seed", "9", "--steps", "3", "--cfg", "7",
                        "--width", "64", "--height", "64", "--sampler", "Euler", "--control",
                        f"canny=60,140:{controlnet}:{hint}:0.8:0.1:0.9:control")
        check("a ControlNet unit equals generate --control bit for bit",
              r.images[0].convert("RGB").tobytes() == want.tobytes())
        # Models: the list, a switch, the current one.
        names = api.util_get_model_names()
        check("sd-models lists both models",
              any(n.startswith("tiny-sd15") for n in names) and any(n.startswith("tiny-sd2") for n in names))
        api.util_set_model("tiny-sd2")
        check("util_set_model switches", api.util_get_current_model().startswith("tiny-sd2"))
        # png-info reads our PNG's parameters.
        png = Image.open(os.path.join(work, "cli-inpaint.png"))
        info = api.png_info(png)
        check("png-info reads the parameters", "Seed: 9" in str(info.info))
        check("samplers", "Euler a" in api.util_get_sampler_names())
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print(f"{len(failures)} checks failed")
        sys.exit(1)
    print("every check holds")


if __name__ == "__main__":
    main()
