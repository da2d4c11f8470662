"""Storage, the stage every other one reads and writes through: local folders and s3:// prefixes
(storage), S3 calls retried while the endpoint is away (s3), secrets masked in every message
(redact), and the bundled samples:// images (samples). It may import pipeline.errors and
pipeline.formats, nothing else of pipeline; import its modules by name (``from pipeline.io
import storage``)."""
