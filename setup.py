"""The compiled part of soxtrail (everything else is in pyproject.toml): the pgaudit_log
loader's hot path, extract/connectors/_pgaudit_scan.pyx, built with Cython at install."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("extract.connectors._pgaudit_scan", ["extract/connectors/_pgaudit_scan.pyx"])])
