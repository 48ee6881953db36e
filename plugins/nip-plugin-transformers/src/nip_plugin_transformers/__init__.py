"""nip plugin: the ``transformers`` text backend (local Hugging Face models,
generated in-process, fine-tuned with TRL and peft in worker processes)."""

__version__ = "0.1.0"
