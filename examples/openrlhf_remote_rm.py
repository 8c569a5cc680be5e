"""OpenRLHF remote reward model: the farm itself answers OpenRLHF's protocol.

    --remote_rm_url 'http://farm:8000/openrlhf/get_reward?api_key=KEY&run_id=RUN&step=0'
    --label_key variant_id            # the dataset column holding each prompt's variant id

    .venv/bin/python examples/openrlhf_remote_rm.py   # sends what OpenRLHF sends, prints rewards

OpenRLHF posts {"query": [prompt + response], "prompts": [prompt], "labels": [label]} with only a
Content-Type header (so the key rides in the URL: use a key with only the submit scope) and reads
"rewards". Add `on_infra=group_mean` to the URL to give an attempt the farm could not verify the
mean reward of its group instead of failing the request.
"""

from __future__ import annotations

import httpx
from _farm import candidates, farm


def main() -> None:
    texts = candidates()
    prompt = "<|user|>Write relu_n64_float32 in AArch64 assembly in <assembly> tags.<|assistant|>"
    with farm() as (url, key):
        remote_rm_url = f"{url}/openrlhf/get_reward?api_key={key}&run_id=example-openrlhf"
        print("--remote_rm_url", remote_rm_url.replace(key, "<key>"))
        data = {"query": [prompt + t for t in texts.values()],
                "prompts": [prompt] * len(texts),
                "labels": ["relu_n64_float32"] * len(texts)}
        answer = httpx.post(remote_rm_url, json=data, timeout=180,
                            headers={"Content-Type": "application/json"})
        answer.raise_for_status()
        for label, value in zip(texts, answer.json()["rewards"], strict=True):
            print(f"{label:18} reward {value}")


if __name__ == "__main__":
    main()
