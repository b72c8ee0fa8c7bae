"""Sub-commands of the ``brainzarr`` CLI: one module each, with ``register(subparsers)``."""
