"""Serving many adapters on one frozen encoder: each row of a batch with its own adapter (or stack, or none) and
its own task head, rows of different LoRA adapters in one forward.

`Engine` (adapterx.serve.engine) holds the backbone, the served adapters and the gathered LoRA bank, and answers
rows with no HTTP in it; the rows and their answers are in `rows` and `answers`, how each adapter kind is served
in `adapters`. The HTTP front end (`http`, `batching`, `metrics`, `server`: FastAPI, uvicorn and
prometheus_client, the optional ``[serve]`` extra) wraps one engine; nothing here imports it.

May import `core`, `methods`, `store`, `tasks` and `deploy`; `bench`, `study` and `cli` may import it.
"""

from adapterx.serve.engine import Engine
from adapterx.serve.errors import RequestError
from adapterx.serve.rows import Row

__all__ = ["Engine", "RequestError", "Row"]
