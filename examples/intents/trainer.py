"""The example job's training loop: AdamW with warm-up and linear decay, the progress line every
``log_every`` steps, evaluations on a fixed held-out slice during each epoch and on the whole
held-out set at its end, every metric logged to MLflow with step = the global training step.

On several processes (torchrun, see ``distributed``): ``batch_size`` is the global batch, each
process trains on its share of it (DistributedSampler's rows, ``ceil(batch_size / N)`` a step),
so an epoch has the same steps as on one process and DistributedDataParallel averages the
gradients over the global batch. One process draws its order with the same sampler (one replica):
when N divides ``batch_size``, the rows of the global batch at each step are the very rows one
process trains on at that step. Losses and sample counts are summed over the processes before
they are reported, each evaluation scores every held-out row once (each process predicts a
share, rank 0 gets them all), and only rank 0 prints and logs (its ``Tracker`` and ``log``)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from distributed import World, shard_order
from progress import Tracker, log, progress_line
from scores import class_metrics, per_class, score

FIRST_REPORT_STEP = 5  # the first progress line and loss point come this early, whatever log_every is


@dataclass
class Split:
    texts: list[str]
    labels: list[int]


@dataclass
class Outcome:
    results: dict[str, float] = field(default_factory=dict)
    classes: dict[str, dict[str, float]] = field(default_factory=dict)
    preds: list[int] = field(default_factory=list)
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    evaluations: int = 0


def eval_steps(steps_per_epoch: int, evals_per_epoch: int) -> list[int]:
    """In-epoch steps after which the slice is evaluated (the epoch's end has its own, full one)."""
    marks = {round(k * steps_per_epoch / evals_per_epoch) for k in range(1, evals_per_epoch)}
    return sorted(m for m in marks if 0 < m < steps_per_epoch)


class Trainer:
    def __init__(self, model: Any, tokenizer: Any, params: dict[str, Any], train: Split, test: Split,
                 slice_positions: Sequence[int], names: Sequence[str], tracker: Tracker,
                 world: World | None = None) -> None:
        self.world = world or World()
        self.net = model  # the model itself (saved, evaluated); self.model trains (DDP on several processes)
        self.model = self.world.wrap(model)
        self.tokenizer, self.params = tokenizer, params
        self.train, self.test, self.names, self.tracker = train, test, list(names), tracker
        self.slice = Split([test.texts[i] for i in slice_positions], [test.labels[i] for i in slice_positions])
        self.epochs = params["epochs"]
        self.batch_size = params["batch_size"]  # the global batch
        self.rank_batch = self.world.rank_batch(self.batch_size)  # this process's share of it
        rank_rows = math.ceil(len(train.texts) / self.world.size)
        self.steps_per_epoch = math.ceil(rank_rows / self.rank_batch)
        self.total_steps = self.steps_per_epoch * self.epochs
        self.warmup_steps = int(round(self.total_steps * params["warmup_ratio"]))
        self.eval_at = eval_steps(self.steps_per_epoch, params["evals_per_epoch"])
        self.optimizer = torch.optim.AdamW(self._groups(), lr=params["learning_rate"])
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._schedule)
        self.global_step = 0
        self.outcome = Outcome()

    def _groups(self) -> list[dict[str, Any]]:
        no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
        named = list(self.net.named_parameters())
        return [
            {"params": [p for n, p in named if not any(nd in n for nd in no_decay)],
             "weight_decay": self.params["weight_decay"]},
            {"params": [p for n, p in named if any(nd in n for nd in no_decay)], "weight_decay": 0.0},
        ]

    def _schedule(self, step: int) -> float:
        # Linear warm-up to the peak rate, then linear decay to zero.
        if step < self.warmup_steps:
            return (step + 1) / max(1, self.warmup_steps)
        return max(0.0, (self.total_steps - step) / max(1, self.total_steps - self.warmup_steps))

    def encode(self, texts: Sequence[str]) -> Any:
        # Dynamic padding: pad to the longest sequence of this batch only.
        return self.tokenizer(list(texts), padding=True, truncation=True,
                              max_length=self.params["max_length"], return_tensors="pt").to(self.world.device)

    def predict(self, split: Split) -> tuple[float, list[int]]:
        """Mean cross-entropy and the predicted label of every row (batched by length). On several
        processes each predicts every N-th row and all of them get every row's prediction."""
        self.net.eval()
        order = sorted(range(len(split.texts)), key=lambda i: len(split.texts[i]))
        mine = order[self.world.rank :: self.world.size]
        preds: dict[int, int] = {}
        loss_sum = 0.0
        size = self.params["eval_batch_size"]
        with torch.inference_mode():
            for start in range(0, len(mine), size):
                chunk = mine[start : start + size]
                logits = self.net(**self.encode([split.texts[i] for i in chunk])).logits
                target = torch.tensor([split.labels[i] for i in chunk], device=self.world.device)
                loss_sum += torch.nn.functional.cross_entropy(logits, target, reduction="sum").item()
                preds.update(zip(chunk, logits.argmax(dim=-1).tolist(), strict=True))
        self.net.train()
        total, merged = 0.0, {}
        for loss_part, part in self.world.gather((loss_sum, preds)):
            total += loss_part
            merged.update(part)
        return total / max(1, len(split.texts)), [merged[i] for i in range(len(split.texts))]

    def evaluate(self, epoch: int, step: int, full: bool) -> None:
        """Score the slice (in the epoch) or the whole held-out set (at its end) and log it."""
        began = time.time()
        split = self.test if full else self.slice
        eval_loss, preds = self.predict(split)
        results = {**score(split.labels, preds), "eval_loss": eval_loss}
        fraction = (epoch - 1) + step / self.steps_per_epoch
        logged: dict[str, float] = {**results, "epoch": round(fraction, 4)}
        if full:
            self.outcome.classes = per_class(split.labels, preds, self.names)
            self.outcome.preds = preds
            logged.update(class_metrics(self.outcome.classes))
        self.tracker.log(logged, step=self.global_step)
        seconds = time.time() - began
        self.outcome.eval_seconds += seconds
        self.outcome.evaluations += 1
        self.outcome.results = results
        what = f"all {len(split.texts)} held-out rows" if full else f"a slice of {len(split.texts)} held-out rows"
        log(
            f"eval at step {self.global_step}/{self.total_steps} (epoch {fraction:.2f}, {what}): "
            f"f1 {results['f1']:.4f} f1_macro {results['f1_macro']:.4f} precision {results['precision']:.4f} "
            f"recall {results['recall']:.4f} accuracy {results['accuracy']:.4f} "
            f"eval_loss {eval_loss:.4f} ({seconds:.1f} s)"
        )

    def fit(self) -> Outcome:
        log(progress_line(0, self.total_steps, 1, self.epochs))
        self.model.train()
        for epoch in range(1, self.epochs + 1):
            order = shard_order(len(self.train.texts), self.world, self.params["seed"], epoch - 1)
            began = time.time()
            eval_before = self.outcome.eval_seconds
            epoch_loss = self._epoch(epoch, order)
            seconds = time.time() - began - (self.outcome.eval_seconds - eval_before)
            self.outcome.train_seconds += seconds
            self.evaluate(epoch, self.steps_per_epoch, full=True)
            self.outcome.results["loss"] = epoch_loss
            log(
                f"epoch {epoch}/{self.epochs} done: loss {epoch_loss:.4f} f1 {self.outcome.results['f1']:.4f} "
                f"f1_macro {self.outcome.results['f1_macro']:.4f} (train {seconds:.1f} s, "
                f"{len(self.train.texts) / max(1e-9, seconds):.1f} samples/s)"
            )
        return self.outcome

    def _epoch(self, epoch: int, order: list[int]) -> float:
        """One pass over the training split (this process's share of it); returns its mean loss.
        Losses are means over the processes and sample counts their sum (one process: as they are)."""
        epoch_loss, mean_loss = 0.0, 0.0
        window_loss, window_steps, window_samples, window_start = 0.0, 0, 0, time.time()
        for step in range(1, self.steps_per_epoch + 1):
            chunk = order[(step - 1) * self.rank_batch : step * self.rank_batch]
            value = self._step(chunk)
            self.global_step += 1
            epoch_loss += value
            window_loss += value
            window_steps += 1
            window_samples += len(chunk)
            g = self.global_step
            if g % self.params["log_every"] == 0 or g == FIRST_REPORT_STEP or step == self.steps_per_epoch:
                size = self.world.size
                epoch_sum, window_sum, samples = self.world.sum([epoch_loss, window_loss, window_samples])
                mean_loss = epoch_sum / size / step
                rate = samples / max(1e-9, time.time() - window_start)
                self._report(epoch, mean_loss, window_sum / size / window_steps, rate)
                window_loss, window_steps, window_samples, window_start = 0.0, 0, 0, time.time()
            if step in self.eval_at:
                self.evaluate(epoch, step, full=False)
                window_start = time.time()  # throughput counts training time only
        return mean_loss  # reported at the epoch's last step: the epoch's mean

    def _step(self, chunk: Sequence[int]) -> float:
        enc = self.encode([self.train.texts[i] for i in chunk])
        target = torch.tensor([self.train.labels[i] for i in chunk], device=self.world.device)
        loss = self.model(**enc, labels=target).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.item())

    def _report(self, epoch: int, running: float, window: float, rate: float) -> None:
        """The progress line and the train loss: ``loss`` is the epoch's running mean (at the epoch's
        end, its mean), ``train_loss`` the mean since the previous line."""
        lr = self.scheduler.get_last_lr()[0]
        log(progress_line(self.global_step, self.total_steps, epoch, self.epochs,
                          loss=running, lr=f"{lr:.2e}", samples_per_s=f"{rate:.1f}"))
        self.tracker.log({"loss": running, "train_loss": window}, step=self.global_step)
