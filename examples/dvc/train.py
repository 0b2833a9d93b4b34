"""A stand-in for a training job run by `dvc repro`: it writes a model (a DVC stage
output), a vocabulary folder (not a stage output: trainboard tracks it with `dvc add`
when `dvc.outputs` names it) and metrics.json (the stage's DVC metrics file)."""

import json
import os
import random
from pathlib import Path

seed = int(os.environ.get("SEED", "0"))
rng = random.Random(seed)
Path("model").mkdir(exist_ok=True)
Path("model/weights.bin").write_bytes(rng.randbytes(64 * 1024))
Path("artifacts").mkdir(exist_ok=True)
Path("artifacts/vocab.txt").write_text("".join(f"token{i}\n" for i in range(100)))
f1 = round(0.8 + rng.random() / 10, 4)
Path("metrics.json").write_text(json.dumps({"f1": f1, "eval": {"loss": round(1 - f1, 4)}}, indent=2) + "\n")
print(f"f1={f1}")
