#!/usr/bin/env python3
"""Checks that the official OpenAI Python SDK works unmodified against Easel.

Usage: openai_sdk_check.py BASE_URL MODEL

BASE_URL is the server's root (e.g. http://127.0.0.1:8080); the SDK is
pointed at BASE_URL/v1 with `base_url`, as a user would. The API key comes
from EASEL_API_KEY (any string when the server runs without keys).

The SDK version is pinned in CI (.ci/run installs openai==PINNED_OPENAI);
the script prints the version it ran with. Exits non-zero on any mismatch.
"""

import base64
import json
import os
import sys
import time
import urllib.request

import openai
from openai import OpenAI

# The version CI installs and this script was written against.
PINNED_OPENAI = "3.57.0"

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    base_url, model = sys.argv[1].rstrip("/"), sys.argv[2]
    client = OpenAI(
        base_url=f"{base_url}/v1",
        api_key=os.environ.get("EASEL_API_KEY", "not-needed-on-loopback"),
        max_retries=0,
        timeout=300,
    )

    # 1. b64_json, two images; Easel's extensions ride in extra_body.
    r = client.images.generate(
        model=model,
        prompt="a red apple on a table",
        n=2,
        size="16x16",
        response_format="b64_json",
        extra_body={"steps": 2, "seed": 11},
    )
    check(r.created > 0, f"created: {r.created}")
    check(r.data is not None and len(r.data) == 2, f"two images expected: {r}")
    first = base64.b64decode(r.data[0].b64_json)
    check(first.startswith(PNG_MAGIC), "b64_json decodes to a PNG")
    check(r.data[0].url is None, "no url with b64_json")

    # 2. url: a signed link the SDK user fetches with any HTTP client.
    r = client.images.generate(
        model=model,
        prompt="a blue bird",
        size="16x16",
        response_format="url",
        extra_body={"steps": 2},
    )
    url = r.data[0].url
    check(url and "sig=" in url, f"a signed url expected: {url}")
    with urllib.request.urlopen(url) as resp:
        check(resp.status == 200, f"GET url: {resp.status}")
        check(resp.read().startswith(PNG_MAGIC), "url serves a PNG")

    # 3. edits: multipart upload of the first image.
    r = client.images.edit(
        model=model,
        image=("input.png", first, "image/png"),
        prompt="the same apple, but green",
        size="16x16",
        response_format="b64_json",
    )
    check(base64.b64decode(r.data[0].b64_json).startswith(PNG_MAGIC), "edit returns a PNG")

    # 3b. a masked edit: only the mask's transparent (left) half is redrawn.
    from PIL import Image
    import io

    def png(img):
        out = io.BytesIO()
        img.save(out, format="PNG")
        return out.getvalue()

    # At the size generated (delivered images are upscaled for the
    # watermark), so the server does not resample it.
    source = Image.open(io.BytesIO(first)).convert("RGB").resize((16, 16), Image.NEAREST)
    mask = Image.new("RGBA", source.size, (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, source.size[0] // 2, source.size[1]))
    r = client.images.edit(
        model=model,
        image=("input.png", png(source), "image/png"),
        mask=("mask.png", png(mask), "image/png"),
        prompt="a bright yellow sun",
        size="16x16",
        response_format="b64_json",
        extra_body={"strength": 1.0, "seed": 3},
    )
    edited = Image.open(io.BytesIO(base64.b64decode(r.data[0].b64_json))).convert("RGB")
    small = lambda img: img.resize((16, 16), Image.NEAREST)
    a, b = small(source), small(edited)

    def mean_diff(x0, x1):
        d = [abs(p - q) for x in range(x0, x1) for y in range(16)
             for p, q in zip(a.getpixel((x, y)), b.getpixel((x, y)))]
        return sum(d) / len(d)

    kept, redrawn = mean_diff(8, 16), mean_diff(0, 8)
    print(f"masked edit: kept half differs by {kept:.2f}, redrawn half by {redrawn:.2f}")
    check(kept < 3.0, f"the kept half changed by {kept:.2f} on average")
    check(redrawn > 3 * max(kept, 1.0), f"the masked half barely changed ({redrawn:.2f})")
    try:
        client.images.edit(model=model, image=("input.png", png(source), "image/png"),
                           mask=("mask.png", png(mask.resize((8, 8))), "image/png"),
                           prompt="x", size="16x16")
        raise AssertionError("a mask of another size must be refused")
    except openai.BadRequestError as e:
        check(e.code == "invalid_mask" and e.param == "mask", f"{e.code} {e.param}")

    # 4. errors arrive as the SDK's typed exceptions with Easel's codes.
    try:
        client.images.generate(model=model, prompt="   ", size="16x16")
        raise AssertionError("a blank prompt must be refused")
    except openai.BadRequestError as e:
        check(e.code == "invalid_prompt", f"code: {e.code}")
        check(e.param == "prompt", f"param: {e.param}")
    try:
        client.images.generate(model="no-such-model", prompt="x", size="16x16")
        raise AssertionError("an unknown model must be refused")
    except openai.NotFoundError as e:
        check(e.code == "model_not_found", f"code: {e.code}")

    # 4b. what Easel cannot honour is refused, never silently ignored.
    try:
        client.images.generate(model=model, prompt="x", size="16x16", background="transparent")
        raise AssertionError("a transparent background must be refused")
    except openai.BadRequestError as e:
        check(e.code == "unsupported_parameter" and e.param == "background", f"{e.code} {e.param}")

    # 4c. streaming with partial images: OpenAI's event types, in order.
    stream = client.images.generate(
        model=model,
        prompt="a green leaf",
        size="16x16",
        stream=True,
        partial_images=2,
        extra_body={"steps": 30, "seed": 5},
    )
    events = list(stream)
    kinds = [e.type for e in events]
    check(kinds == ["image_generation.partial_image"] * 2 + ["image_generation.completed"], kinds)
    check([e.partial_image_index for e in events[:2]] == [0, 1], "partial indexes")
    for e in events:
        check(base64.b64decode(e.b64_json).startswith(PNG_MAGIC), f"{e.type} is a PNG")
    check(events[-1].size == "16x16" and events[-1].output_format == "png", events[-1])

    # 4d. variations of an image Easel made: its recorded prompt guides them.
    r = client.images.create_variation(
        model=model,
        image=("input.png", first, "image/png"),
        n=2,
        size="16x16",
        response_format="b64_json",
    )
    check(len(r.data) == 2, f"two variations: {r}")
    check(base64.b64decode(r.data[0].b64_json).startswith(PNG_MAGIC), "variation is a PNG")

    # 5. the model list.
    models = [m.id for m in client.models.list()]
    check(model in models, f"{model} listed: {models}")

    # 6. the Batch API: upload JSONL, create, poll, read the output file.
    lines = [
        {
            "custom_id": f"item-{i}",
            "method": "POST",
            "url": "/v1/images/generations",
            "body": {"model": model, "prompt": f"a lamp, variant {i}", "size": "16x16",
                     "steps": 2, "seed": 100 + i},
        }
        for i in range(3)
    ]
    upload = client.files.create(
        file=("requests.jsonl", "".join(json.dumps(l) + "\n" for l in lines).encode()),
        purpose="batch",
    )
    check(upload.id.startswith("file_") and upload.purpose == "batch", f"file: {upload}")
    batch = client.batches.create(
        input_file_id=upload.id,
        endpoint="/v1/images/generations",
        completion_window="24h",
        metadata={"campaign": "sdk-check"},
    )
    check(batch.status == "in_progress", f"a new batch is in progress: {batch.status}")
    check(batch.request_counts.total == 3, f"counts: {batch.request_counts}")
    deadline = time.time() + 240
    while batch.status not in ("completed", "failed", "expired", "cancelled"):
        check(time.time() < deadline, f"the batch did not finish: {batch}")
        time.sleep(0.5)
        batch = client.batches.retrieve(batch.id)
    check(batch.status == "completed", f"completed: {batch.status}")
    check(batch.request_counts.completed == 3, f"counts: {batch.request_counts}")
    check(batch.error_file_id is None, f"no errors: {batch.error_file_id}")
    check(batch.metadata == {"campaign": "sdk-check"}, f"metadata: {batch.metadata}")
    info = client.files.retrieve(batch.output_file_id)
    content = client.files.content(batch.output_file_id).content
    check(len(content) == info.bytes, f"size {len(content)} == {info.bytes}")
    results = [json.loads(l) for l in content.decode().splitlines()]
    check(sorted(r["custom_id"] for r in results) == ["item-0", "item-1", "item-2"],
          f"one line per request: {[r['custom_id'] for r in results]}")
    for r in results:
        check(r["error"] is None and r["response"]["status_code"] == 200, f"result: {r}")
        data = r["response"]["body"]["data"][0]
        check(base64.b64decode(data["b64_json"]).startswith(PNG_MAGIC), "a PNG per line")
        check(r["response"]["body"]["seed"] == 100 + int(r["custom_id"].split("-")[1]),
              "each line keeps its seed")
    listed = [b.id for b in client.batches.list(limit=10)]
    check(batch.id in listed, f"{batch.id} listed: {listed}")
    check(client.files.delete(upload.id).deleted, "the upload is deleted")

    print(f"openai {openai.__version__} (pinned {PINNED_OPENAI}): all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
