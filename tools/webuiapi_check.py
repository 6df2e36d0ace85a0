#!/usr/bin/env python3
"""Checks that `webuiapi`, the usual AUTOMATIC1111 API client, works
unmodified against Easel's /sdapi/v1.

Usage: webuiapi_check.py BASE_URL MODEL

BASE_URL is the server's root (e.g. http://127.0.0.1:8080); the client is
pointed at BASE_URL/sdapi/v1 with `baseurl`, as a user would. MODEL is a
served model whose default size is 16x16 or more. The version is pinned in
CI (.ci/requirements.txt); the script prints the version it ran with.
Exits non-zero on any mismatch.
"""

import io
import sys
import threading
import time
from importlib import metadata

import webuiapi
from PIL import Image

PINNED = "0.9.17"


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def wait_until(predicate, what, api, timeout=60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        p = api.get_progress()
        if predicate(p):
            return p
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def in_background(fn):
    out = {}

    def run():
        try:
            out["result"] = fn()
        except Exception as e:  # noqa: BLE001 - reported below
            out["error"] = e

    t = threading.Thread(target=run)
    t.start()
    return t, out


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    base, model = sys.argv[1].rstrip("/"), sys.argv[2]
    version = metadata.version("webuiapi")
    print(f"webuiapi {version}")
    check(version == PINNED, f"expected webuiapi {PINNED}, found {version}")
    api = webuiapi.WebUIApi(baseurl=f"{base}/sdapi/v1", sampler="Euler a", steps=4)

    # Models, samplers, schedulers, options.
    # The web UI answers null (an error would come back as its JSON body).
    refreshed = api.refresh_checkpoints()
    check(refreshed is None, f"refresh-checkpoints answered {refreshed!r}")
    names = api.util_get_model_names()
    check(any(n.split(" [")[0] == model for n in names), f"{model} not in {names}")
    check("Euler a" in api.util_get_sampler_names(), "no Euler a")
    check("karras" in api.util_get_scheduler_names(), "no karras")
    api.util_set_model(model)
    current = api.util_get_current_model()
    check(current.split(" [")[0] == model, f"current model {current}")

    # txt2img: 2 iterations of 2 images, seeds 42..45, with their infotexts.
    r = api.txt2img(prompt="a red apple", negative_prompt="blurry", seed=42, width=16,
                    height=16, steps=4, cfg_scale=3.0, batch_size=2, n_iter=2)
    check(len(r.images) == 4, f"{len(r.images)} images")
    # Images smaller than the watermark's minimum side are delivered
    # upscaled by an integer factor (docs/watermark.md); `info` has the size made.
    check(all(im.size[0] == im.size[1] and im.size[0] % 16 == 0 for im in r.images),
          [im.size for im in r.images])
    check((r.info["width"], r.info["height"]) == (16, 16), r.info)
    check(r.info["all_seeds"] == [42, 43, 44, 45], r.info["all_seeds"])
    check(r.info["sampler_name"] == "Euler a", r.info["sampler_name"])
    check(r.info["sd_model_name"] == model, r.info["sd_model_name"])
    check(r.parameters["prompt"] == "a red apple", r.parameters)
    check("Seed: 43" in r.info["infotexts"][1], r.info["infotexts"][1])
    check(len(r.info["easel"]["image_ids"]) == 4, r.info["easel"])
    # The same seed again: the same pixels.
    again = api.txt2img(prompt="a red apple", negative_prompt="blurry", seed=42, width=16,
                        height=16, steps=4, cfg_scale=3.0, batch_size=2, n_iter=1)
    check(again.images[0].tobytes() == r.images[0].tobytes(), "seed 42 is not reproducible")

    # png-info reads the parameters every image carries.
    info = api.png_info(r.images[0])
    check("Steps: 4" in info.info and "Seed: 42" in info.info, info.info)
    check(info.parameters["Prompt"] == "a red apple", info.parameters)

    # img2img from the first image.
    i2i = api.img2img(images=[r.images[0]], prompt="cat face", denoising_strength=0.5,
                      seed=7, width=16, height=16, steps=4, cfg_scale=3.0)
    check(len(i2i.images) == 1 and i2i.images[0].size == r.images[0].size, "img2img image")
    check(i2i.info["denoising_strength"] == 0.5, i2i.info)
    check(i2i.parameters["init_images"] is None, "the upload is echoed back")

    # Inpainting: only the mask's white (left) half is redrawn.
    # At the size generated (delivered images are upscaled for the
    # watermark), so the server does not resample it.
    source = r.images[0].convert("RGB").resize((16, 16), Image.NEAREST)
    w, h = source.size
    mask = Image.new("L", (w, h), 0)
    mask.paste(255, (0, 0, w // 2, h))
    inp = api.img2img(images=[source], mask_image=mask, prompt="a bright yellow sun",
                      denoising_strength=1.0, seed=9, width=16, height=16, steps=4,
                      cfg_scale=3.0, inpainting_fill=1, inpaint_full_res=False, mask_blur=0)
    out = inp.images[0].convert("RGB")
    a, b = source.resize((16, 16), Image.NEAREST), out.resize((16, 16), Image.NEAREST)

    def mean_diff(x0, x1):
        d = [abs(p - q) for x in range(x0, x1) for y in range(16)
             for p, q in zip(a.getpixel((x, y)), b.getpixel((x, y)))]
        return sum(d) / len(d)

    kept, redrawn = mean_diff(8, 16), mean_diff(0, 8)
    print(f"inpainting: kept half differs by {kept:.2f}, redrawn half by {redrawn:.2f}")
    check(kept < 3.0, f"the kept half changed by {kept:.2f}")
    check(redrawn > 3 * max(kept, 1.0), f"the masked half barely changed ({redrawn:.2f})")
    check(inp.parameters["mask"] is None, "the mask is echoed back")
    # The web UI API's default, "only masked" (inpaint_full_res=True):
    # a 48x48 picture with a 12x12 mask in a corner; only the region
    # around the mask is generated (at 16x16) and pasted back, and the
    # output keeps the picture's size (delivered enlarged for the
    # watermark, by a whole factor).
    big = source.resize((48, 48), Image.NEAREST)
    corner = Image.new("L", (48, 48), 0)
    corner.paste(255, (0, 0, 12, 12))
    only = api.img2img(images=[big], mask_image=corner, prompt="a bright yellow sun",
                       denoising_strength=1.0, seed=9, width=16, height=16, steps=4,
                       cfg_scale=3.0, inpainting_fill=1, mask_blur=0)
    got = only.images[0].convert("RGB")
    check(got.size[0] % 48 == 0 and got.size[0] == got.size[1], f"only masked: size {got.size}")
    got = got.resize((48, 48), Image.NEAREST)

    def diff48(box):
        x0, y0, x1, y1 = box
        d = [abs(p - q) for x in range(x0, x1) for y in range(y0, y1)
             for p, q in zip(big.getpixel((x, y)), got.getpixel((x, y)))]
        return sum(d) / len(d)

    inside, outside = diff48((0, 0, 12, 12)), diff48((12, 12, 48, 48))
    print(f"only masked: outside the mask differs by {outside:.2f}, inside by {inside:.2f}")
    check(outside < 3.0, f"only masked changed the rest of the picture by {outside:.2f}")
    check(inside > 3 * max(outside, 1.0), f"only masked barely changed the mask ({inside:.2f})")

    # An unsupported feature is a 400 naming it, not a silent no-op.
    try:
        api.txt2img(prompt="x", width=16, height=16, enable_hr=True)
        raise AssertionError("enable_hr=True was accepted")
    except RuntimeError as e:
        check(e.args[0] == 400 and "enable_hr" in e.args[1], e.args)

    # Progress with live previews, then interrupt: a long task (16 jobs of
    # 150 steps) stops after its current job.
    long = dict(prompt="a slow one", seed=1, width=16, height=16, steps=150, cfg_scale=3.0,
                batch_size=1, n_iter=16)
    t, out = in_background(lambda: api.txt2img(**long))
    p = wait_until(lambda p: p["state"]["sampling_step"] > 2 and p["current_image"], "a preview", api)
    check(p["state"]["job_count"] == 16 and 0.0 < p["progress"] < 1.0, p["state"])
    Image.open(io.BytesIO(__import__("base64").b64decode(p["current_image"]))).load()
    api.interrupt()
    t.join(120)
    check("error" not in out, out.get("error"))
    done = out["result"]
    check(done.info["easel"]["interrupted"] is True, done.info["easel"])
    check(len(done.images) < 16, f"{len(done.images)} images after interrupt")

    # Skip: the current job is dropped, the next ones run.
    t, out = in_background(lambda: api.txt2img(**dict(long, n_iter=3)))
    wait_until(lambda p: p["state"]["job_no"] == 0 and p["state"]["sampling_step"] > 2, "job 0", api)
    api.skip()
    t.join(120)
    check("error" not in out, out.get("error"))
    skipped = out["result"]
    check(len(skipped.images) == 2, f"{len(skipped.images)} images after a skip")
    check(len(skipped.info["easel"]["job_ids"]) == 3, skipped.info["easel"])

    # Idle again.
    api.util_wait_for_ready(check_interval=0.05)
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
