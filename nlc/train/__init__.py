"""Training, evaluation and data for nlc models (everything above `nlc.compile`).

Public entry points (the CLI calls these):
    data.default_corpus(), data.load_data(path), data.batches(...)
    loop.train(model, data, ...) -> Report
    checkpoint.save_checkpoint(...), checkpoint.load_checkpoint(run_dir, model, optimizer)
    evaluate.eval_bpb / eval_mqar / eval_niah / eval_continual / generate
    plot.plot_run(run_dir, out_png)
    distributed.setup_distributed() (torchrun)
Submodules import torch lazily through their own imports; `errors` does not import torch.
"""
from nlc.train.errors import CheckpointError, DataError, TrainError, TrainingError

__all__ = ["CheckpointError", "DataError", "TrainError", "TrainingError"]
