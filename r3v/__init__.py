"""r3v: self-improving visual reasoning (R3V, SQ-LLaVA, SQ-InstructBLIP) as one loop.

Importing r3v imports neither Prefect nor vLLM; the library runs without either.
"""

__version__ = "0.1.0"
