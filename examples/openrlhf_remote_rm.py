"""OpenRLHF remote reward model: the farm itself answers OpenRLHF's protocol (0.11 flags).

    --reward.remote_url 'http://farm:8000/openrlhf/get_reward?api_key=KEY&run_id=RUN'
    --data.label_key variant_id            # the dataset column holding each prompt's variant id

    ARMGYM_URL=http://farm:8000 ARMGYM_API_KEY=... python examples/openrlhf_remote_rm.py
    .venv/bin/python examples/openrlhf_remote_rm.py   # sends what OpenRLHF sends, prints rewards

OpenRLHF 0.11 posts each sample when it is generated, {"query": [prompt + response], "prompts":
[prompt], "labels": [label]}, with only a Content-Type header (so the key rides in the URL: use
a key with only the submit scope), and reads "rewards", "scores" (here 1.0 for a correct kernel,
else 0.0: in [0, 1] for --algo.dynamic_filtering) and "extra_logs". An attempt the farm could
not verify gets the run's mean for its variant (flagged in extra_logs.infra_error), since
OpenRLHF stops the run on a sample without reward. Needs only httpx (armgym-client's one
dependency).
"""

from __future__ import annotations

import httpx
from _farm import candidates, farm


def main() -> None:
    prompt = "<|user|>Write relu_n64_float32 in AArch64 assembly in <assembly> tags.<|assistant|>"
    with farm() as (url, key):
        texts = candidates(url)
        remote_url = f"{url}/openrlhf/get_reward?api_key={key}&run_id=example-openrlhf"
        print("--reward.remote_url", remote_url.replace(key, "<key>"))
        for label, text in texts.items():  # one request per sample, as OpenRLHF 0.11 sends
            data = {"query": [prompt + text], "prompts": [prompt],
                    "labels": ["relu_n64_float32"]}
            answer = httpx.post(remote_url, json=data, timeout=180,
                                headers={"Content-Type": "application/json"})
            answer.raise_for_status()
            body = answer.json()
            print(f"{label:18} reward {body['rewards'][0]}  score {body['scores'][0]}  "
                  f"{body['extra_logs']}")


if __name__ == "__main__":
    main()
