"""Per-epoch curves through DVCLive, shared by train and finetune."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from prunelab.train import EpochRecord


@contextlib.contextmanager
def dvclive_epochs(folder: Path) -> Iterator[Callable[[EpochRecord], None]]:
    """Yield an `on_epoch` callback logging each epoch's loss, accuracy and LR to `folder`.

    Inside a DVC stage DVCLive must neither write dvc.yaml nor save an experiment of its own.
    """
    from dvclive import Live

    with Live(str(folder), dvcyaml=False, save_dvc_exp=False, report=None) as live:

        def log(record: EpochRecord) -> None:
            live.log_metric("train/loss", record.train_loss)
            live.log_metric("train/acc", record.train_acc)
            if record.val_acc is not None:
                live.log_metric("val/loss", record.val_loss)
                live.log_metric("val/acc", record.val_acc)
            live.log_metric("lr", record.lr)
            live.next_step()

        yield log
