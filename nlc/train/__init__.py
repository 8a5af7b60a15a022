"""Training, evaluation and data for nlc models (everything above `nlc.compile`).

What the CLI calls (each raises DataError / CheckpointError / TrainError, all NlcErrors
with a hint, for user mistakes):

    data.default_corpus(max_bytes=16 MiB, verbose=False) -> Corpus   (.train/.val uint8, .describe())
    data.load_data(path, max_bytes=None) -> Corpus
    loop.train(model, data, *, steps, batch, seq_len, lr, warmup, clip, seed, out_dir, resume,
               log_every, eval_every, save_every, val_data, backend_label, keep=3, eval_batches=16,
               progress=True, tensorboard=False, plot=True) -> Report   (report.format())
    checkpoint.load_checkpoint(run_or_ckpt_dir, model=None, optimizer=None) -> Checkpoint
    evaluate.eval_bpb(model, data, batch, seq_len, max_batches) -> float
    evaluate.eval_mqar(model, num_pairs, ...) -> dict
    evaluate.eval_niah(model, lengths, depths, n_samples, seed, out_png) -> NiahResult (.format(), .png)
    evaluate.eval_continual(model, tasks, steps_per_task, ...) -> ContinualResult (.format(), .forgetting)
    evaluate.generate(model, prompt_bytes, max_new, temperature, top_k, seed, callback) -> bytes
    plot.plot_run(run_dir, out_png) -> Path
    distributed.setup_distributed() -> DistContext   (train() calls it itself under torchrun)

`errors` imports no torch; the other modules do.
"""
from nlc.train.errors import CheckpointError, DataError, TrainError, TrainingError

__all__ = ["CheckpointError", "DataError", "TrainError", "TrainingError"]
