"""A kept import path: MLflow models logged before pipeline/ was split into stages name this
module as their ``loader_module``; it hands on pipeline.models.pyfunc, which new models name."""

from pipeline.models.pyfunc import GeneratorModel, _load_pyfunc  # noqa: F401
