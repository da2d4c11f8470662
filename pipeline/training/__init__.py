"""Training: the driver that starts a Ray Train run (driver), the loop each worker runs
(loop) over its state (state), checkpoints that resume a run exactly (checkpoints), the
models and losses a config asks for (recipe), and the sweep objective Tune optimises (sweep).
It may import pipeline.data, pipeline.models, pipeline.scoring, pipeline.tracking,
pipeline.io, pipeline.config, pipeline.cluster, pipeline.errors and srgan; never upscaling or
the verbs. Import its modules by name."""
