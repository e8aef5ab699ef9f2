"""Built-in detectors. Importing this package registers them with `core.detect`."""
