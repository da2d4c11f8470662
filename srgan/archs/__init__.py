"""Generators trained elsewhere, recognised by their keys and tensor shapes.

Owns reading a checkpoint file someone else wrote (``checkpoint``: size limits, weights-only
or safetensors, wrappers and prefixes), one file per architecture family holding its key
recogniser and its key map onto the module that runs it (``srresnet``, ``msrresnet``,
``rrdbnet``, ``spandrel``), and the registry that tries them in order (``registry``). It
imports srgan's modules and spandrel (MIT; never spandrel_extra_arches), nothing of pipeline/.
This file imports nothing, so srgan.weights may import one family without the registry.
"""
