"""Data sets made by the project itself (see :mod:`mmhire.datasets.demo_data`)."""
