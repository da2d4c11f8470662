"""Batch upscaling over a prefix: the job's settings (job), one input file from bytes to
written output (one_file), where the work runs (executors: this process or a Ray Data pool),
which outputs to write or skip (outputs) and the resumable manifest of what was done
(manifest). It may import pipeline.models, pipeline.formats, pipeline.io, pipeline.cluster,
pipeline.errors and srgan; never training, scoring or the verbs. Import its modules by name."""
