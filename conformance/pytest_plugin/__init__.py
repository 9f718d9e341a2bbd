"""The pytest adapter over the certification core: options (``plugin``, entry point ``pytest11``), one
certification per pytest session (``session``), and the suite as one parametrised test (``suite``)."""
