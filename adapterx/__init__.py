"""adapterx: parameter-efficient transfer on a frozen XLM-R -- train, compose, merge, evaluate, benchmark."""

__version__ = "0.1.0"
