"""The example job's training loop: AdamW with warm-up and linear decay, the progress line every
``log_every`` steps, evaluations on a fixed held-out slice during each epoch and on the whole
held-out set at its end, every metric logged to MLflow with step = the global training step."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
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
                 slice_positions: Sequence[int], names: Sequence[str], tracker: Tracker) -> None:
        self.model, self.tokenizer, self.params = model, tokenizer, params
        self.train, self.test, self.names, self.tracker = train, test, list(names), tracker
        self.slice = Split([test.texts[i] for i in slice_positions], [test.labels[i] for i in slice_positions])
        self.epochs = params["epochs"]
        self.batch_size = params["batch_size"]
        self.steps_per_epoch = math.ceil(len(train.texts) / self.batch_size)
        self.total_steps = self.steps_per_epoch * self.epochs
        self.warmup_steps = int(round(self.total_steps * params["warmup_ratio"]))
        self.eval_at = eval_steps(self.steps_per_epoch, params["evals_per_epoch"])
        self.optimizer = torch.optim.AdamW(self._groups(), lr=params["learning_rate"])
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._schedule)
        self.global_step = 0
        self.outcome = Outcome()

    def _groups(self) -> list[dict[str, Any]]:
        no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
        named = list(self.model.named_parameters())
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
                              max_length=self.params["max_length"], return_tensors="pt")

    def predict(self, split: Split) -> tuple[float, list[int]]:
        """Mean cross-entropy and the predicted label of every row (batched by length)."""
        self.model.eval()
        order = sorted(range(len(split.texts)), key=lambda i: len(split.texts[i]))
        preds = [0] * len(split.texts)
        loss_sum = 0.0
        size = self.params["eval_batch_size"]
        with torch.inference_mode():
            for start in range(0, len(order), size):
                chunk = order[start : start + size]
                logits = self.model(**self.encode([split.texts[i] for i in chunk])).logits
                target = torch.tensor([split.labels[i] for i in chunk])
                loss_sum += torch.nn.functional.cross_entropy(logits, target, reduction="sum").item()
                for i, p in zip(chunk, logits.argmax(dim=-1).tolist(), strict=True):
                    preds[i] = p
        self.model.train()
        return loss_sum / max(1, len(split.texts)), preds

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
        generator = torch.Generator().manual_seed(self.params["seed"])
        log(progress_line(0, self.total_steps, 1, self.epochs))
        self.model.train()
        for epoch in range(1, self.epochs + 1):
            order = torch.randperm(len(self.train.texts), generator=generator).tolist()
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
        """One pass over the training split; returns its mean loss."""
        epoch_loss = 0.0
        window_loss, window_steps, window_samples, window_start = 0.0, 0, 0, time.time()
        for step in range(1, self.steps_per_epoch + 1):
            chunk = order[(step - 1) * self.batch_size : step * self.batch_size]
            value = self._step(chunk)
            self.global_step += 1
            epoch_loss += value
            window_loss += value
            window_steps += 1
            window_samples += len(chunk)
            g = self.global_step
            if g % self.params["log_every"] == 0 or g == FIRST_REPORT_STEP or step == self.steps_per_epoch:
                rate = window_samples / max(1e-9, time.time() - window_start)
                self._report(epoch, epoch_loss / step, window_loss / window_steps, rate)
                window_loss, window_steps, window_samples, window_start = 0.0, 0, 0, time.time()
            if step in self.eval_at:
                self.evaluate(epoch, step, full=False)
                window_start = time.time()  # throughput counts training time only
        return epoch_loss / self.steps_per_epoch

    def _step(self, chunk: Sequence[int]) -> float:
        enc = self.encode([self.train.texts[i] for i in chunk])
        target = torch.tensor([self.train.labels[i] for i in chunk])
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
